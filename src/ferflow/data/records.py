"""What a loaded source is: decoded faces with labels and provenance, and the data error type.

Shared by the folder reader (`ferflow.data.folders`) and the CSV reader (`ferflow.data.contest_csv`), so
that neither imports the other's module.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class DataError(ValueError):
    """Bad input data: the message names the file or key and says what to do."""


@dataclass
class Dataset:
    """Decoded images with their labels, where each came from, and what was skipped."""

    images: np.ndarray  # (n, 48, 48) uint8
    labels: np.ndarray  # (n,) int64, index into class_names
    files: np.ndarray  # (n,) str: path relative to the source, or "line N" of a CSV
    splits: np.ndarray  # (n,) str: the source's split folder or CSV Usage ("" if none)
    class_names: tuple[str, ...]
    skipped_hidden: int = 0
    skipped_classes: tuple[str, ...] = ()
    skipped_bad: list[tuple[str, str]] = field(default_factory=list)  # (item, reason)

    def __len__(self) -> int:
        return len(self.labels)

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return {name: int(count) for name, count in zip(self.class_names, counts)}

    def renamed(self, class_names: tuple[str, ...]) -> Dataset:
        """The same data with the classes shown under other names (same order)."""
        if len(class_names) != len(self.class_names):
            raise ValueError(f"{len(class_names)} names for {len(self.class_names)} classes")
        return Dataset(
            self.images,
            self.labels,
            self.files,
            self.splits,
            tuple(class_names),
            self.skipped_hidden,
            self.skipped_classes,
            self.skipped_bad,
        )


def split_classes(items: tuple[str, ...] | list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """('happy=joy', 'sad') -> (('happy', 'sad'), ('joy', 'sad')): data names and the names shown."""
    pairs = [item.split("=", 1) if "=" in item else [item, item] for item in items]
    return tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)
