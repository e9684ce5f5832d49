"""Draw the embedded sample: a stratified real subset of FER-2013 in the same folder layout.

    python -m ferflow.data.sample --source /path/to/fer2013 --dest data/sample --fraction 0.185 --seed 2013

From every <split>/<emotion> folder it copies round(fraction * n) files (at least one),
chosen at random with the seed, so each class keeps its share and the imbalance survives.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

from ferflow.data.folders import IMAGE_SUFFIXES


def draw_sample(source: Path, dest: Path, fraction: float, seed: int) -> dict[str, dict[str, int]]:
    """Copy a stratified subset of `source` into `dest`; return counts per split and class."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], not {fraction}")
    if dest.exists() and any(dest.iterdir()):
        raise FileExistsError(f"'{dest}' is not empty; remove it first")
    rng = np.random.default_rng(seed)
    counts: dict[str, dict[str, int]] = {}
    for split_dir in sorted(p for p in source.iterdir() if p.is_dir()):
        counts[split_dir.name] = {}
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            take = max(1, round(fraction * len(files)))
            chosen = sorted(rng.choice(len(files), size=take, replace=False))
            target = dest / split_dir.name / class_dir.name
            target.mkdir(parents=True, exist_ok=True)
            for index in chosen:
                shutil.copy2(files[index], target / files[index].name)
            counts[split_dir.name][class_dir.name] = take
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, required=True)
    parser.add_argument("--dest", type=Path, required=True)
    parser.add_argument("--fraction", type=float, default=0.04)
    parser.add_argument("--seed", type=int, default=2013)
    args = parser.parse_args()
    for split, per_class in draw_sample(args.source, args.dest, args.fraction, args.seed).items():
        print(split, per_class, "total", sum(per_class.values()))


if __name__ == "__main__":
    main()
