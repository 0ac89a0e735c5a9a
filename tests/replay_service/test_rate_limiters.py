"""Rate limiters: pure checks on counters, and real blocking/release across threads.

A blocked call is detected through the table's own ``samples_waiting``/``inserts_waiting``
counters, never by sleeping and hoping the thread got there.
"""

import threading

import numpy as np
import pytest

from shoal.protos.tables import TableCounts
from shoal.replay_service import (
    MinSize,
    OldestFirst,
    Prioritized,
    Queue,
    RateLimiterTimeout,
    SampleToInsertRatio,
    Table,
)
from shoal.replay_service.table import TableClosed, WaitCancelled

from ..conftest import CARTPOLE_SIGNATURE, transitions, wait_until


class Call(threading.Thread):
    """Runs ``fn`` in a thread and keeps its result or exception."""

    def __init__(self, fn):
        super().__init__(daemon=True)
        self.fn, self.result, self.error = fn, None, None

    def run(self):
        try:
            self.result = self.fn()
        except BaseException as error:
            self.error = error

    def finish(self):
        self.join(timeout=30)
        assert not self.is_alive(), "the blocked call was never released"
        return self


def test_sample_to_insert_ratio_formula():
    limiter = SampleToInsertRatio(samples_per_insert=2.0, min_size_to_sample=10, error_buffer=6)
    # offset = 20: inserts allowed while 2*inserted - sampled <= 26, samples while >= 14
    assert limiter.can_insert(TableCounts(13, 13, 0), 1)
    assert not limiter.can_insert(TableCounts(14, 14, 0), 1)  # diff 28
    assert not limiter.can_sample(TableCounts(9, 9, 0), 1)    # below min size
    assert limiter.can_sample(TableCounts(10, 10, 6), 1)      # diff 14
    assert not limiter.can_sample(TableCounts(10, 10, 7), 1)  # diff 13


def test_limiter_arguments_are_validated():
    with pytest.raises(ValueError, match="error_buffer: expected >= max"):
        Table("t", Prioritized(), OldestFirst(), 100, SampleToInsertRatio(4.0, 10, 2.0),
              CARTPOLE_SIGNATURE)
    with pytest.raises(ValueError, match="samples_per_insert: expected > 0"):
        SampleToInsertRatio(0.0, 10, 2.0).validate(100)
    with pytest.raises(ValueError, match="max_size: the Queue limiter's 5 must equal"):
        Queue(5).validate(8)


def test_min_size_blocks_sampling_until_enough_items_arrive():
    table = Table("t", Prioritized(), OldestFirst(), 100, MinSize(10), CARTPOLE_SIGNATURE)
    table.insert(transitions(9))
    sampler = Call(lambda: table.sample(4))
    sampler.start()
    wait_until(lambda: table.stats().samples_waiting == 1, what="the sampler to block")
    assert sampler.is_alive()
    table.insert(transitions(1, start=9))
    assert sampler.finish().error is None
    assert sampler.result is not None and sampler.result.keys.size == 4
    assert table.stats().sample_blocked_seconds > 0


def test_sample_to_insert_ratio_blocks_the_faster_side_both_ways():
    limiter = SampleToInsertRatio(samples_per_insert=1.0, min_size_to_sample=4, error_buffer=4)
    table = Table("t", Prioritized(), OldestFirst(), 1000, limiter, CARTPOLE_SIGNATURE)
    # Actors ahead: after 8 inserted items with nothing sampled, diff = 8 = offset + buffer,
    # one more insert is allowed and then inserts wait for the learner.
    table.insert(transitions(9))
    inserter = Call(lambda: table.insert(transitions(1, start=9)))
    inserter.start()
    wait_until(lambda: table.stats().inserts_waiting == 1, what="the insert to block")
    table.sample(4)  # diff 9 -> 5: inserts may go on
    assert inserter.finish().error is None
    assert table.size == 10
    # Learner ahead: diff = 10 - 4 = 6; samples allowed while diff >= 0
    table.sample(6)
    table.sample(1)  # diff 0 -> -1
    sampler = Call(lambda: table.sample(2))
    sampler.start()
    wait_until(lambda: table.stats().samples_waiting == 1, what="the sample to block")
    table.insert(transitions(1, start=10))
    assert sampler.finish().error is None


def test_can_insert_and_can_sample_say_what_the_calls_would_do_without_waiting():
    """What a deterministic run asks before each call, driving both sides in one thread."""
    limiter = SampleToInsertRatio(samples_per_insert=1.0, min_size_to_sample=4, error_buffer=4)
    table = Table("t", Prioritized(), OldestFirst(), 1000, limiter, CARTPOLE_SIGNATURE)
    assert table.can_insert(1) and not table.can_sample(1)  # empty: below min size
    table.insert(transitions(9))  # diff 9 > offset + buffer: inserts would wait
    assert not table.can_insert(1) and table.can_sample(4)
    table.sample(4)
    assert table.can_insert(1)
    table.sample(5)  # diff 0 = offset - buffer: one more sample may go
    assert table.can_sample(1)
    table.sample(1)  # diff -1 < offset - buffer: samples would wait
    assert not table.can_sample(1)
    queue = Table.queue("q", 2, CARTPOLE_SIGNATURE)
    assert queue.can_insert(2) and not queue.can_insert(3) and not queue.can_sample(1)
    queue.insert(transitions(2))
    assert not queue.can_insert(1) and queue.can_sample(1)
    assert table.stats().inserts_waiting == table.stats().samples_waiting == 0


def test_blocked_calls_time_out_or_are_released_by_cancel_and_close():
    table = Table("t", Prioritized(), OldestFirst(), 100, MinSize(5), CARTPOLE_SIGNATURE)
    with pytest.raises(RateLimiterTimeout, match=r"sample on table 't' waited 0\.05s"):
        table.sample(1, timeout=0.05)
    cancel = threading.Event()
    cancelled = Call(lambda: table.sample(1, cancel=cancel))
    closed = Call(lambda: table.sample(1))
    cancelled.start()
    closed.start()
    wait_until(lambda: table.stats().samples_waiting == 2, what="both samplers to block")
    cancel.set()
    table.wake()
    assert isinstance(cancelled.finish().error, WaitCancelled)
    table.close()
    assert isinstance(closed.finish().error, TableClosed)


def test_queue_blocks_inserts_while_full_and_loses_nothing():
    table = Table.queue("q", 4, CARTPOLE_SIGNATURE)
    table.insert(transitions(3))
    inserter = Call(lambda: table.insert(transitions(2, start=3)))
    inserter.start()
    wait_until(lambda: table.stats().inserts_waiting == 1, what="the insert to block")
    np.testing.assert_array_equal(table.sample(1).columns["action"], [0])
    assert inserter.finish().error is None
    np.testing.assert_array_equal(table.sample(4).columns["action"], [1, 2, 3, 4])
