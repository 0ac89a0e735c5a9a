"""Frame stacks turned into frames sent once and the ids that rebuild each stack.

An Atari observation is a stack of the last 4 frames, so consecutive observations share 3
of them, and a DQN transition's obs and next_obs stacks hold 8 frames of which 1 is new.
``FrameStreams`` follows each env's stream of stacks and hands on only the frames it has
not seen, each under an id, with every observation replaced by the ids of its 4 frames
(int64 [4]). Anything downstream that treats observations as arrays (the n-step adder, the
rollout adder) carries ids instead of pixels; ``replay_service/frames.py::FrameStore``
keeps the frames and builds the stacks back from ids at sample time.

Episode boundaries need nothing special: a new episode's stack is read frame by frame,
so its padding (four copies of its first frame, as both env paths make it) becomes the
same id four times, and a finished episode's last stack (``final_obs``) gets ids of its
own frames. A stack is taken as the stream's previous one shifted by a frame only when its
other frames are the previous ones (checked by content); any other stack (a new episode,
an env that stacks otherwise) is read frame by frame: always right, only less compact.
"""

from __future__ import annotations

import numpy as np

STREAM_BITS = 40  # an id is stream << 40 | the stream's frame count: 2^40 frames each


class FrameStreams:
    """``num_envs`` streams of stacks of ``stack`` frames; ids start at ``first_stream``'s
    (an actor's envs get streams of their own: actor index x envs per actor + env)."""

    def __init__(self, num_envs: int, stack: int = 4, first_stream: int = 0) -> None:
        self.stack = stack
        self._next = [(first_stream + env) << STREAM_BITS for env in range(num_envs)]
        self._ids: list[list[int]] = [[] for _ in range(num_envs)]      # the current stack
        self._frames: list[list[np.ndarray]] = [[] for _ in range(num_envs)]
        self.new_ids: list[int] = []
        self.new_frames: list[np.ndarray] = []

    def _add(self, env: int, frame: np.ndarray) -> tuple[int, np.ndarray]:
        """A new frame's id and its copy (an env may write its next step over its arrays)."""
        frame_id, frame = self._next[env], frame.copy()
        self._next[env] += 1
        self.new_ids.append(frame_id)
        self.new_frames.append(frame)
        return frame_id, frame

    def _read(self, env: int, stack: np.ndarray) -> np.ndarray:
        """The ids of ``stack``, which either shifts the stream's current stack by one frame
        or (a new episode) is read from its oldest frame on, repeated frames sharing ids."""
        ids, frames = self._ids[env], self._frames[env]
        if ids and all(np.array_equal(stack[k], frames[k + 1]) for k in range(self.stack - 1)):
            frame_id, frame = self._add(env, stack[-1])
            new_ids, new_frames = [*ids[1:], frame_id], [*frames[1:], frame]
        else:
            new_ids, new_frames = [], []
            for frame in stack:
                if new_frames and np.array_equal(frame, new_frames[-1]):
                    frame_id, frame = new_ids[-1], new_frames[-1]
                else:
                    frame_id, frame = self._add(env, frame)
                new_ids.append(frame_id)
                new_frames.append(frame)
        self._ids[env], self._frames[env] = new_ids, new_frames
        return np.array(new_ids, np.int64)

    def start(self, obs: np.ndarray) -> np.ndarray:
        """The ids of the first observations after a reset ([E, stack])."""
        for env in range(len(self._ids)):
            self._ids[env], self._frames[env] = [], []
        return np.stack([self._read(env, stack) for env, stack in enumerate(obs)])

    def step(self, next_obs: np.ndarray, done: np.ndarray,
             final_obs: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """The ids of a vector step's ``next_obs`` and (for envs whose episode ended,
        ``done``) of their ``final_obs``: the finished episode's last stack is read first,
        then the new episode's first, which starts the stream afresh."""
        final_ids = None
        if done.any():
            assert final_obs is not None, "an episode ended without its final observation"
            final_ids = np.zeros((len(done), self.stack), np.int64)
        ids = np.empty((len(done), self.stack), np.int64)
        for env, stack in enumerate(next_obs):
            if done[env]:
                assert final_ids is not None and final_obs is not None
                final_ids[env] = self._read(env, final_obs[env])
                self._ids[env], self._frames[env] = [], []
            ids[env] = self._read(env, stack)
        return ids, final_ids

    def take(self) -> tuple[np.ndarray, np.ndarray]:
        """The frames first seen since the last call, with their ids."""
        ids = np.array(self.new_ids, np.int64)
        frames = (np.stack(self.new_frames) if self.new_frames
                  else np.zeros((0,), np.uint8))
        self.new_ids, self.new_frames = [], []
        return ids, frames
