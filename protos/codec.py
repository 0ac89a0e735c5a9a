"""Dicts of numpy arrays <-> ``Tensor`` messages.

Uncompressed tensors decode with one ``np.frombuffer`` (no per-element Python work).
Compressed tensors carry one lz4 block or zstd frame per item (row of the first axis), so
the replay service can keep each item's bytes as they arrived and send them back untouched;
only the two ends compress and decompress.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Collection, Mapping, MutableMapping, Sequence
from concurrent.futures import Executor
from typing import Literal

import lz4.block
import numpy as np
import zstandard

from shoal.protos import replay_pb2

CompressionName = Literal["none", "lz4", "zstd"]

COMPRESSION_TO_WIRE: dict[str, int] = {
    "none": replay_pb2.COMPRESSION_NONE,
    "lz4": replay_pb2.COMPRESSION_LZ4,
    "zstd": replay_pb2.COMPRESSION_ZSTD,
}
WIRE_TO_COMPRESSION: dict[int, str] = {v: k for k, v in COMPRESSION_TO_WIRE.items()}

# Fixed-size numeric types only: they have a defined little-endian byte layout.
SUPPORTED_DTYPES: frozenset[str] = frozenset(
    ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
     "float16", "float32", "float64"]
)

ZSTD_LEVEL = 3

# dtype <-> wire name lookups are dictionary hits: numpy's ``dtype.name`` costs ~3 us a
# call, which at six tensors per message was a tenth of the server's time per Insert.
_DTYPE_OF_NAME: dict[str, np.dtype] = {
    name: np.dtype(name).newbyteorder("<") for name in SUPPORTED_DTYPES}
_NAME_OF_DTYPE: dict[np.dtype, str] = {
    **{np.dtype(name): name for name in SUPPORTED_DTYPES},
    **{dtype: name for name, dtype in _DTYPE_OF_NAME.items()},
}


class CodecError(ValueError):
    """A tensor that cannot be decoded; ``field`` names which one, for the error status."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def wire_dtype(dtype: np.dtype | str | type, field: str = "dtype") -> np.dtype:
    """The little-endian numpy dtype for a dtype or its name; CodecError if unsupported."""
    found = _DTYPE_OF_NAME.get(dtype) if isinstance(dtype, str) else None
    if found is not None:
        return found
    name = dtype if isinstance(dtype, str) else np.dtype(dtype).name
    if name not in SUPPORTED_DTYPES:
        raise CodecError(field, f"dtype {name!r} is not one of {sorted(SUPPORTED_DTYPES)}")
    return _DTYPE_OF_NAME[name]


def dtype_name(dtype: np.dtype) -> str:
    """The wire name of a supported dtype (a dictionary hit, unlike ``dtype.name``)."""
    name = _NAME_OF_DTYPE.get(dtype)
    return name if name is not None else wire_dtype(dtype).name


_local = threading.local()


def _zstd_compressor() -> zstandard.ZstdCompressor:
    # zstandard's (de)compressor objects are not thread-safe; one per thread is cheap.
    if not hasattr(_local, "zc"):
        _local.zc = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    return _local.zc


def _zstd_decompressor() -> zstandard.ZstdDecompressor:
    if not hasattr(_local, "zd"):
        _local.zd = zstandard.ZstdDecompressor()
    return _local.zd


def compress_rows(array: np.ndarray, compression: CompressionName) -> list[bytes]:
    """One compressed blob per row of the first axis."""
    contiguous = np.ascontiguousarray(array)
    if compression == "lz4":
        return [lz4.block.compress(row, store_size=False) for row in contiguous]
    if compression == "zstd":
        compressor = _zstd_compressor()
        return [compressor.compress(row) for row in contiguous]
    raise CodecError("compression", f"expected 'lz4' or 'zstd', got {compression!r}")


def decompress_row(blob: bytes, compression: CompressionName, row_bytes: int) -> bytes:
    """One row's raw bytes, never more than ``row_bytes`` of them: a frame that claims another
    size is refused before anything is allocated (zstd sizes its output by the size a frame's
    header claims, so a 29 KB frame could ask for a gigabyte). Raises ValueError when the blob
    is corrupt or the wrong size."""
    try:
        if compression == "lz4":
            raw = lz4.block.decompress(blob, uncompressed_size=row_bytes)
        else:
            claimed = zstandard.frame_content_size(blob)
            if claimed not in (-1, row_bytes):  # -1: the header does not say
                raise ValueError(f"a zstd frame claims {claimed} bytes, expected {row_bytes}")
            raw = _zstd_decompressor().decompress(blob, max_output_size=row_bytes)
    except (lz4.block.LZ4BlockError, zstandard.ZstdError) as error:
        raise ValueError(f"corrupt {compression} data ({error})") from None
    if len(raw) != row_bytes:
        raise ValueError(f"a row decompresses to {len(raw)} bytes, expected {row_bytes}")
    return raw


