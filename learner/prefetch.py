"""Batches decoded and on the learner's device before the update asks for them.

A thread reads the replay service's Sample stream, turns each batch into tensors (pinned
and copied without blocking when the device is a GPU) and keeps ``depth`` of them ready,
so the device does not wait on the network. ``wait_seconds`` is how long the learner
waited for a batch anyway: the sign that collection, not training, is the bottleneck.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch

from shoal.replay_service.client import ReplayClient
from shoal.replay_service.reconnecting import ReconnectingSampler
from shoal.replay_service.sampling import SampleBatch


class DeviceBatch(NamedTuple):
    keys: np.ndarray                   # stays on the CPU: it goes back as priority keys
    probabilities: torch.Tensor
    columns: dict[str, torch.Tensor]


def to_device(batch: SampleBatch, device: torch.device) -> DeviceBatch:
    """Tensors over the batch's arrays: decompressed fields as they are (the sampler's
    rotating buffers; no second copy on the CPU), fields read straight from the message's
    bytes copied (they are read-only)."""
    pin = device.type == "cuda"

    def move(array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(array if array.flags.writeable else array.copy())
        if pin:
            tensor = tensor.pin_memory()
        return tensor.to(device, non_blocking=pin)

    return DeviceBatch(batch.keys.copy(), move(batch.probabilities),
                       {name: move(column) for name, column in batch.columns.items()})


def decoding(depth: int) -> dict[str, int]:
    """How the learner's sampler decodes: into depth + 4 rotating sets of buffers, so a
    batch's arrays are written over only once the learner is past it (at most ``depth``
    batches wait in the queue, one is in the prefetch thread's hand, one in the learner's,
    and the sampler's current message may hold several), by up to 4 threads."""
    return {"reuse_buffers": depth + 4, "decode_threads": min(4, os.cpu_count() or 1)}


_END = object()


class Prefetcher:
    def __init__(self, batches: Iterator[SampleBatch], device: torch.device,
                 depth: int = 4) -> None:
        self.wait_seconds = 0.0
        self._batches = batches
        self._device = device
        self._ready: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._fill, name="prefetch", daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        try:
            for batch in self._batches:
                item = to_device(batch, self._device)
                while not self._stop.is_set():
                    try:
                        self._ready.put(item, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
        except BaseException as error:  # surfaces in the learner's thread on its next get
            self._error = error
        finally:
            with contextlib.suppress(queue.Full):  # a full queue: the reader is not waiting
                self._ready.put_nowait(_END)

    def get(self, stop: threading.Event) -> DeviceBatch | None:
        """The next batch; None once ``stop`` is set or the stream ended."""
        start = time.monotonic()
        try:
            while not stop.is_set():
                try:
                    item = self._ready.get(timeout=0.2)
                except queue.Empty:
                    if not self._thread.is_alive() and self._ready.empty():
                        break
                    continue
                if item is _END:
                    break
                return item  # type: ignore[return-value]
            if self._error is not None and not stop.is_set():
                raise self._error
            return None
        finally:
            self.wait_seconds += time.monotonic() - start

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@contextlib.contextmanager
def prefetching(replay: ReplayClient, table: str, batch_size: int, device: torch.device,
                depth: int = 4) -> Iterator[Prefetcher]:
    """The learner's batches: a Sample stream that outlives restarts of the replay
    service, read ahead onto ``device`` by a Prefetcher."""
    with ReconnectingSampler(replay, table, batch_size, **decoding(depth)) as batches:
        prefetcher = Prefetcher(batches, device, depth)
        try:
            yield prefetcher
        finally:
            prefetcher.close()
