import numpy as np
import pytest

from shoal.replay_service import (
    FieldSpec,
    Fifo,
    InvalidItems,
    MinSize,
    OldestFirst,
    Prioritized,
    SampleToInsertRatio,
    Table,
    Uniform,
)

from ..conftest import CARTPOLE_SIGNATURE, FRAMES_SIGNATURE, frames, prioritized_table, transitions
from .test_sum_tree import assert_frequencies_match


def assert_state_equal(before, after):
    assert before.counters == after.counters
    assert before.arrays.keys() == after.arrays.keys()
    for name in before.arrays:
        np.testing.assert_array_equal(before.arrays[name], after.arrays[name])


def test_insert_then_sample_returns_the_stored_columns():
    table = prioritized_table()
    data = transitions(10)
    keys = table.insert(data)
    np.testing.assert_array_equal(keys, np.arange(10))
    batch = table.sample(64)
    rows = batch.columns["action"]  # action numbers the transition
    np.testing.assert_array_equal(batch.keys, rows)
    np.testing.assert_array_equal(batch.columns["obs"], data["obs"][rows])
    assert batch.probabilities.dtype == np.float64 and batch.columns["obs"].dtype == np.float32


def test_prioritized_sampling_follows_p_to_the_alpha():
    table = prioritized_table(max_size=64, alpha=0.7, seed=3)
    priorities = np.linspace(0.0, 4.0, 50)
    table.insert(transitions(50), priorities)
    draws = np.concatenate([table.sample(64).keys for _ in range(800)])
    mass = priorities ** 0.7
    assert_frequencies_match(draws, mass / mass.sum())


def test_probabilities_match_a_direct_computation():
    alpha = 0.6
    table = prioritized_table(max_size=100, alpha=alpha)
    priorities = np.random.default_rng(4).uniform(0.1, 3.0, 40)
    table.insert(transitions(40), priorities)
    batch = table.sample(32)
    expected_p = priorities[batch.keys] ** alpha / np.sum(priorities ** alpha)
    np.testing.assert_allclose(batch.probabilities, expected_p, rtol=1e-12)


def test_new_items_get_the_largest_priority_seen():
    table = prioritized_table(alpha=1.0)
    table.insert(transitions(2), np.array([0.5, 7.0]))
    table.insert(transitions(1))
    batch = table.sample(500)
    probability_of = dict(zip(batch.keys.tolist(), batch.probabilities.tolist(), strict=False))
    assert probability_of[2] == pytest.approx(7.0 / 14.5)


def test_priority_updates_change_sampling_and_ignore_evicted_keys():
    table = prioritized_table(max_size=4, alpha=1.0)
    table.insert(transitions(3))
    table.insert(transitions(3, start=3))  # keys 0 and 1 evicted
    updated, ignored = table.update_priorities(np.array([0, 1, 2, 5]), np.array([9.0, 9, 0, 3]))
    assert (updated, ignored) == (2, 2)
    keys = np.concatenate([table.sample(4).keys for _ in range(200)])
    assert set(keys.tolist()) == {3, 4, 5}  # key 2 has priority 0


def test_removal_at_capacity_keeps_the_newest_items():
    table = prioritized_table(max_size=5)
    table.insert(transitions(3))
    table.insert(transitions(5, start=3))
    assert table.size == 5
    state = table.state()
    np.testing.assert_array_equal(state.arrays["keys"], [3, 4, 5, 6, 7])
    np.testing.assert_array_equal(state.arrays["column.action"], [3, 4, 5, 6, 7])


def test_uniform_selector_draws_every_live_item_equally():
    table = Table("u", Uniform(), OldestFirst(), 30, MinSize(1), CARTPOLE_SIGNATURE, seed=5)
    table.insert(transitions(20), np.linspace(0, 100, 20))  # priorities do not matter
    draws = np.concatenate([table.sample(25).keys for _ in range(1200)])
    assert_frequencies_match(draws, np.full(20, 1 / 20))
    np.testing.assert_allclose(table.sample(8).probabilities, 1 / 20)


def test_fifo_queue_returns_items_in_insertion_order_exactly_once():
    table = Table.queue("rollouts", 8, CARTPOLE_SIGNATURE)
    table.insert(transitions(3))
    table.insert(transitions(4, start=3))
    np.testing.assert_array_equal(table.sample(2).columns["action"], [0, 1])
    np.testing.assert_array_equal(table.sample(5).columns["action"], [2, 3, 4, 5, 6])
    assert table.size == 0
    table.insert(transitions(8, start=7))  # wraps round the ring
    np.testing.assert_array_equal(table.sample(8).columns["action"], np.arange(7, 15))


