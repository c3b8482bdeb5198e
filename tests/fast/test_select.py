"""Weighted selection, on both implementations."""
import random
from collections import Counter

import pytest


def test_distribution_follows_weights(kernels):
    picker = kernels.WeightedPicker([1, 0, 3, 0])
    counts = Counter(picker.pick(i / 10_000) for i in range(10_000))
    assert set(counts) == {0, 2}
    assert counts[0] == 2500 and counts[2] == 7500


def test_zero_weight_never_picked_even_at_the_edges(kernels):
    picker = kernels.WeightedPicker([0.0, 2.0, 0.0, 1.0, 0.0])
    for u in (0.0, 1e-300, 0.5, 2 / 3, 0.9999999999999999):
        assert picker.pick(u) in (1, 3)
    assert picker.pick(0.0) == 1
    assert picker.pick(0.9999999999999999) == 3


def test_all_zero_and_empty_return_minus_one(kernels):
    assert kernels.WeightedPicker([0, 0]).pick(0.3) == -1
    assert kernels.WeightedPicker([]).pick(0.3) == -1


@pytest.mark.parametrize("bad", [[-1.0], [float("nan")], [float("inf")], [1, -0.5]])
def test_invalid_weights(kernels, bad):
    with pytest.raises(ValueError):
        kernels.WeightedPicker(bad)


def test_replace_swaps_whole_tables(kernels):
    picker = kernels.WeightedPicker([1, 0])
    assert picker.pick(0.9) == 0
    picker.replace([0, 1, 1])
    assert len(picker) == 3 and picker.weights == (0.0, 1.0, 1.0) and picker.total == 2.0
    assert picker.pick(0.1) == 1 and picker.pick(0.9) == 2
    with pytest.raises(ValueError):
        picker.replace([1, -1])
    assert picker.weights == (0.0, 1.0, 1.0)  # a failed replace leaves the old weights


def test_pick_excluding(kernels):
    picker = kernels.WeightedPicker([1, 1, 0, 2])
    assert picker.pick_excluding(0.0, {0}) == 1
    assert picker.pick_excluding(0.99, {0}) == 3
    assert picker.pick_excluding(0.5, {0, 1, 3}) == -1
    assert {picker.pick_excluding(u / 100, {3}) for u in range(100)} == {0, 1}


def test_seedable(kernels):
    picker = kernels.WeightedPicker([5, 1, 1])
    a = [picker.choose(random.Random(42)) for _ in range(3)]
    rng = random.Random(42)
    assert a[0] == picker.pick(rng.random())
    seq1 = [picker.choose(r) for r in [random.Random(1)] * 50]
    seq2 = [picker.choose(r) for r in [random.Random(1)] * 50]
    assert seq1 == seq2
