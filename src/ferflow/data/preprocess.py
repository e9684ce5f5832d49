"""The preprocess stage's logic: deduplicate, split, weight classes, save arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ferflow import SPLIT_NAMES
from ferflow.data.dedup import DuplicateReport, blank_mask, deduplicate
from ferflow.data.processed import ProcessedData
from ferflow.data.records import Dataset
from ferflow.data.split import class_weights, stratified_split

# Source split names (Kaggle folders and CSV Usage values) and where `official` puts them.
OFFICIAL_SPLITS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "publictest": "val",
    "test": "test",
    "testing": "test",
    "privatetest": "test",
}
PRIORITY = {"train": 0, "val": 1, "test": 2}  # which copy of a duplicate to keep


def official_assignment(splits: np.ndarray) -> np.ndarray:
    """Map each item's source split to train/val/test; refuse names that cannot be mapped."""
    if "" in set(splits.tolist()):
        raise ValueError(
            "split.strategy = 'official' needs a test split in the source, but it is a "
            "single folder of class folders; use split.strategy: stratified"
        )
    unknown = sorted({s for s in set(splits.tolist()) if s.lower() not in OFFICIAL_SPLITS})
    if unknown:
        raise ValueError(
            f"split.strategy = 'official' cannot place source split(s) {unknown}: name the "
            f"folders train/, validation/ and test/, or use split.strategy: stratified"
        )
    assigned = np.asarray([OFFICIAL_SPLITS[s.lower()] for s in splits.tolist()], dtype=np.str_)
    if "test" not in set(assigned.tolist()):
        raise ValueError(
            "split.strategy = 'official' needs a test split in the source "
            "(a test/ folder or PrivateTest rows); use split.strategy: stratified"
        )
    return assigned


@dataclass
class PrepareReport:
    """What preprocessing removed, for the report and results/preprocess.json."""

    duplicates: DuplicateReport
    blank: int  # near-blank faces found
    blank_removed: int  # blank faces dropped (those not already dropped as duplicates)
    kept: int  # faces left for the split

    def as_dict(self) -> dict[str, int]:
        return {
            **self.duplicates.as_dict(),
            "blank_faces": self.blank,
            "blank_removed": self.blank_removed,
            "kept": self.kept,
        }


def prepare(
    dataset: Dataset,
    fractions: dict[str, float],
    seed: int,
    on_conflict: str = "drop",
    strategy: str = "stratified",
    blank_threshold: float = 1.0,
    on_blank: str = "drop",
) -> tuple[ProcessedData, PrepareReport]:
    """Remove blanks and duplicates, then split.

    stratified: pool everything and split it by `fractions`, per class.
    official: keep the source's own test split (and validation split, if any) and carve
    validation from train otherwise. Duplicates keep their test or validation copy.
    Splitting after deduplication guarantees no val or test image has a twin in train.
    """
    if strategy not in ("stratified", "official"):
        raise ValueError(f"split.strategy must be 'stratified' or 'official', not {strategy!r}")
    if on_blank not in ("drop", "keep"):
        raise ValueError(f"data.on_blank must be 'drop' or 'keep', not {on_blank!r}")
    assigned = official_assignment(dataset.splits) if strategy == "official" else None
    priority = None if assigned is None else np.asarray([PRIORITY[a] for a in assigned.tolist()])
    duplicates = deduplicate(dataset.images, dataset.labels, dataset.splits, on_conflict, priority)
    blank = blank_mask(dataset.images, blank_threshold)
    drop_blank = blank if on_blank == "drop" else np.zeros_like(blank)
    refuse_mass_blanking(dataset, drop_blank, blank_threshold)
    kept = np.flatnonzero(duplicates.keep & ~drop_blank)
    report = PrepareReport(duplicates, int(blank.sum()), int((duplicates.keep & drop_blank).sum()), len(kept))

    if assigned is None:
        local = stratified_split(dataset.labels[kept], fractions, seed)
        chosen = {split: kept[local[split]] for split in SPLIT_NAMES}
    else:
        chosen = {split: kept[assigned[kept] == split] for split in SPLIT_NAMES}
        if len(chosen["val"]) == 0:
            train = chosen["train"]
            share = fractions["val"] / (fractions["train"] + fractions["val"])
            local = stratified_split(dataset.labels[train], {"train": 1 - share, "val": share, "test": 0.0}, seed)
            chosen["train"], chosen["val"] = train[local["train"]], train[local["val"]]
    data = ProcessedData(
        x={s: dataset.images[i] for s, i in chosen.items()},
        y={s: dataset.labels[i] for s, i in chosen.items()},
        files={s: dataset.files[i] for s, i in chosen.items()},
        class_names=dataset.class_names,
    )
    return data, report


MAX_BLANK_SHARE = 0.5  # real data sets hold a handful of blank faces; a threshold that drops half is wrong


def refuse_mass_blanking(dataset: Dataset, dropped: np.ndarray, blank_threshold: float) -> None:
    """Refuse a blank threshold that would drop half the faces or every face of a class."""
    emptied = [
        name
        for i, name in enumerate(dataset.class_names)
        if (dataset.labels == i).any() and dropped[dataset.labels == i].all()
    ]
    if emptied or (len(dropped) and dropped.mean() > MAX_BLANK_SHARE):
        raise ValueError(
            f"data.blank_threshold = {blank_threshold:g} marks {int(dropped.sum())} of {len(dropped)} faces "
            f"as blank{f' (every face of {emptied})' if emptied else ''}; real faces vary far more: "
            "lower it (the default is 5), or set data.on_blank: keep"
        )


def training_class_weights(data: ProcessedData) -> dict[str, float]:
    """Balanced class weights from the train split, keyed by class name."""
    weights = class_weights(data.y["train"], len(data.class_names))
    return {name: weights[i] for i, name in enumerate(data.class_names)}
