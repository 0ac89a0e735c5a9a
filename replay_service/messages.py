"""The replay service's messages and its tables, each into the other: requests checked
against a table's signature before a byte is decoded, and draws encoded for the wire.
No sockets: the servicer (``server.py``) calls these."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from shoal.protos import codec, replay_pb2
from shoal.protos.tables import frame_kind
from shoal.replay_service.items import FrameIndices
from shoal.replay_service.limits import MAX_ITEMS_PER_CALL
from shoal.replay_service.table import ColumnValue, CompressedRows, Draw, InvalidItems, Table

_PRIORITY_DTYPES = (np.dtype("<f8"), np.dtype("<f4"))
_KEY_DTYPES = (np.dtype("<i8"), np.dtype("<i4"), np.dtype("<u8"), np.dtype("<u4"))


def decode_insert(
    request: replay_pb2.InsertRequest, table: Table
) -> tuple[dict[str, ColumnValue], np.ndarray | None, list[bytes] | None]:
    """An InsertRequest's columns, priorities and frames, checked against the table's
    signature before a byte is decoded: the item count, dtype, per-item shape and
    compression come from the client, so they are claims, and only a claim that fits the
    signature costs any memory. Compressed rows (frames too) are checked one by one to
    decompress to exactly one item (one frame) and are kept as they came; a frames field's
    indices are checked to point into the message's frames by the table."""
    table.check_fields(request.columns)
    counts: dict[str, int] = {}
    for name, spec in table.signature.items():
        tensor = request.columns[name]
        if spec.frames:
            counts[name] = codec.checked_items(tensor, name, (np.dtype(np.int32),),
                                               spec.ids_shape)
            if tensor.compression != replay_pb2.COMPRESSION_NONE:
                raise InvalidItems(name, "expected uncompressed int32 frame indices")
            continue
        counts[name] = codec.checked_items(tensor, name, (np.dtype(spec.dtype),), spec.shape)
        compression = codec.tensor_compression(tensor, name)
        if compression not in ("none", spec.compression):
            raise InvalidItems(name, f"{compression} rows for a field the table stores as "
                                     f"{spec.describe()}")
    count = _agreed_count(counts, min(table.max_size, MAX_ITEMS_PER_CALL))
    frames = _decode_frames(request, table, count)
    columns: dict[str, ColumnValue] = {}
    for name, spec in table.signature.items():
        tensor = request.columns[name]
        if spec.frames:
            columns[name] = FrameIndices(codec.decode_tensor(
                tensor, name, max_bytes=count * 4 * math.prod(spec.ids_shape)))
        elif tensor.compression == replay_pb2.COMPRESSION_NONE:
            columns[name] = codec.decode_tensor(tensor, name, max_bytes=count * spec.row_bytes)
        else:
            codec.verify_rows(tensor, name, spec.row_bytes)
            columns[name] = CompressedRows(list(tensor.rows))
    priorities = None
    if request.HasField("priorities"):
        given = codec.checked_items(request.priorities, "priorities", _PRIORITY_DTYPES, ())
        if given != count:
            raise InvalidItems("priorities",
                               f"expected {count} numbers (one per item), got {given}")
        priorities = codec.decode_tensor(request.priorities, "priorities",
                                         max_bytes=count * 8)
    return columns, priorities, frames


def _decode_frames(request: replay_pb2.InsertRequest, table: Table,
                   count: int) -> list[bytes] | None:
    """The message's compressed frames, each checked to decompress to one frame: at most
    as many as its items' frames fields name, in the fields' compression."""
    kind = frame_kind(table.signature)
    if kind is None:
        if request.HasField("frames"):
            raise InvalidItems("frames", f"table {table.name!r} has no frames fields")
        return None
    if not request.HasField("frames"):
        raise InvalidItems("frames", f"table {table.name!r} has frames fields: the message "
                                     f"must carry their frames")
    given = codec.checked_items(request.frames, "frames", (kind.dtype,), kind.shape)
    most = count * sum(math.prod(spec.ids_shape) for spec in table.signature.values()
                       if spec.frames)
    if given > most:
        raise InvalidItems("frames", f"expected at most {most} frames (what the items can "
                                     f"name), got {given}")
    if codec.tensor_compression(request.frames, "frames") != kind.compression:
        raise InvalidItems("frames", f"expected {kind.compression} rows")
    codec.verify_rows(request.frames, "frames", kind.row_bytes)
    return list(request.frames.rows)


