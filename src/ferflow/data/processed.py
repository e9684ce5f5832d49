"""The preprocess stage's output, data/processed/dataset.npz: arrays per split and the class names.

Kept apart from the code that makes it, so that training and evaluation read it without
importing (or depending on) the loading, deduplication and splitting code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ferflow import SPLIT_NAMES
from ferflow.io import load_npz, save_npz


@dataclass
class ProcessedData:
    """Arrays per split plus the class names, as saved in data/processed/dataset.npz."""

    x: dict[str, np.ndarray]  # split -> (n, 48, 48) uint8
    y: dict[str, np.ndarray]  # split -> (n,) int64
    files: dict[str, np.ndarray]  # split -> (n,) source-relative paths
    class_names: tuple[str, ...]

    def counts(self) -> dict[str, dict[str, int]]:
        return {
            split: {
                name: int(c)
                for name, c in zip(self.class_names, np.bincount(self.y[split], minlength=len(self.class_names)))
            }
            for split in SPLIT_NAMES
        }


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
