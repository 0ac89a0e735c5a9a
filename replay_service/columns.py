"""A table's items, one preallocated numpy array per field (structure of arrays), at slot
``key % max_size``: inserting n items is n-row slice assignment, sampling a batch is one
gather per field. Fields marked compressed keep one compressed blob per item, as it came
off the wire, so the server can send them on untouched and stored bytes are counted as
they are. Which slots are live, and every lock, are the table's (``table.py``): this is
only where the bytes are, and the check an insert's columns pass before any is written.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import numpy as np

from shoal.protos.codec import compress_rows, decompress_row
from shoal.protos.tables import FieldSpec
from shoal.replay_service.items import (
    ColumnValue,
    CompressedRows,
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
        for field_name, spec in self.signature.items():
            if spec.compression == "none":
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
        """What ``size`` live items take: fixed rows plus the compressed blobs."""
        fixed = sum(spec.row_bytes for spec in self.signature.values()
                    if spec.compression == "none")
        return size * fixed + self.compressed_bytes

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

    def validated(
        self, columns: Mapping[str, Any], priorities: Any
    ) -> tuple[int, dict[str, ColumnValue], np.ndarray | None]:
        """An insert's item count, its columns as ``write`` takes them (compressed fields
        compressed) and its checked priorities; InvalidItems, naming the field, before
        anything is written."""
        self.check_fields(columns)
        checked: dict[str, ColumnValue] = {}
        counts = set()
        for field_name, spec in self.signature.items():
            value = columns[field_name]
            if isinstance(value, CompressedRows):
                if spec.compression == "none":
                    raise InvalidItems(field_name, "compressed rows for an uncompressed field")
                checked[field_name] = value
                counts.add(len(value.rows))
                continue
            array = np.asarray(value)
            if array.dtype != spec.dtype:
                raise InvalidItems(field_name, f"expected dtype {np.dtype(spec.dtype).name}, "
                                               f"got {array.dtype.name}")
            if array.shape[1:] != spec.shape or array.ndim != len(spec.shape) + 1:
                raise InvalidItems(field_name, f"expected shape [items, *{list(spec.shape)}], "
                                               f"got {list(array.shape)}")
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
        return count, checked, priorities

    # ------------------------------------------------------------------ bytes

    def write(self, where: Slots, count: int, columns: Mapping[str, ColumnValue]) -> None:
        """Stores ``count`` checked items (arrays, or CompressedRows for compressed fields)
        at ``where``, over whatever was there (the table has forgotten it)."""
        for field_name, value in columns.items():
            column = self._columns[field_name]
            if isinstance(value, CompressedRows):
                blobs = np.empty(count, dtype=object)
                blobs[:] = value.rows
                column[where] = blobs
                nbytes = np.fromiter((len(b) for b in value.rows), np.int64, count)
                self._compressed_nbytes[field_name][where] = nbytes
                self.compressed_bytes += int(nbytes.sum())
            else:
                column[where] = value

    def forget(self, slots: np.ndarray) -> None:
        """Drops the compressed blobs at ``slots`` (fixed rows are simply overwritten later)."""
        for field_name, nbytes in self._compressed_nbytes.items():
            self.compressed_bytes -= int(nbytes[slots].sum())
            nbytes[slots] = 0
            self._columns[field_name][slots] = None

    def gather(self, slots: np.ndarray) -> dict[str, ColumnValue]:
        """The items at ``slots``, compressed fields as stored."""
        columns: dict[str, ColumnValue] = {}
        for field_name, column in self._columns.items():
            if column.dtype == object:
                columns[field_name] = CompressedRows(column[slots].tolist())
            else:  # take: several times faster than fancy indexing on 2-d arrays
                columns[field_name] = column.take(slots, axis=0)
        return columns

    def decompressed(self, columns: Mapping[str, ColumnValue]) -> dict[str, ColumnValue]:
        """``columns`` with every CompressedRows decoded into an array [items, *shape]."""
        return {name: self._decoded(name, value) for name, value in columns.items()}

    def _decoded(self, field_name: str, value: ColumnValue) -> ColumnValue:
        if not isinstance(value, CompressedRows):
            return value
        spec = self.signature[field_name]
        out = np.empty((len(value.rows), *spec.shape), spec.dtype)
        for index, blob in enumerate(value.rows):
            raw = decompress_row(blob, spec.compression, spec.row_bytes)
            out[index] = np.frombuffer(raw, spec.dtype).reshape(spec.shape)
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
