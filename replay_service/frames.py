"""Frames kept once, by id, and the stacks rebuilt from ids at sample time.

The storage half of ``actors/frames.py``: items refer to frames by id (int64 [..., 4] in
place of a [..., 4, 84, 84] stack), each frame is compressed once, and each counts the
references items hold to it, so an evicted item frees exactly the frames no live item
still needs. Frames added and not yet referred to (an actor sends a step's new frame with
or before the items that use it) stay until ``drop_unreferenced``.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from shoal.protos import codec


class FrameStore:
    def __init__(self, frame_shape: tuple[int, ...], compression: codec.CompressionName = "lz4",
                 dtype: str = "uint8") -> None:
        self.frame_shape = frame_shape
        self.dtype = np.dtype(dtype)
        self._compression = compression
        self._row_bytes = int(np.prod(frame_shape)) * self.dtype.itemsize
        self._blobs: dict[int, bytes] = {}
        self._references: Counter[int] = Counter()
        self.stored_bytes = 0  # compressed frames

    def __len__(self) -> int:
        return len(self._blobs)

    def add(self, ids: np.ndarray, frames: np.ndarray) -> None:
        """New frames under their ids (an id already held keeps its frame)."""
        for frame_id, blob in zip(ids.tolist(), codec.compress_rows(frames, self._compression),
                                  strict=True):
            if frame_id not in self._blobs:
                self._blobs[frame_id] = blob
                self.stored_bytes += len(blob)

    def retain(self, ids: np.ndarray) -> None:
        """Items that refer to ``ids`` were stored: every id must be held."""
        flat = ids.ravel().tolist()
        missing = [frame_id for frame_id in set(flat) if frame_id not in self._blobs]
        if missing:
            raise KeyError(f"frames {sorted(missing)[:4]} are not stored")
        self._references.update(flat)

    def release(self, ids: np.ndarray) -> None:
        """Items that referred to ``ids`` were evicted: frames no item refers to go."""
        self._references.subtract(ids.ravel().tolist())
        for frame_id in set(ids.ravel().tolist()):
            if self._references[frame_id] <= 0:
                del self._references[frame_id]
                self.stored_bytes -= len(self._blobs.pop(frame_id))

    def drop_unreferenced(self) -> int:
        """Frees frames no item refers to; how many."""
        unreferenced = [frame_id for frame_id in self._blobs if frame_id not in self._references]
        for frame_id in unreferenced:
            self.stored_bytes -= len(self._blobs.pop(frame_id))
        return len(unreferenced)

    def distinct(self, ids: np.ndarray) -> tuple[list[bytes], np.ndarray]:
        """What a sample sends: each distinct frame of ``ids`` once, compressed, and for
        every id the index of its frame among them (``ids``' shape)."""
        unique, inverse = np.unique(ids, return_inverse=True)
        return [self._blobs[frame_id] for frame_id in unique.tolist()], inverse.reshape(ids.shape)

    def stacks(self, ids: np.ndarray) -> np.ndarray:
        """The frames ``ids`` name, decompressed: [*ids.shape, *frame_shape]."""
        blobs, inverse = self.distinct(ids)
        return build_stacks(blobs, inverse, self.frame_shape, self.dtype, self._compression)


def build_stacks(blobs: list[bytes], inverse: np.ndarray, frame_shape: tuple[int, ...],
                 dtype: np.dtype, compression: codec.CompressionName) -> np.ndarray:
    """Stacks from a sample's distinct frames: each decompressed once, then gathered."""
    row_bytes = int(np.prod(frame_shape)) * dtype.itemsize
    frames = np.empty((len(blobs), *frame_shape), dtype)
    flat = frames.reshape(len(blobs), -1).view(np.uint8)
    for index, blob in enumerate(blobs):
        flat[index] = np.frombuffer(codec.decompress_row(blob, compression, row_bytes),
                                    np.uint8)
    return frames[inverse]
