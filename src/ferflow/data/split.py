"""Stratified, seeded train/val/test split and balanced class weights."""

from __future__ import annotations

import numpy as np

from ferflow import SPLIT_NAMES


def check_fractions(fractions: dict[str, float], key: str = "fractions") -> None:
    """Fractions must be in [0, 1], train > 0, and sum to 1."""
    for name in SPLIT_NAMES:
        if name not in fractions:
            raise ValueError(f"{key}.{name} is missing; give fractions for {list(SPLIT_NAMES)}")
        if not 0.0 <= float(fractions[name]) <= 1.0:
            raise ValueError(f"{key}.{name} = {fractions[name]} is outside [0, 1]")
    if float(fractions["train"]) <= 0:
        raise ValueError(f"{key}.train must be > 0")
    total = sum(float(fractions[name]) for name in SPLIT_NAMES)
    if abs(total - 1.0) > 1e-6:
        raise ValueError(
            f"{key}.train + {key}.val + {key}.test = {total:g}, but they must sum to 1 "
            f"(got {', '.join(f'{n}={fractions[n]}' for n in SPLIT_NAMES)})"
        )


def _class_allocation(count: int, fractions: list[float]) -> list[int]:
    """Split `count` items by `fractions` with the largest-remainder method.

    Then every split with a non-zero fraction that got nothing takes one item from the
    largest split, as long as that split stays within one item of its exact share:
    every size is always within one item of `fraction * count`.
    """
    exact = np.asarray(fractions) * count
    sizes = np.floor(exact).astype(int)
    order = np.argsort(-(exact - sizes), kind="stable")
    for i in order[: count - sizes.sum()]:
        sizes[i] += 1
    for i in np.flatnonzero((np.asarray(fractions) > 0) & (sizes == 0)):
        # Donors keep at least one item and stay within one item of their share.
        can_give = (sizes > 1) & (sizes - 1 >= exact - 1)
        if can_give.any():
            donor = int(np.argmax(np.where(can_give, sizes - exact, -np.inf)))
            sizes[donor] -= 1
            sizes[i] += 1
    return sizes.tolist()


def stratified_split(labels: np.ndarray, fractions: dict[str, float], seed: int) -> dict[str, np.ndarray]:
    """Indices for train/val/test, split per class so every split keeps the class mix.

    Each split's share of a class is within one item of its fraction, and every split
    gets each class whose share there is at least half an item. The same seed gives the
    same split. Indices come back sorted.
    """
    check_fractions(fractions)
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in SPLIT_NAMES}
    shares = [float(fractions[name]) for name in SPLIT_NAMES]
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        sizes = _class_allocation(len(members), shares)
        start = 0
        for name, size in zip(SPLIT_NAMES, sizes):
            parts[name].append(members[start : start + size])
            start += size
    return {
        name: np.sort(np.concatenate(parts[name] or [np.empty(0, np.int64)])).astype(np.int64) for name in SPLIT_NAMES
    }


def class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """Balanced weights n / (k * n_c), so each class contributes equally to the loss."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)
    missing = [c for c in range(num_classes) if counts[c] == 0]
    if missing:
        raise ValueError(
            f"classes {missing} have no training images, so they cannot be weighted; "
            "use more data or a larger split.train"
        )
    total = counts.sum()
    return {c: float(total / (num_classes * counts[c])) for c in range(num_classes)}
