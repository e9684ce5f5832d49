"""Stage parameters: one schema, checked before a stage does any work.

DVC cannot interpolate YAML lists into a command line, so list-valued params are
written in params.yaml as space-separated strings ("jpeg rotation") and parsed here.
Papermill passes `true`/`false` through as strings, so booleans are parsed here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import re

import yaml

from ferflow import ARCHITECTURE_NAMES, CLASS_NAMES, CORRUPTION_NAMES
from ferflow.data import split_classes


class ParamsError(ValueError):
    """A bad parameter: the message names the key, the value and what is allowed."""


@dataclass(frozen=True)
class Param:
    kind: str  # "str", "int", "float", "bool", "choice", "class_list", "name_list"
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None


SCHEMA: dict[str, dict[str, Param]] = {
    "data": {
        "source": Param("str", "raw data: Kaggle folder layout <split>/<emotion>/*.jpg|png"),
        "classes": Param("class_list", "emotions to use in output order; 'happy=joy' renames",
                         choices=CLASS_NAMES),
        "on_conflict": Param("choice", "identical faces with different labels",
                             choices=("drop", "keep_first")),
        "on_bad": Param("choice", "a corrupt image or malformed CSV row", choices=("error", "skip")),
        "blank_threshold": Param("float", "grey-value std below which a face is blank", 0.0, 128.0),
        "on_blank": Param("choice", "near-blank faces", choices=("drop", "keep")),
    },
    "explore": {
        "faces_per_class": Param("int", "faces shown per class in the sample grid", 1, 50),
        "seed": Param("int", "seed for the faces shown", 0, 2**32 - 1),
    },
    "split": {
        "train": Param("float", "fraction for training", 0.0, 1.0),
        "val": Param("float", "fraction for validation", 0.0, 1.0),
        "test": Param("float", "fraction for the test split", 0.0, 1.0),
        "seed": Param("int", "split seed", 0, 2**32 - 1),
        "strategy": Param("choice", "pool and re-split, or keep the source's own test split",
                          choices=("stratified", "official")),
    },
    "train": {
        "arch": Param("choice", "model architecture from the registry", choices=ARCHITECTURE_NAMES),
        "weights": Param("choice", "pretrained backbone weights (efficientnet_b0 only)",
                         choices=("none", "imagenet")),
        "epochs": Param("int", "maximum epochs", 1, 10_000),
        "batch_size": Param("int", "batch size", 1, 65_536),
        "optimizer": Param("choice", "optimizer", choices=("adam", "adamw", "sgd")),
        "learning_rate": Param("float", "initial (peak) learning rate", 1e-7, 10.0),
        "weight_decay": Param("float", "weight decay (0 = none)", 0.0, 1.0),
        "schedule": Param("choice", "LR schedule: cut on plateaus, or cosine after a warm-up",
                          choices=("plateau", "cosine")),
        "warmup_epochs": Param("int", "linear warm-up epochs of the cosine schedule", 0, 1_000),
        "label_smoothing": Param("float", "label smoothing of the cross-entropy", 0.0, 0.5),
        "mixup_alpha": Param("float", "mixup Beta(alpha, alpha); 0 = off", 0.0, 10.0),
        "crop_size": Param("int", "random crops of this size in training, centre crop at test; 0 = off",
                           0, 48),
        "random_erasing": Param("float", "probability of random erasing per face", 0.0, 1.0),
        "corruption_augment": Param("float", "probability of Gaussian noise or blur per face", 0.0, 1.0),
        "seed": Param("int", "seed for weights, shuffling and augmentation", 0, 2**32 - 1),
        "class_weights": Param("bool", "weight the loss by balanced class weights"),
        "augment": Param("bool", "rotation, shift, zoom and flip augmentation"),
        "mixed_precision": Param("bool", "float16 compute on a GPU (ignored on CPU)"),
        "monitor": Param("choice", "validation metric for checkpoint, early stopping and LR",
                         choices=("val_accuracy", "val_loss")),
        "early_stopping_patience": Param("int", "epochs without a better monitor before stopping",
                                         1, 10_000),
        "reduce_lr_patience": Param("int", "epochs without a better monitor before cutting the LR",
                                    1, 10_000),
        "reduce_lr_factor": Param("float", "factor the LR is multiplied by on a plateau",
                                  0.01, 0.99),
    },
    "evaluate": {
        "batch_size": Param("int", "batch size for prediction and batched latency", 1, 65_536),
        "latency_repeats": Param("int", "single-image predictions timed", 1, 100_000),
        "tta": Param("choice", "test-time augmentation reported beside plain predictions",
                     choices=("flip", "tencrop")),
        "occlusion_patch": Param("int", "side in pixels of the grey patch for occlusion maps", 2, 24),
    },
    "robustness": {
        "corruptions": Param("name_list", "corruptions to test, from ferflow.robustness.CORRUPTIONS",
                             choices=CORRUPTION_NAMES),
        "seed": Param("int", "seed for the noise", 0, 2**32 - 1),
    },
}


def _fail(key: str, value: Any, allowed: str) -> None:
    raise ParamsError(f"params: {key} = {value!r} is invalid: {allowed}")


def _number(key: str, value: Any, spec: Param, cast: Callable[[Any], Any]) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(key, value, f"expected {'an integer' if cast is int else 'a number'}")
    if cast is int and value != int(value):
        _fail(key, value, "expected an integer")
    number = cast(value)
    if (spec.low is not None and number < spec.low) or (spec.high is not None and number > spec.high):
        _fail(key, value, f"expected a value in [{spec.low:g}, {spec.high:g}]")
    return number


def _check_value(key: str, value: Any, spec: Param) -> Any:
    if spec.kind == "str":
        if not isinstance(value, str) or not value:
            _fail(key, value, "expected a non-empty string")
        return value
    if spec.kind in ("int", "float"):
        return _number(key, value, spec, int if spec.kind == "int" else float)
    if spec.kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        _fail(key, value, "expected true or false")
    if spec.kind == "choice":
        if value not in spec.choices:
            _fail(key, value, f"expected one of {list(spec.choices)}")
        return value
    if spec.kind == "class_list":
        items = value.split() if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            _fail(key, value, "expected a space-separated list of names")
        sources, labels = split_classes(items)
        unknown = [item for item in sources if item not in spec.choices]
        if unknown:
            _fail(key, value, f"unknown name(s) {unknown}; allowed: {list(spec.choices)}")
        bad_labels = [label for label in labels if not re.fullmatch(r"[A-Za-z][\w-]*", label)]
        if bad_labels:
            _fail(key, value, f"new name(s) {bad_labels} must be a letter then letters, digits, _ or -")
        if len(set(sources)) != len(sources) or len(set(labels)) != len(labels):
            _fail(key, value, "names must not repeat")
        return tuple(items)
    if spec.kind == "name_list":
        items = value.split() if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            _fail(key, value, "expected a space-separated list of names")
        unknown = [item for item in items if item not in spec.choices]
        if unknown or len(set(items)) != len(items):
            _fail(key, value, f"unknown or repeated name(s) {unknown}; allowed: {list(spec.choices)}")
        return tuple(items)
    raise AssertionError(f"unknown kind {spec.kind}")


def check(section: str, values: dict[str, Any]) -> dict[str, Any]:
    """Validate some of one section's values against the schema; return them parsed.

    Unknown keys are refused, so a typo cannot silently fall back to a default.
    """
    if section not in SCHEMA:
        raise ParamsError(f"params: unknown section '{section}'; known: {sorted(SCHEMA)}")
    schema = SCHEMA[section]
    unknown = sorted(set(values) - set(schema))
    if unknown:
        raise ParamsError(
            f"params: unknown key(s) {[f'{section}.{k}' for k in unknown]}; "
            f"known keys of '{section}': {sorted(schema)}"
        )
    parsed = {}
    for name, value in values.items():
        spec = schema[name]
        parsed[name] = _check_value(f"{section}.{name}", value, spec)
    return parsed


def load(path: str | Path = "params.yaml") -> dict[str, dict[str, Any]]:
    """Read and validate a whole params file: every key present, none unknown."""
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"params file '{path}' does not exist")
    return check_text(path.read_text(encoding="utf-8"), str(path))


def check_text(text: str, path: str = "params.yaml") -> dict[str, dict[str, Any]]:
    """Validate the text of a whole params file (named `path` in messages)."""
    raw = yaml.safe_load(text) or {}
    unknown = sorted(set(raw) - set(SCHEMA))
    if unknown:
        raise ParamsError(f"params: unknown section(s) {unknown} in {path}; known: {sorted(SCHEMA)}")
    params = {}
    for section, schema in SCHEMA.items():
        values = raw.get(section) or {}
        missing = sorted(set(schema) - set(values))
        if missing:
            raise ParamsError(f"params: missing key(s) {[f'{section}.{k}' for k in missing]} in {path}")
        params[section] = check(section, values)
    return params