def _agreed_count(counts: Mapping[str, int], most: int) -> int:
    if len(set(counts.values())) != 1:
        raise InvalidItems("columns", f"fields disagree on the item count: {dict(counts)}")
    count = next(iter(counts.values()))
    if not 1 <= count <= most:
        bound = "max_size" if most < MAX_ITEMS_PER_CALL else "MAX_ITEMS_PER_CALL"
        raise InvalidItems("columns", f"expected 1..{bound} ({most}) items in one insert, "
                                      f"got {count}")
    return count


def decode_priority_update(
    request: replay_pb2.UpdatePrioritiesRequest,
) -> tuple[np.ndarray, np.ndarray]:
    """Keys and priorities of an UpdatePriorities call, with the same checks and caps as an
    insert: 1-d, agreeing lengths, at most MAX_ITEMS_PER_CALL, decoded under that size."""
    count = codec.checked_items(request.keys, "keys", _KEY_DTYPES, ())
    if count > MAX_ITEMS_PER_CALL:
        raise InvalidItems("keys", f"expected at most {MAX_ITEMS_PER_CALL} keys, got {count}")
    given = codec.checked_items(request.priorities, "priorities", _PRIORITY_DTYPES, ())
    if given != count:
        raise InvalidItems("priorities", f"expected {count} numbers (one per key), got {given}")
    keys = codec.decode_tensor(request.keys, "keys", max_bytes=count * 8)
    priorities = codec.decode_tensor(request.priorities, "priorities", max_bytes=count * 8)
    return keys, priorities


def encode_sample(batch: Draw, table: Table, batch_size: int) -> replay_pb2.SampleResponse:
    response = replay_pb2.SampleResponse(batch_size=batch_size)
    codec.encode_tensor(batch.keys, out=response.keys)
    codec.encode_tensor(batch.probabilities, out=response.probabilities)
    if batch.frames is not None:
        kind = frame_kind(table.signature)
        assert kind is not None
        codec.encode_rows(batch.frames.rows, kind.dtype, kind.shape, kind.compression,
                          out=response.frames)
    for name, value in batch.columns.items():
        if isinstance(value, FrameIndices):
            codec.encode_tensor(value.indices, out=response.columns[name])
            response.frame_columns.append(name)
        elif isinstance(value, CompressedRows):
            spec = table.signature[name]
            codec.encode_rows(value.rows, np.dtype(spec.dtype), spec.shape, spec.compression,
                              out=response.columns[name])
        else:
            codec.encode_tensor(value, out=response.columns[name])
    return response


def table_info(table: Table) -> replay_pb2.TableInfo:
    stats = table.stats()
    info = replay_pb2.TableInfo(
        name=stats.name, size=stats.size, max_size=stats.max_size, selector=stats.selector,
        max_times_sampled=stats.max_times_sampled, inserted_items=stats.inserted_items,
        sampled_items=stats.sampled_items, priority_updates=stats.priority_updates,
        stored_bytes=stats.stored_bytes, stored_frames=stats.stored_frames,
        rate_limiter=replay_pb2.RateLimiterInfo(
            kind=stats.rate_limiter,
            insert_blocked_seconds=stats.insert_blocked_seconds,
            sample_blocked_seconds=stats.sample_blocked_seconds,
            can_insert=stats.can_insert, can_sample=stats.can_sample,
            inserts_waiting=stats.inserts_waiting, samples_waiting=stats.samples_waiting),
    )
    for name, spec in table.signature.items():
        info.signature[name].dtype = np.dtype(spec.dtype).name
        info.signature[name].shape[:] = spec.shape
        info.signature[name].compression = codec.COMPRESSION_TO_WIRE[spec.compression]
        info.signature[name].frames = spec.frames
    return info
