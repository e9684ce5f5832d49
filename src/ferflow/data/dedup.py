"""Exact duplicates: FER-2013 holds many pixel-identical faces, some with conflicting labels.

Deduplicating before the split is what makes the split leak-free: once every decoded
image is unique, no val or test face can have a pixel-identical twin in train.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


def pixel_hashes(images: np.ndarray) -> np.ndarray:
    """One hex digest per image, over its decoded pixels."""
    return np.asarray(
        [hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16).hexdigest() for image in images],
        dtype=np.str_,
    )


@dataclass
class DuplicateReport:
    keep: np.ndarray  # boolean mask over the input images
    groups: int  # groups of two or more identical images
    duplicates_removed: int  # extra copies dropped from consistent groups
    conflicting_groups: int  # groups whose copies carry different labels
    conflicting_removed: int  # images dropped because their group conflicts
    cross_split_groups: int  # groups that straddle two source split folders
    group_of: np.ndarray  # group index of every input image
    group_sizes: np.ndarray  # images per group

    def as_dict(self) -> dict[str, int]:
        return {
            "duplicate_groups": self.groups,
            "duplicates_removed": self.duplicates_removed,
            "conflicting_groups": self.conflicting_groups,
            "conflicting_removed": self.conflicting_removed,
            "cross_split_groups": self.cross_split_groups,
            "kept": int(self.keep.sum()),
        }


def deduplicate(
    images: np.ndarray,
    labels: np.ndarray,
    splits: np.ndarray | None = None,
    on_conflict: str = "drop",
    priority: np.ndarray | None = None,
) -> DuplicateReport:
    """Keep one image of each identical group; drop or keep conflicting groups.

    The copy kept is the one with the highest `priority` (for example test over train,
    so an official test set stays whole), then the first. on_conflict: "drop" removes every
    copy of a group whose labels disagree (its true label is unknown); "keep_first" keeps
    one copy like any other group.
    """
    if on_conflict not in ("drop", "keep_first"):
        raise ValueError(f"on_conflict must be 'drop' or 'keep_first', not {on_conflict!r}")
    priority = np.zeros(len(images), dtype=np.int64) if priority is None else np.asarray(priority)
    hashes = pixel_hashes(images)
    _, group_of, sizes = np.unique(hashes, return_inverse=True, return_counts=True)
    # Within each group, the first image in (-priority, index) order is kept.
    order = np.lexsort((np.arange(len(images)), -priority, group_of))
    first_in_group = np.ones(len(order), dtype=bool)
    first_in_group[1:] = group_of[order][1:] != group_of[order][:-1]
    keep = np.zeros(len(images), dtype=bool)
    keep[order[first_in_group]] = True

    # Per group: do the labels (and the source splits) of its members differ?
    by_group = np.argsort(group_of, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(group_of[by_group]) != 0])
    conflicting = _varies(np.asarray(labels)[by_group], starts)
    cross_split = 0
    if splits is not None:
        split_codes = np.unique(np.asarray(splits), return_inverse=True)[1]
        cross_split = int(_varies(split_codes[by_group], starts).sum())
    conflicting_groups = int(conflicting.sum())
    conflicting_removed = 0
    if on_conflict == "drop":
        in_conflict = conflicting[group_of]
        keep &= ~in_conflict
        conflicting_removed = int(in_conflict.sum())
    groups = int((sizes > 1).sum())
    duplicates_removed = int(len(images) - keep.sum() - conflicting_removed)
    return DuplicateReport(
        keep, groups, duplicates_removed, conflicting_groups, conflicting_removed, cross_split, group_of, sizes
    )


def _varies(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """For runs of `values` beginning at `starts`: does the run hold more than one value?"""
    return np.minimum.reduceat(values, starts) != np.maximum.reduceat(values, starts)


def blank_mask(images: np.ndarray, threshold: float) -> np.ndarray:
    """Near-blank faces: the standard deviation of their grey values is below `threshold`."""
    flat = images.reshape(len(images), -1)
    std = np.empty(len(images), dtype=np.float32)
    for start in range(0, len(images), 1024):  # in chunks: a float copy of all 30,000 faces is slow
        std[start : start + 1024] = flat[start : start + 1024].astype(np.float32).std(axis=1)
    return std < threshold
