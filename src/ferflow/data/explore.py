"""The explore stage's tables: counts per split, grey-value statistics, duplicate groups."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ferflow.data.dedup import DuplicateReport
from ferflow.data.records import Dataset


def source_splits(dataset: Dataset) -> np.ndarray:
    """Each face's source split, "all" where the source has none (a flat folder)."""
    return np.where(dataset.splits == "", "all", dataset.splits)


def counts_per_split(dataset: Dataset) -> pd.DataFrame:
    """Faces per emotion (rows, in class order) and source split (columns)."""
    counts = pd.crosstab(
        pd.Categorical(np.asarray(dataset.class_names)[dataset.labels], categories=dataset.class_names),
        source_splits(dataset),
        dropna=False,
    )
    counts.index.name = "emotion"
    counts.columns.name = "source split"
    return counts


def intensity_stats(images: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...]) -> pd.DataFrame:
    """Faces, mean, std, min and max grey value per class, and over all faces."""

    def row(selected: np.ndarray) -> dict[str, float]:
        if len(selected) == 0:
            return {"faces": 0, "mean": np.nan, "std": np.nan, "min": np.nan, "max": np.nan}
        return {
            "faces": len(selected),
            "mean": float(selected.mean()),
            "std": float(selected.std()),
            "min": int(selected.min()),
            "max": int(selected.max()),
        }

    rows = {name: row(images[labels == i]) for i, name in enumerate(class_names)} | {"all": row(images)}
    stats = pd.DataFrame.from_dict(rows, orient="index")
    # whole numbers stay whole (a transposed frame made every column float: "825.0 faces")
    return stats.astype({"faces": "int64", "min": "Int64", "max": "Int64"})


def duplicate_groups(dataset: Dataset, duplicates: DuplicateReport) -> pd.DataFrame:
    """One row per group of pixel-identical faces: first file, copies, labels, source splits,
    whether the labels conflict and whether the group spans source splits. Conflicting and
    cross-split groups first."""
    splits = source_splits(dataset)
    rows = []
    for group in np.flatnonzero(duplicates.group_sizes > 1):
        members = np.flatnonzero(duplicates.group_of == group)
        rows.append(
            {
                "first file": dataset.files[members[0]],
                "copies": len(members),
                "labels": ", ".join(sorted({dataset.class_names[label] for label in dataset.labels[members]})),
                "source splits": ", ".join(sorted(set(splits[members]))),
                "conflicting": len(set(dataset.labels[members])) > 1,
                "cross-split": len(set(dataset.splits[members])) > 1,
            }
        )
    table = pd.DataFrame(
        rows, columns=["first file", "copies", "labels", "source splits", "conflicting", "cross-split"]
    )
    return table.sort_values(["conflicting", "cross-split", "copies"], ascending=False, kind="stable")


def duplicate_examples(
    dataset: Dataset, duplicates: DuplicateReport, groups: pd.DataFrame, limit: int = 8
) -> tuple[np.ndarray, list[str]]:
    """Two faces from each of the first `limit` groups of `groups`, captioned label / source split."""
    splits = source_splits(dataset)
    faces, captions = [], []
    for first_file in groups["first file"].head(limit):
        group = duplicates.group_of[np.flatnonzero(dataset.files == first_file)[0]]
        for member in np.flatnonzero(duplicates.group_of == group)[:2]:
            faces.append(dataset.images[member])
            captions.append(f"{dataset.class_names[dataset.labels[member]]} / {splits[member]}")
    return np.asarray(faces), captions
