"""The robustness stage's results: accuracy per corruption and severity, and their summary.

The corruptions themselves are in `ferflow.evaluation.corruptions`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from ferflow.evaluation.corruptions import CORRUPTIONS, corrupt


def corruption_examples(face: np.ndarray, names: list[str], seed: int) -> dict[str, list[np.ndarray]]:
    """`face` under each corruption in `names`, at severity 0 (clean), 1, 2, ..."""
    return {
        name: [corrupt(face[None], name, severity, seed)[0] for severity in range(len(CORRUPTIONS[name].levels) + 1)]
        for name in names
    }


def robustness_table(
    predict: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    labels: np.ndarray,
    corruptions: list[str],
    seed: int,
) -> pd.DataFrame:
    """One row per (corruption, severity): accuracy, drop and relative drop from clean, per-class recall.

    `predict` maps raw faces to class indices; severity 0 (clean) is measured once and
    shared by every corruption's row 0.
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)

    def scores(predicted: np.ndarray) -> dict[str, float]:
        row = {"accuracy": float((predicted == labels).mean())}
        for c in classes:
            row[f"recall_{int(c)}"] = float((predicted[labels == c] == c).mean())
        return row

    clean = scores(predict(np.asarray(images, dtype=np.float32)))
    rows = []
    for name in corruptions:
        rows.append({"corruption": name, "severity": 0, "level": 0.0, **clean})
        for severity, level in enumerate(CORRUPTIONS[name].levels, start=1):
            rows.append(
                {
                    "corruption": name,
                    "severity": severity,
                    "level": float(level),
                    **scores(predict(corrupt(images, name, severity, seed))),
                }
            )
    table = pd.DataFrame(rows)
    table["drop"] = clean["accuracy"] - table["accuracy"]
    table["relative_drop"] = table["drop"] / clean["accuracy"] if clean["accuracy"] > 0 else 0.0
    return table


def summarise(table: pd.DataFrame, class_names: tuple[str, ...]) -> dict:
    """Clean accuracy, mean corruption accuracy (all severities >= 1), and per-class sensitivity.

    Sensitivity of a class: its clean recall minus its mean recall under corruption. When
    Gaussian noise was measured, its accuracy and drop per sigma too.
    """
    clean = table[table["severity"] == 0].iloc[0]
    corrupted = table[table["severity"] > 0]
    summary = {
        "clean_accuracy": float(clean["accuracy"]),
        "mean_corruption_accuracy": float(corrupted["accuracy"].mean()),
        "mean_relative_drop": float(corrupted["relative_drop"].mean()),
        "per_corruption": {
            name: {f"severity_{int(r.severity)}": float(r.accuracy) for r in group.itertuples()}
            for name, group in corrupted.groupby("corruption", sort=False)
        },
        "per_class_sensitivity": {},
    }
    for i, name in enumerate(class_names):
        column = f"recall_{i}"
        if column in table:
            summary["per_class_sensitivity"][name] = float(clean[column] - corrupted[column].mean())
    noise = corrupted[corrupted["corruption"] == "gaussian_noise"]
    if len(noise):
        summary["gaussian_noise"] = {
            f"sigma_{row.level:g}": {"accuracy": float(row.accuracy), "drop": float(row.drop)}
            for row in noise.itertuples()
        }
    return summary
