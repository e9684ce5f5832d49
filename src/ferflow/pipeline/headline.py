"""The few numbers that `dvc metrics diff` and `dvc exp show` compare, and the run summary.

Each stage writes its full figures (per class, per corruption, timings) to `results/<stage>.json`
and only its headline numbers to `metrics/<stage>.json`, the files DVC tracks as metrics. Test
accuracy comes first, so that it is the one column `dvc exp show` never folds away.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from ferflow import paths

METRICS_FILES = (paths.metrics("evaluate"), paths.metrics("robustness"))
NOISE_LEVEL = "sigma_0.1"  # the noise level of the headline noise accuracy

LABELS = {
    "acc_test": "test accuracy",
    "acc_tta": "test accuracy, test-time augmentation",
    "macro_f1": "test macro F1",
    "ece": "test calibration error (ECE, lower is better)",
    "acc_val": "validation accuracy",
    "acc_noise": "test accuracy under noise sigma 0.1",
    "acc_corruptions": "test accuracy, mean over corruptions",
}


def evaluation_headline(details: dict, val_accuracy: float) -> dict[str, float]:
    """Headline numbers of the evaluate stage, from its full results."""
    return {
        "acc_test": details["accuracy"],
        "acc_tta": details["tta"]["accuracy"],
        "macro_f1": details["macro"]["f1"],
        "ece": details["calibration"]["ece"],
        "acc_val": val_accuracy,
    }


def robustness_headline(summary: dict) -> dict[str, float]:
    """Headline numbers of the robustness stage; noise only when Gaussian noise was run."""
    headline = {}
    noise = summary.get("gaussian_noise", {}).get(NOISE_LEVEL)
    if noise is not None:
        headline["acc_noise"] = noise["accuracy"]
    headline["acc_corruptions"] = summary["mean_corruption_accuracy"]
    return headline


def read_headline(root: Path) -> dict[str, float]:
    """The headline numbers in the working tree, all files together."""
    values: dict[str, float] = {}
    for name in METRICS_FILES:
        path = root / name
        if path.exists():
            values.update(json.loads(path.read_text()))
    return values


def committed_headline(root: Path) -> dict[str, float] | None:
    """The headline numbers as committed at git HEAD, or None outside git or before a commit."""
    values: dict[str, float] = {}
    for name in METRICS_FILES:
        try:
            shown = subprocess.run(
                ["git", "show", f"HEAD:{name}"], cwd=root, capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.SubprocessError):
            return None
        if shown.returncode != 0:
            continue
        try:
            values.update(json.loads(shown.stdout))
        except ValueError:
            continue
    values = {key: value for key, value in values.items() if key in LABELS}
    return values or None


def summary_lines(current: dict[str, float], committed: dict[str, float] | None) -> list[str]:
    """A short table: each headline number, beside the committed one when there is one."""
    width = max(len(label) for label in LABELS.values())
    lines = []
    for key, label in LABELS.items():
        if key not in current:
            continue
        line = f"  {label:<{width}}  {current[key]:.4f}"
        if committed and key in committed:
            change = current[key] - committed[key]
            line += f"   committed {committed[key]:.4f} ({change:+.4f})"
        lines.append(line)
    return lines


def print_summary(root: Path) -> None:
    """Print the run's headline numbers against the committed ones, with how to go back."""
    current = read_headline(root)
    if not current:
        return
    committed = committed_headline(root)
    print("summary of this run" + (", against the committed metrics:" if committed else ":"))
    print("\n".join(summary_lines(current, committed)))
    if committed and any(abs(current.get(key, 0.0) - value) > 5e-5 for key, value in committed.items()):
        print(
            "  full figures: reports/index.html and results/. Commit to keep this run, or "
            "`git checkout . && dvc checkout` to go back to the committed one"
        )
