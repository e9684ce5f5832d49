"""Stratified split and class weights, with property-based checks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferflow.data.split import SPLIT_NAMES, check_fractions, class_weights, stratified_split

FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}

class_counts = st.lists(st.integers(min_value=0, max_value=60), min_size=2, max_size=7).filter(
    lambda counts: sum(counts) > 0
)


def labels_from(counts: list[int]) -> np.ndarray:
    return np.repeat(np.arange(len(counts)), counts)


@settings(max_examples=60, deadline=None)
@given(counts=class_counts, seed=st.integers(0, 2**32 - 1))
def test_split_is_a_partition_with_fractions_within_one_item_per_class(counts, seed) -> None:
    labels = labels_from(counts)
    parts = stratified_split(labels, FRACTIONS, seed)
    everything = np.concatenate([parts[s] for s in SPLIT_NAMES])
    assert sorted(everything.tolist()) == list(range(len(labels)))
    for label, count in enumerate(counts):
        for split in SPLIT_NAMES:
            got = int((labels[parts[split]] == label).sum())
            assert abs(got - FRACTIONS[split] * count) <= 1, (label, split, got, count)


@settings(max_examples=60, deadline=None)
@given(counts=class_counts, seed=st.integers(0, 2**32 - 1))
def test_every_class_is_in_every_split_when_counts_allow(counts, seed) -> None:
    labels = labels_from(counts)
    parts = stratified_split(labels, FRACTIONS, seed)
    for label, count in enumerate(counts):
        # "Counts allow" when each split's exact share of the class is at least half an item.
        if all(count * fraction >= 0.5 for fraction in FRACTIONS.values()):
            for split in SPLIT_NAMES:
                assert (labels[parts[split]] == label).any(), (label, split, count)


@settings(max_examples=30, deadline=None)
@given(counts=class_counts, seed=st.integers(0, 2**32 - 1))
def test_same_seed_same_split(counts, seed) -> None:
    labels = labels_from(counts)
    first, second = stratified_split(labels, FRACTIONS, seed), stratified_split(labels, FRACTIONS, seed)
    for split in SPLIT_NAMES:
        np.testing.assert_array_equal(first[split], second[split])


def test_no_labels_give_empty_splits() -> None:
    parts = stratified_split(np.array([], dtype=np.int64), FRACTIONS, 0)
    assert all(len(parts[s]) == 0 for s in SPLIT_NAMES)


def test_different_seeds_give_different_splits() -> None:
    labels = labels_from([50, 50, 50])
    assert not np.array_equal(
        stratified_split(labels, FRACTIONS, 1)["test"], stratified_split(labels, FRACTIONS, 2)["test"]
    )


def test_stratification_keeps_the_class_mix() -> None:
    labels = labels_from([400, 40, 560])
    parts = stratified_split(labels, FRACTIONS, 0)
    overall = np.bincount(labels) / len(labels)
    for split in SPLIT_NAMES:
        share = np.bincount(labels[parts[split]], minlength=3) / len(parts[split])
        np.testing.assert_allclose(share, overall, atol=0.01)


@pytest.mark.parametrize(
    "fractions, message",
    [
        ({"train": 0.7, "val": 0.2, "test": 0.2}, "sum to 1"),
        ({"train": 0.7, "val": 0.3}, "fractions.test is missing"),
        ({"train": 1.2, "val": -0.1, "test": -0.1}, "outside"),
        ({"train": 0.0, "val": 0.5, "test": 0.5}, "fractions.train must be > 0"),
    ],
)
def test_bad_fractions_are_refused_with_the_key(fractions, message) -> None:
    with pytest.raises(ValueError, match=message):
        check_fractions(fractions)


def test_class_weights_on_a_hand_computed_case() -> None:
    # n = 4, k = 2: class 0 has 3 images -> 4 / (2 * 3); class 1 has 1 -> 4 / (2 * 1).
    weights = class_weights(np.array([0, 0, 0, 1]), 2)
    assert weights == pytest.approx({0: 4 / 6, 1: 2.0})


@given(counts=st.lists(st.integers(1, 500), min_size=2, max_size=7))
def test_class_weights_balance_every_class(counts) -> None:
    weights = class_weights(labels_from(counts), len(counts))
    contributions = [weights[c] * n for c, n in enumerate(counts)]
    # Each class then carries the same total weight, n / k, and the weights sum to n overall.
    np.testing.assert_allclose(contributions, sum(counts) / len(counts))


def test_class_weights_refuse_a_class_without_images() -> None:
    with pytest.raises(ValueError, match=r"classes \[2\] have no training images"):
        class_weights(np.array([0, 1, 1]), 3)
