"""Does a rerun reproduce the committed baseline? Compare the quality metrics of the working
tree with those in git, within a tolerance.

    dvc repro && python -m ferflow.pipeline.baseline --tolerance 0.03

Same params and data on the same machine give bit-identical metrics (a test checks it). On
another machine of the same class, floating-point differences in the last bits grow during
training, so the guarantee is: every accuracy-like metric within `--tolerance` (absolute) of
the committed value, macro F1 within twice that. Timings (results/latency.json) are not compared.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

from ferflow import paths

# file -> dotted keys compared; all are fractions in [0, 1]
COMPARED: dict[str, tuple[str, ...]] = {
    paths.metrics("evaluate"): ("acc_test", "acc_tta", "macro_f1", "acc_val"),
    paths.metrics("robustness"): ("acc_noise", "acc_corruptions"),
}

# Macro F1 weighs each class equally, so the sample's small classes (13 disgust faces in the
# default test split) move it about twice as much as accuracy (docs/reproducibility.md).
TOLERANCE_SCALE: dict[str, float] = {"macro_f1": 2.0}


def lookup(data: dict[str, Any], dotted: str) -> float:
    for part in dotted.split("."):
        data = data[part]
    return float(data)


def differences(current: dict[str, dict], committed: dict[str, dict], tolerance: float) -> list[str]:
    """One line per compared metric outside the tolerance; empty when the rerun reproduces."""
    problems = []
    for path, keys in COMPARED.items():
        for key in keys:
            now, then = lookup(current[path], key), lookup(committed[path], key)
            allowed = tolerance * TOLERANCE_SCALE.get(key, 1.0)
            if abs(now - then) > allowed:
                problems.append(
                    f"{path}: {key} = {now:.4f}, committed {then:.4f} (differs by {abs(now - then):.4f} > {allowed:g})"
                )
    return problems


def committed_metrics(revision: str = "HEAD") -> dict[str, dict]:
    return {
        path: json.loads(
            subprocess.run(["git", "show", f"{revision}:{path}"], capture_output=True, text=True, check=True).stdout
        )
        for path in COMPARED
    }


def current_metrics() -> dict[str, dict]:
    return {path: json.loads(open(path, encoding="utf-8").read()) for path in COMPARED}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ferflow.pipeline.baseline", description=__doc__.splitlines()[0])
    parser.add_argument("--tolerance", type=float, default=0.03)
    parser.add_argument("--revision", default="HEAD", help="the commit holding the baseline")
    args = parser.parse_args(argv)
    problems = differences(current_metrics(), committed_metrics(args.revision), args.tolerance)
    for line in problems:
        print(f"not reproduced: {line}", file=sys.stderr)
    if not problems:
        compared = sum(len(keys) for keys in COMPARED.values())
        print(
            f"baseline reproduced: {compared} metrics within {args.tolerance} of {args.revision}"
            + "".join(f" ({key} within {args.tolerance * scale:g})" for key, scale in TOLERANCE_SCALE.items())
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
