"""Ship a pipeline run's model as the pretrained model: models/pretrained/fer2013.keras + .json.

    python -m ferflow.pipeline.ship /path/to/run-checkout [--source-name fer2013]

Saves the run's `models/model.keras` without its optimizer state (inference needs only the
weights, and the file shrinks to about a third) and writes a sidecar that merges the run's own
`models/model.json` (class names, input spec, params, environment, training time) with the
data it saw (params `data`/`split`, `results/preprocess.json`) and its test results
(`results/evaluate.json`, `results/robustness.json`), plus the git commit of the run.
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import yaml

from ferflow import paths
from ferflow.io import read_json, sha256_file
from ferflow.model.card import write_card
from ferflow.model.sidecar import sidecar_path

TARGET = Path(__file__).resolve().parents[3] / paths.PRETRAINED / "fer2013.keras"


def git_commit(folder: Path) -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def build_sidecar(run: Path, source_name: str | None) -> dict:
    sidecar = read_json(run / Path(paths.MODEL).with_suffix(".json"))
    params = yaml.safe_load((run / paths.PARAMS).read_text(encoding="utf-8"))
    evaluation = read_json(run / paths.results("evaluate"))
    robustness = read_json(run / paths.results("robustness"))
    sidecar["data"] = {
        **sidecar.get("data", {}),
        "source": source_name or params["data"]["source"],
        "classes": params["data"]["classes"],
        "split": params["split"],
        "preprocess": read_json(run / paths.results("preprocess")),
    }
    sidecar["test_metrics"] = {
        "split": f"test split of the run ({evaluation['n_samples']} faces, never used in training or selection)",
        "accuracy": evaluation["accuracy"],
        "macro_f1": evaluation["macro"]["f1"],
        "tta": evaluation.get("tta"),
        "calibration": evaluation.get("calibration"),
        "per_class_f1": {name: v["f1"] for name, v in evaluation["per_class"].items()},
        "gaussian_noise": robustness.get("gaussian_noise"),
        "mean_corruption_accuracy": robustness.get("mean_corruption_accuracy"),
    }
    sidecar["run_git_commit"] = git_commit(run)
    sidecar["run_model_sha256"] = sha256_file(run / paths.MODEL)
    return sidecar


def save_for_inference(source: Path, target: Path) -> None:
    """Re-save a .keras model without optimizer state (loaded uncompiled, in safe mode)."""
    from ferflow.runtime import native_stderr_silenced, start_backend

    start_backend()
    import keras

    from ferflow.io import save_model

    with native_stderr_silenced():
        model = keras.saving.load_model(source, safe_mode=True, compile=False)
    save_model(model, target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Ship a run's model as models/pretrained/fer2013.keras.")
    parser.add_argument("run", type=Path, help="the checkout where `dvc repro` trained and evaluated the model")
    parser.add_argument("--source-name", help="how to name the data source in the sidecar (default: data.source)")
    parser.add_argument("--target", type=Path, default=TARGET)
    args = parser.parse_args(argv)
    sidecar = build_sidecar(args.run, args.source_name)
    save_for_inference(args.run / paths.MODEL, args.target)
    sidecar["model_sha256"] = sha256_file(args.target)
    write_card(sidecar_path(args.target), sidecar)
    print(
        f"wrote {args.target} ({args.target.stat().st_size / 1e6:.1f} MB) and its sidecar; "
        f"test accuracy {sidecar['test_metrics']['accuracy']:.4f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
