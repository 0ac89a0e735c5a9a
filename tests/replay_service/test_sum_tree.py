import numpy as np
import pytest

from shoal.replay_service.sum_tree import SumTree


def assert_frequencies_match(draws: np.ndarray, probabilities: np.ndarray) -> None:
    """Every bucket within 5 binomial standard deviations of n * p (fixed seeds)."""
    n = draws.size
    counts = np.bincount(draws, minlength=probabilities.size)
    expected = n * probabilities
    tolerance = 5 * np.sqrt(n * probabilities * (1 - probabilities)) + 1
    worst = np.max(np.abs(counts - expected) - tolerance)
    assert worst <= 0, f"a bucket is {worst:.1f} draws outside its tolerance"
    assert counts[probabilities == 0].sum() == 0


def test_sampling_frequencies_follow_the_leaf_values():
    rng = np.random.default_rng(0)
    values = rng.exponential(size=37)
    values[[3, 20]] = 0.0  # empty leaves must never be drawn
    tree = SumTree(40)     # not a power of two: padding leaves stay empty too
    tree.set(np.arange(37), values)
    samples = [tree.sample(256, rng) for _ in range(800)]
    draws = np.concatenate([leaves for leaves, _ in samples])
    padded = np.zeros(40)
    padded[:37] = values
    assert_frequencies_match(draws, padded / padded.sum())
    leaves, probabilities = samples[0]
    np.testing.assert_allclose(probabilities, padded[leaves] / padded.sum(), rtol=1e-12)


def test_total_and_leaves_follow_updates_and_repeated_indices():
    tree = SumTree(8)
    tree.set(np.arange(8), np.arange(8, dtype=float))
    assert tree.total == 28
    tree.set(np.array([2, 2, 5]), np.array([10.0, 4.0, 0.5]))  # last value wins for 2
    np.testing.assert_array_equal(tree.get(np.array([2, 5])), [4.0, 0.5])
    assert tree.total == pytest.approx(28 - 2 + 4 - 5 + 0.5)


def test_updates_change_the_sampling_distribution():
    rng = np.random.default_rng(1)
    tree = SumTree(4)
    tree.set(np.arange(4), np.ones(4))
    tree.set(np.array([0]), np.array([0.0]))
    tree.set(np.array([3]), np.array([5.0]))
    draws = np.concatenate([tree.sample(100, rng)[0] for _ in range(200)])
    assert_frequencies_match(draws, np.array([0, 1, 1, 5]) / 7)


def test_setting_a_run_of_leaves_equals_setting_them_one_by_one():
    rng = np.random.default_rng(7)
    by_run, by_index = SumTree(50_000), SumTree(50_000)
    for start, length in [(0, 300), (299, 1), (10_000, 4096), (49_000, 1000)]:
        values = rng.random(length)
        by_run.set_run(start, length, values)
        by_index.set(np.arange(start, start + length), values)
    np.testing.assert_array_equal(by_run._nodes, by_index._nodes)


def test_find_never_lands_on_an_empty_leaf_at_the_edge():
    tree = SumTree(1 << 10)
    tree.set(np.arange(3), np.array([0.1, 0.2, 0.3]))
    edge = np.nextafter(tree.total, 0.0)
    assert tree.find(np.array([edge]))[0] == 2
    assert tree.find(np.array([0.0]))[0] == 0


def test_a_tree_larger_than_the_prefix_summed_top_samples_correctly():
    rng = np.random.default_rng(6)
    tree = SumTree(100_000)  # 2^17 leaves: 4096 top nodes over subtrees of depth 5
    values = np.zeros(100_000)
    hot = rng.choice(100_000, size=20, replace=False)
    values[hot] = rng.uniform(1, 5, size=20)
    tree.set(np.arange(100_000), values)
    draws = np.concatenate([tree.sample(256, rng)[0] for _ in range(400)])
    assert set(np.unique(draws).tolist()) <= set(hot.tolist())
    counts = np.bincount(draws, minlength=100_000)[hot]
    expected = draws.size * values[hot] / values.sum()
    assert np.all(np.abs(counts - expected) <= 5 * np.sqrt(expected) + 1)


def test_a_million_leaves_sum_exactly_after_many_updates():
    rng = np.random.default_rng(2)
    tree = SumTree(1_000_000)
    tree.set(np.arange(1_000_000), rng.random(1_000_000))
    for _ in range(50):
        tree.set(rng.integers(0, 1_000_000, 256), rng.random(256))
    leaves = tree.get(np.arange(1_000_000))
    assert tree.total == pytest.approx(leaves.sum(), rel=1e-12)


def test_sampling_an_empty_tree_is_an_error():
    with pytest.raises(ValueError, match="total is 0"):
        SumTree(4).sample(1, np.random.default_rng(0))
