"""The model sidecar: the JSON file beside every .keras model that says how to use it.

Written by the train stage (`models/model.json`) and by `ferflow.ship`; read by `fer predict`,
`fer export` and the evaluation stages. It names the classes in output order, the input the
model takes, the crop it was trained at, and where the model came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ferflow import IMAGE_SIZE
from ferflow.io import read_json

INPUT_SPEC = {"shape": [IMAGE_SIZE, IMAGE_SIZE, 1], "dtype": "float32", "range": [0, 255],
              "description": "raw grey pixel values; the model normalises (and crops) them itself"}


class SidecarError(ValueError):
    """A sidecar is missing or does not describe a model."""


def sidecar_path(model_path: str | Path) -> Path:
    """models/model.keras -> models/model.json."""
    return Path(model_path).with_suffix(".json")


def make_sidecar(class_names: tuple[str, ...], arch: str, params: dict[str, Any], data: dict[str, Any],
                 metrics: dict[str, Any], environment: dict[str, Any], timing: dict[str, Any]) -> dict[str, Any]:
    """The sidecar of a freshly trained model. `params` is the train section it was trained with."""
    return {"class_names": list(class_names), "input": INPUT_SPEC, "arch": arch, "params": dict(params),
            "data": data, "metrics": metrics, "environment": environment, **timing}


def read_sidecar(model_path: str | Path) -> dict[str, Any]:
    """The sidecar of `model_path`, checked to name its classes."""
    path = sidecar_path(model_path)
    if not path.is_file():
        raise SidecarError(f"'{path}' is missing: the model's sidecar names its classes; "
                           "keep the .json written by the train stage next to the .keras file")
    try:
        info = read_json(path)
        names = info["class_names"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or len(names) < 2:
            raise TypeError("'class_names' must be a list of at least two names")
    except (ValueError, KeyError, TypeError) as error:
        raise SidecarError(f"'{path}' is not a model sidecar with 'class_names': {error}") from None
    return info


def class_names_of(info: dict[str, Any]) -> tuple[str, ...]:
    return tuple(info["class_names"])


def crop_size_of(info: dict[str, Any]) -> int:
    """The crop the model takes of each face (0: the whole face)."""
    return int(info.get("params", {}).get("crop_size", 0))
