"""Write a named preset of params into params.yaml, keeping its comments.

    python -m ferflow.preset full data.source=/path/to/fer2013 [train.epochs=40 ...]
    dvc repro

`full` is the best recipe this project knows for the whole data set (see README, Results).
Extra `section.key=value` pairs override the preset. Values are validated against the params
schema before the file is touched, and the file is replaced atomically.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import yaml
from ruamel.yaml import YAML

from ferflow import params
from ferflow.io import write_text

# The recipe both full-data presets share: cosine decay, label smoothing, random crops with
# ten-crop at test, random erasing and noise/blur augmentation, on the official split (the
# source's test folder stays the test set). The presets differ in network and optimizer.
MODERN_RECIPE: dict[str, dict[str, object]] = {
    "split": {"strategy": "official"},
    "train": {
        "batch_size": 64, "schedule": "cosine", "label_smoothing": 0.1, "mixup_alpha": 0.0,
        "random_erasing": 0.25, "corruption_augment": 0.25, "class_weights": False, "augment": True,
        "mixed_precision": True, "early_stopping_patience": 1000,
    },
    "evaluate": {"tta": "tencrop"},
}


def _modern(**train: object) -> dict[str, dict[str, object]]:
    return {**MODERN_RECIPE, "train": {**MODERN_RECIPE["train"], **train}}


PRESETS: dict[str, dict[str, dict[str, object]]] = {
    # For a GPU: the VGG-style network (Khaireddin & Chen, 2021) with its SGD-Nesterov recipe.
    # Not run to the end here (no GPU was at hand): see README, Results.
    "full": _modern(arch="vgg", epochs=100, optimizer="sgd", learning_rate=0.01, weight_decay=0.0005,
                    warmup_epochs=2, crop_size=40),
    # For 2 CPU cores and about an hour: the seed CNN with AdamW. This is what trained the
    # shipped models/pretrained/fer2013.keras.
    "cpu": _modern(arch="seed_cnn", epochs=36, optimizer="adamw", learning_rate=0.001, weight_decay=0.01,
                   warmup_epochs=1, crop_size=44),
    # The defaults: the seed recipe on the embedded sample.
    "quick": {
        "data": {"source": "data/sample"},
        "split": {"strategy": "stratified"},
        "train": {
            "arch": "seed_cnn", "epochs": 30, "batch_size": 32, "optimizer": "adam", "learning_rate": 0.001,
            "weight_decay": 0.0, "schedule": "plateau", "warmup_epochs": 0, "label_smoothing": 0.0,
            "mixup_alpha": 0.0, "crop_size": 0, "random_erasing": 0.0, "corruption_augment": 0.0,
            "class_weights": True, "augment": True, "mixed_precision": False,
            "early_stopping_patience": 10,
        },
        "evaluate": {"tta": "flip"},
    },
}


def parse_override(text: str) -> tuple[str, str, object]:
    """'train.epochs=40' -> ('train', 'epochs', 40), the value read as YAML."""
    key, sep, value = text.partition("=")
    section, dot, name = key.partition(".")
    if not sep or not dot or not name:
        raise params.ParamsError(f"override {text!r}: expected section.key=value, e.g. train.epochs=40")
    return section, name, yaml.safe_load(value) if value else value


def apply_preset(path: Path, preset: str, overrides: list[str]) -> dict:
    """Merge the preset and overrides into the params file at `path`; return what changed."""
    if preset not in PRESETS:
        raise params.ParamsError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
    changes: dict[str, dict[str, object]] = {s: dict(v) for s, v in PRESETS[preset].items()}
    for text in overrides:
        section, name, value = parse_override(text)
        changes.setdefault(section, {})[name] = value
    for section, values in changes.items():
        params.check(section, values)  # unknown keys and bad values stop here, before any write
    round_trip = YAML()
    round_trip.preserve_quotes = True
    round_trip.width = 4096  # keep long space-separated lists on one line
    document = round_trip.load(path.read_text(encoding="utf-8"))
    for section, values in changes.items():
        for name, value in values.items():
            document[section][name] = value
    buffer = io.StringIO()
    round_trip.dump(document, buffer)
    candidate = buffer.getvalue()
    params.check_text(candidate, str(path))  # the whole result must still be a valid params file
    write_text(path, candidate)
    return changes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a params preset into params.yaml.")
    parser.add_argument("preset", choices=sorted(PRESETS))
    parser.add_argument("overrides", nargs="*", help="section.key=value pairs applied after the preset")
    parser.add_argument("--params", default="params.yaml", type=Path)
    args = parser.parse_args(argv)
    try:
        changes = apply_preset(args.params, args.preset, args.overrides)
    except params.ParamsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for section, values in changes.items():
        for name, value in values.items():
            print(f"{section}.{name} = {value}")
    print(f"wrote {args.params}; now run: dvc repro")
    return 0


if __name__ == "__main__":
    sys.exit(main())
