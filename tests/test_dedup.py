"""Duplicates and leakage: identical faces never straddle the splits."""

from __future__ import annotations

import numpy as np

from ferflow.data.dedup import deduplicate, pixel_hashes
from ferflow.data.folders import load_folder_dataset
from ferflow.data.preprocess import prepare
from ferflow.data.records import Dataset

FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}


def with_copies(dataset: Dataset, sources: list[int], labels: list[int]) -> Dataset:
    """Append pixel-identical copies of `sources` with the given labels, from the 'test' folder."""
    return Dataset(
        images=np.concatenate([dataset.images, dataset.images[sources]]),
        labels=np.concatenate([dataset.labels, np.asarray(labels)]),
        files=np.concatenate([dataset.files, np.asarray([f"copy_{i}" for i in sources])]),
        splits=np.concatenate([dataset.splits, np.asarray(["test"] * len(sources))]),
        class_names=dataset.class_names,
    )


def test_identical_copies_are_reduced_to_one(tiny_source) -> None:
    base = load_folder_dataset(tiny_source)
    dataset = with_copies(base, [0, 0, 5], [base.labels[0], base.labels[0], base.labels[5]])
    report = deduplicate(dataset.images, dataset.labels, dataset.splits)
    assert report.groups == 2
    assert report.duplicates_removed == 3
    assert report.conflicting_groups == 0
    assert report.keep.sum() == len(base)
    assert len(set(pixel_hashes(dataset.images[report.keep]))) == report.keep.sum()


def test_conflicting_labels_drop_the_whole_group_or_keep_first(tiny_source) -> None:
    base = load_folder_dataset(tiny_source)
    other_label = (base.labels[3] + 1) % len(base.class_names)
    dataset = with_copies(base, [3], [other_label])
    dropped = deduplicate(dataset.images, dataset.labels, dataset.splits, on_conflict="drop")
    assert dropped.conflicting_groups == 1 and dropped.conflicting_removed == 2
    assert not dropped.keep[3] and not dropped.keep[-1]
    kept = deduplicate(dataset.images, dataset.labels, dataset.splits, on_conflict="keep_first")
    assert kept.keep[3] and not kept.keep[-1]


def test_cross_split_groups_are_counted(tiny_source) -> None:
    base = load_folder_dataset(tiny_source)
    train_index = int(np.flatnonzero(base.splits == "train")[0])
    dataset = with_copies(base, [train_index], [base.labels[train_index]])
    assert deduplicate(dataset.images, dataset.labels, dataset.splits).cross_split_groups == 1


def test_no_val_or_test_face_has_a_twin_in_train(tiny_source) -> None:
    base = load_folder_dataset(tiny_source)
    # Many copies, some relabelled, so that a naive split would leak.
    sources = list(range(0, len(base), 2))
    labels = [int(base.labels[i]) if i % 4 else int((base.labels[i] + 1) % 7) for i in sources]
    data, _ = prepare(with_copies(base, sources, labels), FRACTIONS, seed=0)
    train_hashes = set(pixel_hashes(data.x["train"]))
    for split in ("val", "test"):
        assert not train_hashes & set(pixel_hashes(data.x[split])), split
    assert len(set(pixel_hashes(data.x["val"])) & set(pixel_hashes(data.x["test"]))) == 0