def test_max_times_sampled_removes_items_after_that_many_samples():
    table = Table("t", Fifo(), OldestFirst(), 10, MinSize(1), CARTPOLE_SIGNATURE,
                  max_times_sampled=2)
    table.insert(transitions(6))
    first = table.sample(3).keys
    second = table.sample(3).keys
    np.testing.assert_array_equal(first, second)  # fifo: same oldest items until spent
    assert table.size == 3
    np.testing.assert_array_equal(table.sample(3).keys, [3, 4, 5])


def test_prioritized_max_times_sampled_counts_repeats_within_a_batch():
    table = prioritized_table(max_size=10, max_times_sampled=3)
    table.insert(transitions(1))
    table.sample(3)  # the only item, drawn 3 times in one batch
    assert table.size == 0


@pytest.mark.parametrize(
    ("columns", "priorities", "message"),
    [
        ({**transitions(4), "extra": np.zeros(4)}, None, r"columns: unexpected \['extra'\]"),
        ({k: v for k, v in transitions(4).items() if k != "obs"}, None,
         r"columns: missing \['obs'\]"),
        ({**transitions(4), "obs": np.zeros((4, 4))}, None,
         "obs: expected dtype float32, got float64"),
        ({**transitions(4), "obs": np.zeros((4, 5), np.float32)}, None,
         r"obs: expected shape \[items, \*\[4\]\], got \[4, 5\]"),
        ({**transitions(4), "reward": np.zeros(3, np.float32)}, None,
         "columns: fields disagree on the item count"),
        (transitions(4), np.array([1.0, np.nan, 1, 1]), "priorities: expected finite"),
        (transitions(4), np.array([1.0, -1, 1, 1]), "priorities: expected numbers >= 0"),
        (transitions(4), np.array([1.0, 1]), "priorities: expected 4 numbers"),
        (transitions(1001), None, r"columns: expected 1..max_size \(1000\) items"),
    ],
)
def test_bad_items_raise_naming_the_field_and_change_nothing(columns, priorities, message):
    table = prioritized_table()
    table.insert(transitions(5), np.arange(1.0, 6.0))
    before = table.state()
    with pytest.raises(InvalidItems, match=message):
        table.insert(columns, priorities)
    assert_state_equal(before, table.state())


@pytest.mark.parametrize(
    ("keys", "priorities", "message"),
    [
        (np.array([0, 1]), np.array([1.0, np.inf]), "priorities: expected finite"),
        (np.array([0, 1]), np.array([1.0, -0.5]), "priorities: expected numbers >= 0"),
        (np.array([0, 1]), np.array([1.0]), "priorities: expected 2 numbers"),
        (np.array([0, -1]), np.array([1.0, 1.0]), "keys: expected keys >= 0"),
        (np.array([0.5, 1]), np.array([1.0, 1.0]), "keys: expected a 1-d integer array"),
    ],
)
def test_bad_priority_updates_change_nothing(keys, priorities, message):
    table = prioritized_table()
    table.insert(transitions(5), np.arange(1.0, 6.0))
    before = table.state()
    with pytest.raises(InvalidItems, match=message):
        table.update_priorities(keys, priorities)
    assert_state_equal(before, table.state())


@pytest.mark.parametrize(("batch_size", "batches", "message"), [
    (0, 1, "batch_size: expected 1..max_size"),
    (1001, 1, "batch_size: expected 1..max_size"),
    (8, 0, "batches: expected >= 1"),
])
def test_bad_sample_requests_are_errors(batch_size, batches, message):
    table = prioritized_table()
    table.insert(transitions(5))
    with pytest.raises(InvalidItems, match=message):
        table.sample(batch_size, batches=batches)


def test_constructor_rejects_bad_arguments():
    with pytest.raises(ValueError, match="max_size: expected >= 1"):
        Table("t", Uniform(), OldestFirst(), 0, MinSize(1), CARTPOLE_SIGNATURE)
    with pytest.raises(ValueError, match=r"min_size: expected 1..max_size \(10\)"):
        Table("t", Uniform(), OldestFirst(), 10, MinSize(11), CARTPOLE_SIGNATURE)
    with pytest.raises(ValueError, match=r"alpha: expected a number in \[0, 1\]"):
        Prioritized(alpha=1.5)
    with pytest.raises(ValueError, match="signature: expected at least one field"):
        Table("t", Uniform(), OldestFirst(), 10, MinSize(1), {})
    with pytest.raises(ValueError, match="dtype: dtype 'object'"):
        FieldSpec("object", ())


