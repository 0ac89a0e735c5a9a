"""A table's items, one preallocated numpy array per field (structure of arrays), at slot
``key % max_size``: inserting n items is n-row slice assignment, sampling a batch is one
gather per field. Fields marked compressed keep one compressed blob per item, as it came
off the wire, so the server can send them on untouched and stored bytes are counted as
they are. Frames fields keep their frames' int32 ids per item and the frames themselves
once each in a ``FrameStore`` (``frames.py``). Which slots are live, and every lock, are
the table's (``table.py``): this is only where the bytes are, and the check an insert's
columns pass before any is written.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import numpy as np

from shoal.protos import codec
from shoal.protos.codec import compress_rows
from shoal.protos.frames import decode_stacks, split_frames
from shoal.protos.tables import FieldSpec, frame_kind
from shoal.replay_service.frames import FrameStore
from shoal.replay_service.items import (
    CheckedInsert,
    ColumnValue,
    CompressedRows,
    FrameIndices,
    InvalidItems,
    checked_priorities,
)

Slots = slice | np.ndarray


class ColumnStore:
    def __init__(self, table: str, signature: Mapping[str, FieldSpec], max_size: int) -> None:
        self.table = table
        self.signature = dict(signature)
        self.max_size = max_size
        self._columns: dict[str, np.ndarray] = {}
        self._compressed_nbytes: dict[str, np.ndarray] = {}
        self.compressed_bytes = 0
        """Bytes the compressed fields' live blobs take."""
        kind = frame_kind(self.signature)
        self.frames = None if kind is None else FrameStore(kind)
        self.frame_fields = [name for name, spec in self.signature.items() if spec.frames]
        for field_name, spec in self.signature.items():
            if spec.frames:
                self._columns[field_name] = np.zeros((max_size, *spec.ids_shape), np.int32)
            elif spec.compression == "none":
                column = np.empty((max_size, *spec.shape), spec.dtype)
                column.fill(0)  # touch every page now, not in the first pass of inserts
                self._columns[field_name] = column
            else:
                self._columns[field_name] = np.full(max_size, None, dtype=object)
                self._compressed_nbytes[field_name] = np.zeros(max_size, np.int64)

    @property
    def has_compressed(self) -> bool:
        return bool(self._compressed_nbytes)

    def stored_bytes(self, size: int) -> int:
        """What ``size`` live items take: fixed rows (frames fields' ids among them), the
        compressed blobs and the frames."""
        fixed = sum(column.itemsize * int(np.prod(column.shape[1:]))
                    for column in self._columns.values() if column.dtype != object)
        frames = 0 if self.frames is None else self.frames.stored_bytes
        return size * fixed + self.compressed_bytes + frames

    def sampled_item_bytes(self, size: int) -> int:
        """About what one sampled item takes on the wire: what it stores, but a frames
        field's every frame (samples seldom share them, where stored items do)."""
        if not size:
            return 0
        per_item = self.stored_bytes(size) // size
        if self.frames is None or not len(self.frames):
            return per_item
        frame_bytes = self.frames.stored_bytes // len(self.frames)
        return per_item + frame_bytes * sum(
            int(np.prod(self.signature[name].ids_shape)) for name in self.frame_fields)

    # ------------------------------------------------------------------ checks

    def check_fields(self, names: Collection[str]) -> None:
        """Raises InvalidItems unless ``names`` are exactly the signature's fields."""
        missing = sorted(set(self.signature) - set(names))
        extra = sorted(set(names) - set(self.signature))
        if missing or extra:
            parts = ([f"missing {missing}"] if missing else []) + (
                [f"unexpected {extra}"] if extra else [])
            raise InvalidItems("columns", f"{'; '.join(parts)}; the signature of table "
                                          f"{self.table!r} is {sorted(self.signature)}")

    def validated(self, columns: Mapping[str, Any], priorities: Any,
                  frames: list[bytes] | None = None) -> CheckedInsert:
        """An insert as ``write`` takes it (compressed fields compressed, frames fields
        split into their frames) with its checked priorities; InvalidItems, naming the
        field, before anything is written. Frames fields come as stacks, or (from the
        server, with ``frames``) as FrameIndices into ``frames``."""
        self.check_fields(columns)
        checked: dict[str, ColumnValue] = {}
        counts = set()
        if self.frames is not None and frames is None:
            stacks = {name: self._checked_array(name, columns[name])
                      for name in self.frame_fields}
            frames, indices = split_frames(stacks, self.frames.kind.compression)
            columns = {**columns, **{name: FrameIndices(value)
                                     for name, value in indices.items()}}
        elif self.frames is None and frames is not None:
            raise InvalidItems("frames", f"table {self.table!r} has no frames fields")
        for field_name, spec in self.signature.items():
            value = columns[field_name]
            if spec.frames:
                assert frames is not None
                checked[field_name] = self._checked_indices(field_name, value, len(frames))
                counts.add(len(value.indices))
                continue
            if isinstance(value, CompressedRows):
                if spec.compression == "none":
                    raise InvalidItems(field_name, "compressed rows for an uncompressed field")
                checked[field_name] = value
                counts.add(len(value.rows))
                continue
            array = self._checked_array(field_name, value)
            counts.add(array.shape[0])
            if spec.compression != "none":
                checked[field_name] = CompressedRows(compress_rows(array, spec.compression))
            else:
                checked[field_name] = array
        if len(counts) != 1:
            raise InvalidItems("columns", f"fields disagree on the item count: {sorted(counts)}")
        count = counts.pop()
        if not 1 <= count <= self.max_size:
            raise InvalidItems("columns", f"expected 1..max_size ({self.max_size}) items in "
                                          f"one insert, got {count}")
        if priorities is not None:
            priorities = checked_priorities(priorities, count)
        return CheckedInsert(count, checked, priorities, frames)

    def _checked_array(self, field_name: str, value: Any) -> np.ndarray:
        spec = self.signature[field_name]
        array = np.asarray(value)
        if array.dtype != spec.dtype:
            raise InvalidItems(field_name, f"expected dtype {np.dtype(spec.dtype).name}, "
                                           f"got {array.dtype.name}")
        if array.shape[1:] != spec.shape or array.ndim != len(spec.shape) + 1:
            raise InvalidItems(field_name, f"expected shape [items, *{list(spec.shape)}], "
                                           f"got {list(array.shape)}")
        return array

    def _checked_indices(self, field_name: str, value: Any, frames: int) -> FrameIndices:
        spec = self.signature[field_name]
        if not isinstance(value, FrameIndices):
            raise InvalidItems(field_name, "expected indices into the message's frames")
        indices = value.indices
        if (indices.dtype != np.int32 or indices.ndim != len(spec.ids_shape) + 1
                or indices.shape[1:] != spec.ids_shape):
            raise InvalidItems(field_name, f"expected int32[items, *{list(spec.ids_shape)}] "
                                           f"frame indices, got {indices.dtype.name}"
                                           f"{list(indices.shape)}")
        if indices.size and not (int(indices.min()) >= 0 and int(indices.max()) < frames):
            raise InvalidItems(field_name, f"frame indices must lie in [0, {frames}) (the "
                                           f"message's frames), got {int(indices.min())}.."
                                           f"{int(indices.max())}")
        return value

    # ------------------------------------------------------------------ bytes

    def write(self, where: Slots, items: CheckedInsert) -> None:
        """Stores checked items at ``where``, over whatever was there (the table has
        forgotten it)."""
        count, columns = items.item_count, items.columns
        message_ids = None
        if self.frames is not None:
            assert items.frames is not None
            message_ids = self.frames.add(items.frames)
        for field_name, value in columns.items():
            column = self._columns[field_name]
            if isinstance(value, FrameIndices):
                assert self.frames is not None and message_ids is not None
                ids = message_ids[value.indices]
                column[where] = ids
                self.frames.retain(ids)
            elif isinstance(value, CompressedRows):
                blobs = np.empty(count, dtype=object)
                blobs[:] = value.rows
                column[where] = blobs
                nbytes = np.fromiter((len(b) for b in value.rows), np.int64, count)
                self._compressed_nbytes[field_name][where] = nbytes
                self.compressed_bytes += int(nbytes.sum())
            else:
                column[where] = value
        if self.frames is not None and message_ids is not None:
            self.frames.drop_unreferenced(message_ids)

    def forget(self, slots: np.ndarray) -> None:
        """Drops the compressed blobs at ``slots`` and their references to frames (fixed
        rows are simply overwritten later)."""
        if self.frames is not None:
            for field_name in self.frame_fields:
                self.frames.release(self._columns[field_name][slots])
        for field_name, nbytes in self._compressed_nbytes.items():
            self.compressed_bytes -= int(nbytes[slots].sum())
            nbytes[slots] = 0
            self._columns[field_name][slots] = None

    def gather(self, slots: np.ndarray) -> tuple[dict[str, ColumnValue], CompressedRows | None]:
        """The items at ``slots``, compressed fields as stored, frames fields as
        FrameIndices into the distinct frames they use (the second value)."""
        columns: dict[str, ColumnValue] = {}
        for field_name, column in self._columns.items():
            if column.dtype == object:
                columns[field_name] = CompressedRows(column[slots].tolist())
            else:  # take: several times faster than fancy indexing on 2-d arrays
                columns[field_name] = column.take(slots, axis=0)
        if self.frames is None:
            return columns, None
        # one set of distinct frames for every frames field: obs and next_obs share most
        ids = np.stack([columns[name] for name in self.frame_fields])
        blobs, inverse = self.frames.distinct(ids)
        for field_name, indices in zip(self.frame_fields, inverse, strict=True):
            columns[field_name] = FrameIndices(indices)
        return columns, CompressedRows(blobs)

    def decompressed(self, columns: Mapping[str, ColumnValue],
                     frames: CompressedRows | None) -> dict[str, ColumnValue]:
        """``columns`` with every CompressedRows decoded into an array [items, *shape] and
        every frames field's stacks built from ``frames``."""
        decoded = {}
        if self.frames is not None and frames is not None:
            decoded = decode_stacks(frames.rows, self.frames.kind, {
                name: value.indices for name, value in columns.items()
                if isinstance(value, FrameIndices)})
        return {name: decoded[name] if name in decoded else self._decoded(name, value)
                for name, value in columns.items()}

    def _decoded(self, field_name: str, value: ColumnValue) -> ColumnValue:
        if not isinstance(value, CompressedRows):
            return value
        spec = self.signature[field_name]
        out = np.empty((len(value.rows), *spec.shape), spec.dtype)
        codec.decompress_into(out.reshape(len(value.rows), -1).view(np.uint8), value.rows,
                              range(len(value.rows)), spec.compression, spec.row_bytes)
        return out

    # -------------------------------------------------------------- checkpoint

    def state_arrays(self, slots: np.ndarray) -> dict[str, np.ndarray]:
        """The items at ``slots`` as flat arrays for a checkpoint: ``column.F`` per fixed
        field; ``rows.F`` (the blobs end to end) and ``lengths.F`` per compressed one."""
        arrays: dict[str, np.ndarray] = {}
        for field_name, column in self._columns.items():
            if column.dtype == object:
                blobs = column[slots].tolist()
                arrays[f"rows.{field_name}"] = np.frombuffer(b"".join(blobs), np.uint8)
                arrays[f"lengths.{field_name}"] = self._compressed_nbytes[field_name][slots]
            else:
                arrays[f"column.{field_name}"] = column[slots]
        if self.frames is not None:
            arrays.update(self.frames.state_arrays())
        return arrays

    def restore(self, slots: np.ndarray, arrays: Mapping[str, np.ndarray]) -> None:
        """Puts ``state_arrays``' items back at ``slots`` (of a freshly built store)."""
        for field_name, column in self._columns.items():
            if column.dtype == object:
                lengths = arrays[f"lengths.{field_name}"].astype(np.int64)
                data = arrays[f"rows.{field_name}"].tobytes()
                ends = np.cumsum(lengths)
                blobs = np.empty(slots.size, dtype=object)
                blobs[:] = [data[end - n:end] for end, n in zip(ends, lengths, strict=True)]
                column[slots] = blobs
                self._compressed_nbytes[field_name][slots] = lengths
                self.compressed_bytes += int(lengths.sum())
            else:
                column[slots] = arrays[f"column.{field_name}"]
        if self.frames is not None:
            self.frames.restore(arrays, [arrays[f"column.{name}"] for name in self.frame_fields])
