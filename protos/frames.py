"""Frames fields (``FieldSpec.frames``) on the wire: stacks split into their distinct
frames, each compressed once, plus per item the indices of its frames among them; and
stacks gathered back from decoded frames.

An Atari observation stacks the last 4 frames, so consecutive observations share 3, and a
DQN transition's obs and next_obs hold 8 frames of which 1 is new. A message of a
writer's transitions therefore carries about one frame per item, not eight. Equal frames
compress to equal bytes (lz4 and zstd are deterministic), which is how both ends find
them: by the compressed bytes, with no ids a writer must keep unique across actors,
restarts and reconnections.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from shoal.protos import codec


def split_frames(stacks: Mapping[str, np.ndarray], compression: codec.CompressionName
                 ) -> tuple[list[bytes], dict[str, np.ndarray]]:
    """Each distinct frame of ``stacks`` (fields of [items, ..., H, W]) once, compressed,
    and per field int32 [items, ...] indices into them."""
    blobs: dict[bytes, int] = {}
    indices: dict[str, np.ndarray] = {}
    for name, array in stacks.items():
        rows = codec.compress_rows(array.reshape(-1, *array.shape[-2:]), compression)
        found = np.fromiter((blobs.setdefault(row, len(blobs)) for row in rows), np.int32,
                            len(rows))
        indices[name] = found.reshape(array.shape[:-2])
    return list(blobs), indices


def gather_stacks(frames: np.ndarray, indices: np.ndarray,
                  out: np.ndarray | None = None) -> np.ndarray:
    """Stacks [*indices.shape, H, W] from decoded ``frames`` [n, H, W], into ``out``
    when given."""
    if out is None:
        return frames[indices]
    return np.take(frames, indices, axis=0, out=out)
