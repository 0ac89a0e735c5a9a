"""The learner's prefetching over a real replay service: batches decoded into rotating
buffers stay intact while the learner can still hold them."""

import threading

import numpy as np
import torch

from shoal.learner.prefetch import prefetching
from shoal.replay_service import ReplayClient, ReplayServer

from ..conftest import TOKEN, frames, service_tables, wait_until


def test_a_held_batch_is_not_written_over_while_the_queue_refills():
    data = frames(100, seed=3)
    with ReplayServer(service_tables(), token=TOKEN) as server, \
            ReplayClient(server.address, TOKEN) as client:
        with client.writer("frames") as writer:
            writer.extend(data)
        stop = threading.Event()
        with prefetching(client, "frames", 16, torch.device("cpu"), depth=2) as prefetcher:
            held = [prefetcher.get(stop)]
            for _ in range(2):  # the learner moves on twice while the queue refills
                wait_until(prefetcher._ready.full, what="the prefetch queue filled")
                held.append(prefetcher.get(stop))
            wait_until(prefetcher._ready.full, what="the prefetch queue filled again")
            for batch in held:
                assert batch is not None
                # each row is still the stack its action names: nothing decoded over it
                np.testing.assert_array_equal(
                    batch.columns["frames"].numpy(),
                    data["frames"][batch.columns["action"].numpy()])