def encode_tensor(
    array: np.ndarray,
    compression: CompressionName = "none",
    out: replay_pb2.Tensor | None = None,
) -> replay_pb2.Tensor:
    """``array`` as a Tensor; with compression, each row of the first axis compressed alone."""
    array = np.asarray(array)
    name = dtype_name(array.dtype)
    dtype = _DTYPE_OF_NAME[name]
    tensor = replay_pb2.Tensor() if out is None else out
    tensor.dtype = name
    tensor.shape[:] = array.shape
    if compression == "none":
        tensor.data = np.ascontiguousarray(array, dtype=dtype).tobytes()
    else:
        if array.ndim == 0:
            raise CodecError("compression", "a compressed tensor needs an item axis")
        tensor.compression = COMPRESSION_TO_WIRE[compression]
        tensor.rows.extend(compress_rows(array.astype(dtype, copy=False), compression))
    return tensor


def encode_rows(
    rows: Sequence[bytes], dtype: np.dtype, shape: Sequence[int], compression: CompressionName,
    out: replay_pb2.Tensor,
) -> None:
    """Fills ``out`` with rows that are already compressed (as the replay service stores them)."""
    out.dtype = dtype_name(dtype)
    out.shape[:] = (len(rows), *shape)
    out.compression = COMPRESSION_TO_WIRE[compression]
    out.rows.extend(rows)


def tensor_compression(tensor: replay_pb2.Tensor, field: str) -> CompressionName:
    name = WIRE_TO_COMPRESSION.get(tensor.compression)
    if name is None:
        raise CodecError(field, f"unknown compression {tensor.compression}; expected one of "
                                f"{sorted(COMPRESSION_TO_WIRE)}")
    return name  # type: ignore[return-value]


def _checked_shape(tensor: replay_pb2.Tensor, field: str) -> tuple[int, ...]:
    shape = tuple(tensor.shape)
    if min(shape, default=0) < 0:
        raise CodecError(field, f"shape {list(shape)} has a negative dimension")
    return shape


def checked_items(
    tensor: replay_pb2.Tensor, field: str, dtypes: Collection[np.dtype],
    item_shape: tuple[int, ...],
) -> int:
    """How many items a tensor holds, once its dtype and per-item shape are those the
    receiver expects; nothing is decoded, so a claim that does not fit costs nothing."""
    dtype = wire_dtype(tensor.dtype, field)
    shape = _checked_shape(tensor, field)
    if dtype not in dtypes or len(shape) != len(item_shape) + 1 or shape[1:] != item_shape:
        expected = "|".join(sorted(d.name for d in dtypes))
        raise CodecError(field, f"expected {expected}[items, *{list(item_shape)}], got "
                                f"{dtype.name}{list(shape)}")
    return shape[0]


MIN_ROWS_PER_TASK = 64  # fewer rows (1.8 MB of Atari stacks) are not worth a hand-off


def decompress_into(flat: np.ndarray, rows: Sequence[bytes], places: Sequence[int],
                    compression: CompressionName, row_bytes: int) -> None:
    """Each of ``rows`` decompressed into row ``places[i]`` of ``flat`` (C-contiguous, a row
    of ``row_bytes`` bytes per place). Written through a memoryview: a third cheaper per
    row than numpy's item assignment, which is most of the cost for 7 KB Atari frames that
    lz4 decompresses in under a microsecond. lz4 and zstd release the GIL, so threads
    running this on parts of the rows share the work."""
    target = flat.data.cast("B")
    if compression != "lz4":
        for blob, place in zip(rows, places, strict=True):
            start = place * row_bytes
            target[start:start + row_bytes] = decompress_row(blob, compression, row_bytes)
        return
    # decompress_row's checks inlined: a Python call per frame is a fifth of the work
    decompress = lz4.block.decompress
    try:
        for blob, place in zip(rows, places, strict=True):
            raw = decompress(blob, uncompressed_size=row_bytes)
            if len(raw) != row_bytes:
                raise ValueError(f"a row decompresses to {len(raw)} bytes, expected "
                                 f"{row_bytes}")
            start = place * row_bytes
            target[start:start + row_bytes] = raw
    except lz4.block.LZ4BlockError as error:
        raise ValueError(f"corrupt lz4 data ({error})") from None


