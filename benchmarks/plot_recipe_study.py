"""The recipe study's curves against CPU time: a plot and the README table.

    python benchmarks/plot_recipe_study.py benchmarks/results/recipe_study \
        --throughput benchmarks/results/throughput_cpu.json --train-faces 24454

CPU minutes are computed, not read off noisy wall clocks: epochs x training faces / the
pipeline's faces/s for that architecture, measured alone on a quiet machine by
benchmarks/throughput.py. Writes <folder>/curves.png and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--throughput", type=Path, required=True)
    parser.add_argument("--train-faces", type=int, required=True)
    args = parser.parse_args()
    speed = json.loads(args.throughput.read_text())["faces_per_second"]
    curves: dict[str, list[dict]] = {}
    with (args.folder / "curves.csv").open() as handle:
        for row in csv.DictReader(handle):
            curves.setdefault(row["candidate"], []).append(row)
    with (args.folder / "summary.csv").open() as handle:
        summary = {row["candidate"]: row for row in csv.DictReader(handle)}
    fig, ax = plt.subplots(figsize=(8, 4.5))
    print(
        "| candidate | network (parameters) | what differs | faces/s | CPU min / epoch | val acc (last) "
        "| ten-crop | noise σ=0.1 (drop) |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for name, rows in curves.items():
        info = summary[name]
        key = "geometric" if "geometric" in name else "pipeline"
        faces_per_second = speed[info["arch"]][key]
        minutes_per_epoch = args.train_faces / faces_per_second / 60
        epochs = [int(r["epoch"]) for r in rows]
        ax.plot(
            [e * minutes_per_epoch for e in epochs],
            [float(r["val_accuracy"]) for r in rows],
            marker="o",
            markersize=3,
            label=name,
        )
        last = float(info["val_accuracy_last"])
        noisy = float(info["val_accuracy_noise_0.1"])
        print(
            f"| `{name}` | {info['arch']} ({int(info['params']) / 1e6:.1f} M) | {info['notes']} | "
            f"{faces_per_second:.0f} | {minutes_per_epoch:.1f} | {last:.1%} | "
            f"{float(info['val_accuracy_tencrop']):.1%} | {noisy:.1%} ({(last - noisy) * 100:.1f}) |"
        )
    ax.set_xlabel("CPU minutes on 2 cores (epochs x faces / measured faces/s)")
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"Recipe study: 10-epoch cosine runs, full train/ ({args.train_faces} faces), validation 10%")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.folder / "curves.png", dpi=110)


if __name__ == "__main__":
    main()
