"""A run's actors: starting them, changing how many there are while the run goes, and
counting what every one of them did, across Ray restarts and removals.

The fleet works on local components and Ray actor handles alike, through the run's
``launch`` (``start``, ``call``, ``call_all``, ``kill``, ``when_ready``/``is_ready``). Indices are
reused: a new actor takes the lowest free index and is told the new count, which is what
sets its exploration (DQN's Ape-X epsilon is per index of N); removal takes the highest
indices first.

An actor added while the run goes is *pending* until Ray has placed and started it: on a
cluster without a free CPU it may wait for one indefinitely, so the fleet never waits on
it (the run's loop and its control endpoint go on); it joins the polls once it is ready.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shoal.actors.actor import Episode
from shoal.launcher.lives import Lives
from shoal.launcher.run_dir import EventLog

if TYPE_CHECKING:
    from shoal.launcher.launch import Handle, Launch


class ScalingRefused(Exception):
    """The run cannot change its actor count (the message says why)."""


@dataclass
class ScaleResult:
    previous: int
    actors: int
    removed_items_sent: int = 0    # by the actors removed, over their lives: handed to writers
    removed_items_stored: int = 0  # and acknowledged as stored by the replay service
    removed_items_flushed: int = 0  # of those, acknowledged while the removal flushed them
    pending_actors: int = 0        # of ``actors``: not started by Ray yet


@dataclass
class FleetPoll:
    env_steps: int                 # every life of every actor the run has had
    episodes: list[Episode] = field(default_factory=list)
    first_step_time: float | None = None


class ActorFleet:
    """``start_actor(index, num_actors)`` starts one actor component and returns its
    handle; ``metrics`` is the run's shoal instance -> /metrics address map, which the fleet
    keeps current for its actors and hands to ``on_metrics_change`` when it changed."""

    def __init__(self, launch: Launch, start_actor: Callable[[int, int], Handle],
                 events: EventLog,
                 metrics: dict[str, str], on_metrics_change: Callable[[], None],
                 max_actors: int, refuse_scaling: str | None = None) -> None:
        self._launch = launch
        self._start_actor = start_actor
        self._events = events
        self._metrics = metrics
        self._on_metrics_change = on_metrics_change
        self.max_actors = max_actors
        self._refuse_scaling = refuse_scaling  # why this run's count is fixed, if it is
        self.handles: dict[int, Handle] = {}  # every actor asked for, pending ones included
        self._pending: dict[int, object] = {}  # index -> what launch.is_ready is asked about
        # An actor restarted by Ray counts from 0 again: keep what its earlier lives did.
        self._lives = Lives()
        self._life_steps: dict[int, int] = {}  # index -> env steps of its current life
        self._finished_steps = 0  # earlier lives and removed actors
        self._departed_episodes: list[Episode] = []  # removed actors' last ones
        self._first_step_time: float | None = None

    def __len__(self) -> int:
        return len(self.handles)

    @property
    def pending(self) -> int:
        """Actors asked for that Ray has not started yet (no free CPU for them, say)."""
        return len(self._pending)

    def start(self, count: int) -> None:
        """The run's first actors, waited for: the run was checked to fit as it starts."""
        self._add(count)
        for index in list(self._pending):
            self._ready(index)
        self._on_metrics_change()

    def scale_to(self, count: int) -> ScaleResult:
        """Adds or removes actors until there are ``count``; removed ones flush what they
        hold (their writers wait for the replay service's acknowledgements) and leave."""
        if self._refuse_scaling is not None:
            raise ScalingRefused(self._refuse_scaling)
        if not 1 <= count <= self.max_actors:
            raise ValueError(f"actors: expected 1..{self.max_actors}, got {count}")
        result = ScaleResult(previous=len(self.handles), actors=count)
        if count > len(self.handles):
            self._add(count)
            self._promote_ready()
        removed = self._remove(sorted(self.handles, reverse=True)[:len(self.handles) - count])
        for before, final in removed:
            result.removed_items_sent += final["items_sent"]
            result.removed_items_stored += final["items_stored"]
            result.removed_items_flushed += final["items_stored"] - before["items_stored"]
        self._on_metrics_change()
        result.pending_actors = self.pending
        self._events.write("scale", previous=result.previous, actors=count,
                           pending_actors=result.pending_actors,
                           removed_items_sent=result.removed_items_sent,
                           removed_items_stored=result.removed_items_stored,
                           removed_items_flushed=result.removed_items_flushed)
        return result

    def poll(self) -> FleetPoll:
        """Every actor's news; raises if one failed (Ray restarts crashed processes; an
        error here is the actor's own loop failing, which a restart would repeat)."""
        episodes, self._departed_episodes = self._departed_episodes, []
        if self._promote_ready():
            self._on_metrics_change()
        for index, handle in sorted(self.running().items()):
            poll = self._launch.call(handle, "poll")
            if poll["error"]:
                raise RuntimeError(f"actor {index} failed: {poll['error']}")
            episodes += [Episode(**episode) for episode in poll["episodes"]]
            ended_life_steps = self._record_life(index, poll)
            if ended_life_steps is not None:
                self._events.write("actor_restarted", actor=index, steps_before=ended_life_steps,
                                   pid=poll["pid"])
                self._metrics[f"actor-{index}"] = self._launch.call(handle, "metrics_address")
                self._on_metrics_change()
            if poll["first_step_time"] and self._first_step_time is None:
                self._first_step_time = poll["first_step_time"]
        steps = self._finished_steps + sum(self._life_steps.values())
        return FleetPoll(steps, episodes, self._first_step_time)

    def stop_collecting(self) -> None:
        for handle in self.running().values():
            self._launch.call(handle, "request_stop")

    def stop(self) -> None:
        for index in list(self._pending):  # nothing sent yet: nothing to flush
            self._launch.kill(self.handles.pop(index))
            del self._pending[index]
        for handle in self.handles.values():
            self._launch.call(handle, "stop")

    # ------------------------------------------------------------------------

    def _add(self, count: int) -> None:
        # Indices stay 0..n-1: removal takes the highest, so the free ones are n..count-1.
        for index in range(len(self.handles), count):  # Ray starts them all at once
            self.handles[index] = self._start_actor(index, count)
            self._pending[index] = self._launch.when_ready(self.handles[index])

    def running(self) -> dict[int, Handle]:
        """The actors Ray has started: every one but the pending."""
        return {index: handle for index, handle in self.handles.items()
                if index not in self._pending}

    def _promote_ready(self) -> bool:
        """Moves the pending actors Ray has started into the polls; whether any moved."""
        ready = [index for index, token in self._pending.items()
                 if self._launch.is_ready(token)]
        for index in ready:
            self._ready(index)
        return bool(ready)

    def _ready(self, index: int) -> None:
        """Waits for actor ``index`` to answer (at once for one that is ready)."""
        self._metrics[f"actor-{index}"] = self._launch.call(self.handles[index],
                                                            "metrics_address")
        del self._pending[index]

    def _remove(self, indices: list[int]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """Stops actors ``indices`` (all at once: each waits for its writer's flush) and
        returns each one's polls just before the stop and after it (its last). One Ray has
        not started yet is killed: it sent nothing."""
        never_started = [index for index in indices if index in self._pending
                         and not self._launch.is_ready(self._pending[index])]
        for index in never_started:
            self._launch.kill(self.handles.pop(index))
            del self._pending[index]
        leaving = {index: self.handles[index] for index in indices if index not in never_started}
        for index in leaving:
            if index in self._pending:  # started since the last poll
                self._ready(index)
            del self.handles[index]
        befores = self._launch.call_all(list(leaving.values()), "poll")
        self._launch.call_all(list(leaving.values()), "stop")
        finals = self._launch.call_all(list(leaving.values()), "poll")
        for (index, handle), before, final in zip(leaving.items(), befores, finals, strict=True):
            self._launch.kill(handle)
            self._record_life(index, final)
            self._finished_steps += self._life_steps.pop(index)
            self._lives.forget(f"actor-{index}")
            self._departed_episodes += [Episode(**episode)
                                        for episode in (*before["episodes"], *final["episodes"])]
            del self._metrics[f"actor-{index}"]
        return list(zip(befores, finals, strict=True))

    def _record_life(self, index: int, poll: dict[str, Any]) -> int | None:
        """Records ``poll`` as the latest of actor ``index``'s current life. When it is a
        new life (Ray restarted the actor), banks the steps of the one before and returns
        them; None otherwise."""
        steps = self._life_steps.get(index, 0)
        self._life_steps[index] = poll["env_steps"]
        if not self._lives.is_new(f"actor-{index}", poll["started"]):
            return None
        self._finished_steps += steps
        return steps
