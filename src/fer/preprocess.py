"""The preprocess stage's logic: deduplicate, split, weight classes, save arrays."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer.data import Dataset
from fer.dedup import DuplicateReport, deduplicate
from fer.io import load_npz, save_npz
from fer.split import SPLIT_NAMES, class_weights, stratified_split


@dataclass
class ProcessedData:
    """Arrays per split plus the class names, as saved in data/processed/dataset.npz."""

    x: dict[str, np.ndarray]  # split -> (n, 48, 48) uint8
    y: dict[str, np.ndarray]  # split -> (n,) int64
    files: dict[str, np.ndarray]  # split -> (n,) source-relative paths
    class_names: tuple[str, ...]

    def counts(self) -> dict[str, dict[str, int]]:
        return {
            split: {name: int(c) for name, c in zip(
                self.class_names, np.bincount(self.y[split], minlength=len(self.class_names)))}
            for split in SPLIT_NAMES
        }


def prepare(dataset: Dataset, fractions: dict[str, float], seed: int,
            on_conflict: str = "drop") -> tuple[ProcessedData, DuplicateReport]:
    """Deduplicate, then split the unique images stratified by class.

    Splitting after deduplication is what guarantees that no val or test image has a
    pixel-identical twin in train.
    """
    report = deduplicate(dataset.images, dataset.labels, dataset.splits, on_conflict=on_conflict)
    kept = np.flatnonzero(report.keep)
    indices = stratified_split(dataset.labels[kept], fractions, seed)
    chosen = {split: kept[indices[split]] for split in SPLIT_NAMES}
    data = ProcessedData(
        x={s: dataset.images[i] for s, i in chosen.items()},
        y={s: dataset.labels[i] for s, i in chosen.items()},
        files={s: dataset.files[i] for s, i in chosen.items()},
        class_names=dataset.class_names,
    )
    return data, report


def training_class_weights(data: ProcessedData) -> dict[str, float]:
    """Balanced class weights from the train split, keyed by class name."""
    weights = class_weights(data.y["train"], len(data.class_names))
    return {name: weights[i] for i, name in enumerate(data.class_names)}


def save_processed(path: str | Path, data: ProcessedData) -> None:
    arrays = {"class_names": np.asarray(data.class_names, dtype=np.str_)}
    for split in SPLIT_NAMES:
        arrays[f"x_{split}"] = data.x[split]
        arrays[f"y_{split}"] = data.y[split]
        arrays[f"files_{split}"] = data.files[split]
    save_npz(path, **arrays)


def load_processed(path: str | Path) -> ProcessedData:
    if not Path(path).exists():
        raise FileNotFoundError(f"'{path}' does not exist; run the preprocess stage (dvc repro preprocess)")
    arrays = load_npz(path)
    return ProcessedData(
        x={s: arrays[f"x_{s}"] for s in SPLIT_NAMES},
        y={s: arrays[f"y_{s}"] for s in SPLIT_NAMES},
        files={s: arrays[f"files_{s}"] for s in SPLIT_NAMES},
        class_names=tuple(str(n) for n in arrays["class_names"]),
    )