def test_compressed_fields_are_stored_compressed_and_sampled_decompressed():
    table = Table("frames", Uniform(), OldestFirst(), 50, MinSize(1), FRAMES_SIGNATURE)
    data = frames(20)
    table.insert(data)
    stats = table.stats()
    raw_bytes = 20 * (16 * 16 * 4 + 8)
    assert stats.stored_bytes < raw_bytes / 4
    batch = table.sample(10)
    np.testing.assert_array_equal(batch.columns["frames"], data["frames"][batch.keys])
    raw = table.sample(3, decompress=False).columns["frames"]
    assert all(isinstance(blob, bytes) for blob in raw.rows)


def test_state_restores_the_same_items_priorities_and_counters():
    table = prioritized_table(max_size=8, alpha=1.0)
    table.insert(transitions(6), np.arange(1.0, 7.0))
    table.insert(transitions(5, start=6), np.arange(7.0, 12.0))  # wrapped
    table.update_priorities(np.array([5, 9]), np.array([0.25, 40.0]))
    table.sample(4)
    saved = table.state()
    restored = prioritized_table(max_size=8, alpha=1.0)
    restored.restore(saved)
    assert_state_equal(saved, restored.state())
    batch = restored.sample(8)
    priorities = dict(zip(saved.arrays["keys"].tolist(), saved.arrays["priorities"].tolist(),
                          strict=True))
    total = sum(priorities.values())
    for key, probability in zip(batch.keys.tolist(), batch.probabilities.tolist(), strict=True):
        assert probability == pytest.approx(priorities[key] / total)
    assert restored.insert(transitions(1))[0] == 11  # keys continue where they were


def test_compressed_state_round_trips():
    table = Table("frames", Uniform(), OldestFirst(), 10, MinSize(1), FRAMES_SIGNATURE)
    data = frames(14)
    table.insert({name: column[:7] for name, column in data.items()})
    table.insert({name: column[7:] for name, column in data.items()})
    restored = Table("frames", Uniform(), OldestFirst(), 10, MinSize(1), FRAMES_SIGNATURE)
    restored.restore(table.state())
    assert restored.stats().stored_bytes == table.stats().stored_bytes
    batch = restored.sample(10)
    np.testing.assert_array_equal(batch.columns["frames"], data["frames"][batch.keys])


def test_restore_refuses_a_different_signature():
    table = prioritized_table(max_size=8)
    other = Table("transitions", Uniform(), OldestFirst(), 8, MinSize(1),
                  {"obs": FieldSpec("float32", (3,))})
    with pytest.raises(ValueError, match="signature"):
        other.restore(table.state())


def test_several_batches_in_one_draw_are_each_a_proper_batch():
    table = prioritized_table(max_size=100, alpha=1.0, seed=8)
    priorities = np.random.default_rng(8).uniform(0.5, 5.0, 60)
    table.insert(transitions(60), priorities)
    drawn = table.sample(16, batches=4)
    assert drawn.keys.size == 64 and table.stats().sampled_items == 64
    np.testing.assert_allclose(drawn.probabilities, priorities[drawn.keys] / priorities.sum())
    # stratified draws are shuffled: no batch holds only one stretch of the mass
    assert not np.all(np.diff(np.cumsum(priorities)[drawn.keys[:16]]) >= 0)


def test_a_draw_of_several_batches_respects_the_limiter_and_fifo_size():
    queue = Table.queue("rollouts", 8, CARTPOLE_SIGNATURE)
    queue.insert(transitions(5))
    np.testing.assert_array_equal(queue.sample(2, batches=4).keys, [0, 1, 2, 3])  # 2 fit
    limiter = SampleToInsertRatio(samples_per_insert=1.0, min_size_to_sample=4, error_buffer=8)
    table = Table("t", Prioritized(), OldestFirst(), 100, limiter, CARTPOLE_SIGNATURE)
    table.insert(transitions(10))
    # diff = inserted - sampled = 10; a batch may start while diff >= 4 - 8 = -4: batches
    # start at diff 10, 6, 2, -2, and a fifth would start at -6
    assert table.sample(4, batches=5).keys.size == 16