def decode_tensor(
    tensor: replay_pb2.Tensor, field: str = "tensor", out: np.ndarray | None = None,
    *, max_bytes: int | None = None, pool: Executor | None = None, workers: int = 1,
) -> np.ndarray:
    """The array a Tensor holds, validated; compressed rows are decompressed into ``out``.

    Pass ``out`` (right shape and dtype, C-contiguous) to reuse a buffer across batches: a
    fresh multi-MB array per batch of Atari frames costs page faults on every decode. A
    receiver that does not trust the sender passes ``max_bytes``: an array claiming more is
    refused before anything is allocated, and no row decompresses to more than its share.
    ``pool`` (with ``workers`` threads) decompresses a tensor's rows in that many parts.
    """
    dtype = wire_dtype(tensor.dtype, field)
    shape = _checked_shape(tensor, field)
    compression = tensor_compression(tensor, field)
    nbytes = math.prod(shape) * dtype.itemsize
    if max_bytes is not None and nbytes > max_bytes:
        raise CodecError(field, f"{dtype.name}{list(shape)} is {nbytes} bytes, more than the "
                                f"{max_bytes} this receiver accepts")
    try:
        if compression == "none":
            data = tensor.data
            if len(data) != nbytes:
                raise CodecError(field, f"data has {len(data)} bytes, expected {nbytes} "
                                        f"for {dtype.name}{list(shape)}")
            array = np.frombuffer(data, dtype=dtype).reshape(shape)
            if out is not None:
                out[...] = array
                return out
            return array
        row_bytes = _checked_rows(tensor, field, shape, dtype)
        if out is None:
            out = np.empty(shape, dtype=dtype)
        rows = list(tensor.rows)
        flat = out.reshape(len(rows), -1).view(np.uint8)  # out is C-contiguous
        tasks = 1 if pool is None else min(workers, len(rows) // MIN_ROWS_PER_TASK)
        if tasks <= 1:
            decompress_into(flat, rows, range(len(rows)), compression, row_bytes)
        else:
            bounds = np.linspace(0, len(rows), tasks + 1).astype(int)
            assert pool is not None
            list(pool.map(lambda start, stop: decompress_into(
                flat, rows[start:stop], range(start, stop), compression, row_bytes),
                bounds[:-1], bounds[1:]))
        return out
    except CodecError:
        raise
    except (ValueError, OverflowError, MemoryError) as error:
        # Whatever a hostile tensor makes numpy or a decompressor raise is the sender's error.
        raise CodecError(field, str(error) or type(error).__name__) from None


def _checked_rows(tensor: replay_pb2.Tensor, field: str, shape: tuple[int, ...],
                  dtype: np.dtype) -> int:
    """The bytes each compressed row must decompress to, once the row count is right."""
    if not shape:
        raise CodecError(field, "a compressed tensor needs an item axis")
    if len(tensor.rows) != shape[0]:
        raise CodecError(field, f"{len(tensor.rows)} compressed rows, expected {shape[0]}")
    return math.prod(shape[1:]) * dtype.itemsize


def verify_rows(tensor: replay_pb2.Tensor, field: str, row_bytes: int) -> None:
    """Checks that each compressed row decompresses to exactly ``row_bytes`` (the receiver's
    own row size, not the sender's claim), one row at a time: the rows are kept compressed,
    so at most one decompressed row is ever held."""
    compression = tensor_compression(tensor, field)
    shape = _checked_shape(tensor, field)
    dtype = wire_dtype(tensor.dtype, field)
    if compression == "none":
        raise CodecError(field, "expected compressed rows")
    if _checked_rows(tensor, field, shape, dtype) != row_bytes:
        raise CodecError(field, f"rows of {math.prod(shape[1:]) * dtype.itemsize} bytes, "
                                f"expected {row_bytes}")
    try:
        for blob in tensor.rows:
            decompress_row(blob, compression, row_bytes)
    except (ValueError, OverflowError, MemoryError) as error:
        raise CodecError(field, str(error) or type(error).__name__) from None


def encode_columns(
    columns: Mapping[str, np.ndarray],
    target: MutableMapping[str, replay_pb2.Tensor],
    compression: Mapping[str, CompressionName] | None = None,
) -> None:
    """Writes each column into ``target`` (a message's ``map<string, Tensor>``)."""
    compression = compression or {}
    for name, array in columns.items():
        encode_tensor(array, compression.get(name, "none"), out=target[name])


def decode_columns(
    source: Mapping[str, replay_pb2.Tensor], out: Mapping[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """The arrays of a ``map<string, Tensor>``, each validated; ``out`` buffers are reused."""
    out = out or {}
    return {name: decode_tensor(tensor, name, out.get(name)) for name, tensor in source.items()}
