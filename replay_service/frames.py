"""A table's frames, each distinct one kept once, found by its compressed bytes.

The storage half of frames fields (``protos/frames.py`` is the wire half): items keep the
int32 ids of their frames where a plain field keeps a whole compressed stack, each frame
counts the references items hold to it, and an evicted item frees exactly the frames no
live item still needs. A frame's id is its slot here; freed slots are reused.

Memory: per frame its compressed bytes (about 260 B for a Pong frame in lz4) plus about
130 B of Python (the bytes object, its dict entry, the slot's reference and count).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from shoal.protos.tables import FrameKind


class FrameStore:
    def __init__(self, kind: FrameKind, capacity: int = 1024) -> None:
        self.kind = kind
        self._ids: dict[bytes, int] = {}                 # compressed frame -> id
        self._blobs = np.full(capacity, None, dtype=object)  # id -> compressed frame
        self._references = np.zeros(capacity, np.int64)
        self._free: list[int] = list(range(capacity - 1, -1, -1))
        self.stored_bytes = 0  # the compressed frames

    def __len__(self) -> int:
        return len(self._ids)

    def _grow(self) -> None:
        old = len(self._blobs)
        self._blobs = np.concatenate([self._blobs, np.full(old, None, dtype=object)])
        self._references = np.concatenate([self._references, np.zeros(old, np.int64)])
        self._free.extend(range(2 * old - 1, old - 1, -1))

    def add(self, blobs: Sequence[bytes]) -> np.ndarray:
        """The ids of a message's frames (already checked to decompress to one frame each),
        storing those not held yet; nothing refers to the new ones until ``retain``."""
        ids = np.empty(len(blobs), np.int32)
        for index, blob in enumerate(blobs):
            frame_id = self._ids.get(blob)
            if frame_id is None:
                if not self._free:
                    self._grow()
                frame_id = self._free.pop()
                self._ids[blob] = frame_id
                self._blobs[frame_id] = blob
                self.stored_bytes += len(blob)
            ids[index] = frame_id
        return ids

    def retain(self, ids: np.ndarray) -> None:
        """Items that refer to ``ids`` were stored."""
        np.add.at(self._references, ids.ravel(), 1)

    def release(self, ids: np.ndarray) -> None:
        """Items that referred to ``ids`` left: frames no item refers to any more go."""
        np.subtract.at(self._references, ids.ravel(), 1)
        self.drop_unreferenced(ids)

    def drop_unreferenced(self, ids: np.ndarray) -> None:
        """Frees those of ``ids`` no item refers to (a message's frames no item used)."""
        candidates = np.unique(ids)
        for frame_id in candidates[self._references[candidates] <= 0].tolist():
            blob = self._blobs[frame_id]
            if blob is None:
                continue
            del self._ids[blob]
            self._blobs[frame_id] = None
            self._references[frame_id] = 0
            self.stored_bytes -= len(blob)
            self._free.append(frame_id)

    def distinct(self, ids: np.ndarray) -> tuple[list[bytes], np.ndarray]:
        """What a sample sends: each distinct frame of ``ids`` once, compressed, and for
        every id the index of its frame among them (int32, ``ids``' shape)."""
        unique, inverse = np.unique(ids, return_inverse=True)
        return (self._blobs[unique].tolist(),
                inverse.reshape(ids.shape).astype(np.int32, copy=False))

    # -------------------------------------------------------------- checkpoint

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Every held frame: ``frames.ids``, ``frames.lengths`` and ``frames.rows`` (the
        compressed frames end to end); references follow from the items' ids."""
        ids = np.flatnonzero(self._blobs != None)  # noqa: E711 (elementwise)
        blobs = self._blobs[ids].tolist()
        return {"frames.ids": ids.astype(np.int64),
                "frames.lengths": np.fromiter(map(len, blobs), np.int64, len(blobs)),
                "frames.rows": np.frombuffer(b"".join(blobs), np.uint8)}

    def restore(self, arrays: dict[str, np.ndarray], referring: Sequence[np.ndarray]) -> None:
        """Puts ``state_arrays``' frames back under their ids (into a fresh store), with
        the references of the live items' ``referring`` ids."""
        ids = arrays["frames.ids"].astype(np.int64)
        lengths = arrays["frames.lengths"].astype(np.int64)
        data = arrays["frames.rows"].tobytes()
        while ids.size and len(self._blobs) <= int(ids.max()):
            self._grow()
        ends = np.cumsum(lengths)
        for frame_id, end, length in zip(ids.tolist(), ends.tolist(), lengths.tolist(),
                                         strict=True):
            blob = data[end - length:end]
            self._ids[blob] = frame_id
            self._blobs[frame_id] = blob
            self.stored_bytes += length
        held = set(ids.tolist())
        self._free = [slot for slot in range(len(self._blobs) - 1, -1, -1) if slot not in held]
        for frame_ids in referring:
            self.retain(frame_ids)
