"""The reading half of the replay client: a Sample stream's messages decoded into
batches of numpy arrays (frames fields' stacks rebuilt from each message's distinct
frames), optionally into rotating reused buffers.

``ReplayClient.sample(table, batch_size)`` makes a ``Sampler``; the learner's prefetcher
and the benchmarks decode recorded messages with the same ``Sampler`` and
``decode_sample``.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np

from shoal.protos import codec, replay_pb2
from shoal.protos.frames import decode_stacks
from shoal.protos.tables import FrameKind

_STACKS_BUFFER = "(stacks)"  # a reused buffer set's frames fields end to end, beside the rest


class SampleBatch(NamedTuple):
    """One batch as a client receives it: decoded, numpy (the server's ``Draw``)."""

    keys: np.ndarray            # int64, for update_priorities
    probabilities: np.ndarray   # float64, P(i) when drawn: importance weights come from it
    columns: dict[str, np.ndarray]


class Sampler:
    """Iterates batches of one Sample stream; the server keeps ``prefetch`` batches ahead.

    A message may carry several batches; they come out one by one, as views into it.
    With ``reuse_buffers=k`` decompressed fields are written into k rotating sets of
    arrays instead of new ones per message (a batch is valid until k more messages came).
    With ``decode_threads`` > 1 a message's compressed rows are decompressed by that many
    threads (the codecs release the GIL).
    """

    def __init__(self, call: Any, reuse_buffers: int = 0, decode_threads: int = 0) -> None:
        self._call = call
        self._buffers: list[dict[str, np.ndarray]] = [{} for _ in range(reuse_buffers)]
        self._next_buffer = 0
        self._pending: list[SampleBatch] = []
        self._threads = decode_threads
        self._pool = (ThreadPoolExecutor(decode_threads, thread_name_prefix="decode")
                      if decode_threads > 1 else None)

    def __iter__(self) -> Sampler:
        return self

    def __next__(self) -> SampleBatch:
        if not self._pending:
            response = next(self._call)
            batch = self._decode(response)
            size = response.batch_size or batch.keys.size
            self._pending = [
                SampleBatch(batch.keys[start:start + size],
                            batch.probabilities[start:start + size],
                            {name: column[start:start + size]
                             for name, column in batch.columns.items()})
                for start in range(0, batch.keys.size, size)]
            self._pending.reverse()
        return self._pending.pop()

    def _decode(self, response: replay_pb2.SampleResponse) -> SampleBatch:
        out = None
        if self._buffers:
            out = self._buffers[self._next_buffer]
            self._next_buffer = (self._next_buffer + 1) % len(self._buffers)
        return decode_sample(response, out, self._pool, self._threads)

    def close(self) -> None:
        self._call.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    def __enter__(self) -> Sampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def decode_sample(response: replay_pb2.SampleResponse,
                  out: dict[str, np.ndarray] | None = None, pool: Executor | None = None,
                  workers: int = 1) -> SampleBatch:
    """A SampleResponse as arrays; compressed fields are decompressed into ``out``'s arrays
    (made there when missing or of another shape) when it is given, by ``pool``'s
    ``workers`` threads when it is given."""
    def buffer(name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray | None:
        if out is None:
            return None
        found = out.get(name)
        if found is None or found.shape != shape or found.dtype != dtype:
            found = out[name] = np.empty(shape, dtype)
        return found

    columns = _decoded_stacks(response, buffer)
    for name, tensor in response.columns.items():
        if name in columns:
            continue
        if tensor.compression == replay_pb2.COMPRESSION_NONE:
            columns[name] = codec.decode_tensor(tensor, name)
        else:
            columns[name] = codec.decode_tensor(
                tensor, name, out=buffer(name, tuple(tensor.shape),
                                         codec.wire_dtype(tensor.dtype, name)),
                pool=pool, workers=workers)
    return SampleBatch(
        keys=codec.decode_tensor(response.keys, "keys"),
        probabilities=codec.decode_tensor(response.probabilities, "probabilities"),
        columns=columns,
    )


def _decoded_stacks(response: replay_pb2.SampleResponse,
                    buffer: Callable[[str, tuple[int, ...], np.dtype], np.ndarray | None]
                    ) -> dict[str, np.ndarray]:
    """The frames fields' stacks, built from the message's distinct frames in the calling
    thread: a Pong frame decompresses in under a microsecond, too little work per call
    for threads to share without fighting over the GIL (measured: 2 and 4 threads made a
    batch slower, 32 or 256 transitions)."""
    if not response.frame_columns:
        return {}
    tensor = response.frames
    dtype = codec.wire_dtype(tensor.dtype, "frames")
    shape = tuple(tensor.shape)
    if len(shape) < 2 or shape[0] != len(tensor.rows):
        raise codec.CodecError("frames", f"{len(tensor.rows)} compressed rows for shape "
                                         f"{list(shape)}")
    kind = FrameKind(shape[1:], dtype, codec.tensor_compression(tensor, "frames"))
    indices = {name: codec.decode_tensor(response.columns[name], name)
               for name in response.frame_columns}
    places = sum(array.size for array in indices.values())
    try:
        return decode_stacks(list(tensor.rows), kind, indices,
                             buffer(_STACKS_BUFFER, (places, *kind.shape), dtype))
    except ValueError as error:
        raise codec.CodecError("frames", str(error)) from None
