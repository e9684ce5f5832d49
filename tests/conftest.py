"""Shared fixtures: tiny real data sets drawn from the embedded sample."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from ferflow import CLASS_NAMES
from ferflow.runtime import configure_determinism

configure_determinism()  # before any test imports Keras

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"


def copy_tiny_source(dest: Path, per_class: dict[str, int], split: str = "train") -> Path:
    """Copy the first N real faces of each class from data/sample/<split> into dest/<split>."""
    for name, count in per_class.items():
        files = sorted((SAMPLE / split / name).glob("*.jpg"))[:count]
        assert len(files) == count, f"data/sample/{split}/{name} has fewer than {count} faces"
        target = dest / split / name
        target.mkdir(parents=True, exist_ok=True)
        for path in files:
            shutil.copy(path, target / path.name)
    return dest


@pytest.fixture
def tiny_source(tmp_path: Path) -> Path:
    """A Kaggle-layout folder with 6 train and 2 test faces per class (56 real faces)."""
    root = tmp_path / "fer"
    copy_tiny_source(root, {name: 6 for name in CLASS_NAMES}, "train")
    copy_tiny_source(root, {name: 2 for name in CLASS_NAMES}, "test")
    return root


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
