"""Where the pipeline's files live, relative to the project root, written once.

The notebooks, the stage runner, the report and the tools take their paths from here; dvc.yaml
declares the same paths as deps and outputs (a test checks that every path here is declared).
"""

from __future__ import annotations

PARAMS = "params.yaml"  # every parameter, one section per stage
PRESETS = "params/presets"  # the presets' YAML files (ferflow.pipeline.preset)
NOTEBOOKS = "notebooks"  # the stage notebooks, outputs stripped
SAMPLE = "data/sample"  # the embedded real sample, the default data.source
PROCESSED_DATASET = "data/processed/dataset.npz"
CLASS_WEIGHTS = "data/processed/class_weights.json"
CHECKED_PARAMS = "params/checked"  # one validated JSON per params section

MODEL = "models/model.keras"  # its sidecar: models/model.json
CHECKPOINTS = "models/checkpoints"  # the train stage's resume state
PRETRAINED = "models/pretrained"  # the shipped Keras models

TRAINING_LIVE = "plots/training"  # DVCLive's per-epoch logs
CONFUSION_CSV = "plots/confusion.csv"
ROBUSTNESS_CSV = "plots/robustness.csv"
REPORTS = "reports"
REPORT_INDEX = "reports/index.html"


def metrics(stage: str) -> str:
    """The stage's headline numbers, tracked by DVC as metrics."""
    return f"metrics/{stage}.json"


def results(stage: str) -> str:
    """The stage's full figures (per class, per corruption; `latency` for the timings)."""
    return f"results/{stage}.json"


def figure(name: str) -> str:
    """A report figure, as PNG."""
    return f"plots/{name}.png"
