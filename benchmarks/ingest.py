"""Benchmark: ingest of a FER-2013 folder (find, decode, hash, dedup, split, save).

    python benchmarks/ingest.py /path/to/fer2013 [--csv]

Prints the pipeline's ingest time side by side with a plain one-image-at-a-time PIL
loop over the same files, and, with --csv, the time to read the same faces as the
contest's CSV (written once to a temporary file first). Best of --repeats runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ferflow import CLASS_NAMES
from ferflow.data.contest_csv import write_contest_csv
from ferflow.data.folders import find_images, load_dataset
from ferflow.data.preprocess import prepare
from ferflow.data.processed import save_processed

FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}


def pipeline_ingest(source: str, out_dir: Path) -> int:
    dataset = load_dataset(source, CLASS_NAMES)
    processed, _ = prepare(dataset, FRACTIONS, seed=42)
    save_processed(out_dir / "dataset.npz", processed)
    return len(dataset)


def plain_pil_loop(source: str) -> int:
    """The usual seed-project loader: open, convert and stack one image at a time."""
    images = []
    for path in find_images(source).files:
        images.append(np.array(Image.open(path).convert("L").resize((48, 48))))
    return len(np.stack(images))


def best_of(repeats: int, function, *args) -> tuple[float, int]:
    timings, count = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        count = function(*args)
        timings.append(time.perf_counter() - start)
    return min(timings), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--csv", action="store_true", help="also time the CSV reader")
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        seconds, count = best_of(args.repeats, pipeline_ingest, args.source, Path(tmp))
        print(
            f"pipeline ingest (find, decode, hash, dedup, split, save): {count} faces in {seconds:.2f} s "
            f"({count / seconds:,.0f} faces/s)"
        )
        seconds, count = best_of(args.repeats, plain_pil_loop, args.source)
        print(
            f"plain PIL loop (decode only):                              {count} faces in {seconds:.2f} s "
            f"({count / seconds:,.0f} faces/s)"
        )
        if args.csv:
            dataset = load_dataset(args.source, CLASS_NAMES)
            usages = ["Training" if s == "train" else "PublicTest" for s in dataset.splits]
            csv_path = Path(tmp) / "fer2013.csv"
            write_contest_csv(csv_path, dataset.images, [CLASS_NAMES[label] for label in dataset.labels], usages)
            seconds, count = best_of(args.repeats, lambda p: len(load_dataset(p, CLASS_NAMES)), csv_path)
            print(f"CSV read and validate (fer2013.csv format):                {count} rows in {seconds:.2f} s")


if __name__ == "__main__":
    main()
