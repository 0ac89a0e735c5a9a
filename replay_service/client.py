"""The client actors and the learner use to talk to the replay service.

Usage::

    with ReplayClient(address, token) as client:
        with client.writer("transitions") as writer:      # one long-lived Insert stream
            writer.extend({"obs": obs, "action": actions, ...}, priorities=initial)
            writer.append({"obs": one_obs, "action": one_action, ...})
            writer.flush()                                  # send what is buffered now
        # leaving the block closes the stream and waits until the server stored it all
        with client.sample("transitions", batch_size=256, prefetch=4) as batches:
            for batch in batches:
                ...
                client.update_priorities("transitions", batch.keys, new_priorities)
"""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np

from shoal.protos import codec, replay_pb2, replay_pb2_grpc
from shoal.protos.transport import (
    DEFAULT_MAX_MESSAGE_BYTES,
    Tls,
    bearer_metadata,
    channel_options,
    open_channel,
)
from shoal.replay_service.sampling import Sampler
from shoal.replay_service.writer import Writer


class ReplayClient:
    def __init__(
        self, address: str, token: str, *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, tls: Tls | None = None,
    ) -> None:
        self.address = address
        self._channel = open_channel(address, tls, channel_options(max_message_bytes))
        self._stub = replay_pb2_grpc.ReplayServiceStub(self._channel)
        self._metadata = bearer_metadata(token)

    def wait_ready(self, timeout: float) -> None:
        """Blocks until the channel connects; grpc.FutureTimeoutError after ``timeout``."""
        grpc.channel_ready_future(self._channel).result(timeout=timeout)

    def writer(
        self, table: str, *, max_items_per_message: int = 256,
        max_in_flight_items: int | None = None,
    ) -> Writer:
        """A writer for ``table``; asks the server once how the table stores its fields.
        ``max_in_flight_items`` defaults to eight messages' worth: acknowledgements then
        come every fourth message, and the server has four more to store meanwhile."""
        signature = self.info([table])[table].signature
        compression = {name: codec.WIRE_TO_COMPRESSION[spec.compression]
                       for name, spec in signature.items()
                       if spec.compression != replay_pb2.COMPRESSION_NONE}
        frame_fields = tuple(name for name, spec in signature.items() if spec.frames)
        frame_compression = compression[frame_fields[0]] if frame_fields else "lz4"
        compression = {name: how for name, how in compression.items()
                       if name not in frame_fields}
        return Writer(self._stub, table, self._metadata, compression,
                      max_items_per_message,
                      max_in_flight_items or 8 * max_items_per_message,
                      frame_fields, frame_compression)

    def sample(
        self, table: str, batch_size: int, *, prefetch: int = 2,
        num_batches: int = 0, timeout: float | None = None, reuse_buffers: int = 0,
        decode_threads: int = 0,
    ) -> Sampler:
        request = replay_pb2.SampleRequest(
            table=table, batch_size=batch_size, prefetch=prefetch,
            num_batches=num_batches, timeout_seconds=timeout or 0.0)
        return Sampler(self._stub.Sample(request, metadata=self._metadata), reuse_buffers,
                       decode_threads)

    def update_priorities(self, table: str, keys: Any, priorities: Any) -> tuple[int, int]:
        """Returns (updated, ignored because already evicted)."""
        request = replay_pb2.UpdatePrioritiesRequest(table=table)
        codec.encode_tensor(np.asarray(keys, dtype=np.int64), out=request.keys)
        codec.encode_tensor(np.asarray(priorities, dtype=np.float64), out=request.priorities)
        response = self._stub.UpdatePriorities(request, metadata=self._metadata)
        return response.updated, response.ignored

    def info(self, tables: list[str] | None = None) -> dict[str, replay_pb2.TableInfo]:
        response = self._stub.Info(replay_pb2.InfoRequest(tables=tables or []),
                                   metadata=self._metadata)
        return {info.name: info for info in response.tables}

    def checkpoint(self) -> str:
        return self._stub.Checkpoint(replay_pb2.CheckpointRequest(), metadata=self._metadata).path

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> ReplayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


