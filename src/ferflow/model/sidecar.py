"""The model sidecar: the model card (`ferflow.model.card`) kept as a JSON file beside a model.

Written through `ferflow.model.card.write_card` by the train stage (`models/model.json`), `fer
export` and the shipping tools; read by `fer predict`, `fer serve`, `fer export` and the
evaluation stages. It names the classes in output order, the input the model takes, the crop
it was trained at, and where the model came from. `load_checked_model` is the one place that
loads a .keras file together with its sidecar (for prediction, the evaluation stages and a
distillation teacher).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ferflow import IMAGE_SIZE
from ferflow.io import read_json
from ferflow.model.card import CardError, check_card

INPUT_SPEC = {
    "shape": [IMAGE_SIZE, IMAGE_SIZE, 1],
    "dtype": "float32",
    "range": [0, 255],
    "description": "raw grey pixel values; the model normalises (and crops) them itself",
}


class ModelFileError(ValueError):
    """A model file cannot be used: missing, not a model, without a sidecar that describes it,
    or not matching that sidecar. The one error for every model format and every caller."""


def sidecar_path(model_path: str | Path) -> Path:
    """models/model.keras -> models/model.json."""
    return Path(model_path).with_suffix(".json")


def make_sidecar(
    class_names: tuple[str, ...],
    arch: str,
    params: dict[str, Any],
    data: dict[str, Any],
    metrics: dict[str, Any],
    environment: dict[str, Any],
    timing: dict[str, Any],
) -> dict[str, Any]:
    """The sidecar of a freshly trained model. `params` is the train section it was trained with."""
    return {
        "class_names": list(class_names),
        "input": INPUT_SPEC,
        "arch": arch,
        "params": dict(params),
        "data": data,
        "metrics": metrics,
        "environment": environment,
        **timing,
    }


def read_sidecar(model_path: str | Path) -> dict[str, Any]:
    """The sidecar of `model_path`, checked to name its classes."""
    path = sidecar_path(model_path)
    if not path.is_file():
        raise ModelFileError(
            f"'{path}' is missing: the model's sidecar names its classes; keep the .json written with "
            f"the model (by the train stage, or by fer export beside each export) next to '{Path(model_path).name}'"
        )
    try:
        info = check_card(read_json(path), str(path))
    except ValueError as error:  # CardError, or a file that is not JSON
        raise ModelFileError(str(error) if isinstance(error, CardError) else f"'{path}' is not JSON: {error}") from None
    check_model_checksum(Path(model_path), path, info)
    return info


def check_model_checksum(model_path: Path, path: Path, info: dict[str, Any]) -> None:
    """Refuse a model file that is not the one its sidecar describes (its `model_sha256`), so that
    one model is never served with another's card and metrics."""
    from ferflow.io import sha256_file

    recorded = info.get("model_sha256")
    if recorded is None or not model_path.is_file() or model_path == path:  # a card is no model file
        return
    if sha256_file(model_path) != recorded:
        raise ModelFileError(
            f"'{model_path}' is not the model that '{path.name}' describes (its SHA-256 differs from the "
            "sidecar's model_sha256); keep each model with the sidecar written for it"
        )


def class_names_of(info: dict[str, Any]) -> tuple[str, ...]:
    return tuple(info["class_names"])


def crop_size_of(info: dict[str, Any]) -> int:
    """The crop the model takes of each face (0: the whole face), as `read_sidecar` checked it."""
    return info.get("params", {}).get("crop_size", 0)


def load_checked_model(model_path: str | Path) -> tuple[Any, dict[str, Any]]:
    """(Keras model loaded in safe mode, its sidecar), checked to agree; else ModelFileError."""
    import keras

    from ferflow.runtime import native_stderr_silenced

    model_path = Path(model_path)
    if not model_path.is_file():
        raise ModelFileError(f"model file '{model_path}' does not exist")
    if not zipfile.is_zipfile(model_path):  # Keras would say "File not found" for, say, a pickle
        raise ModelFileError(
            f"'{model_path}' is not a Keras model file (a .keras file is a zip archive written by model.save)"
        )
    info = read_sidecar(model_path)
    try:
        with native_stderr_silenced():
            model = keras.saving.load_model(model_path, safe_mode=True, compile=False)
    except Exception as error:  # noqa: BLE001 - Keras raises many types for a bad file
        raise ModelFileError(f"'{model_path}' is not a Keras model that loads in safe mode: {error}") from None
    check_agreement(model_path, model, info)
    return model, info


def check_agreement(model_path: Path, model: Any, info: dict[str, Any]) -> None:
    """Refuse a model (Keras or ONNX) whose outputs, input or probe answer do not fit its sidecar."""
    class_names = class_names_of(info)
    outputs = model.output_shape[-1]
    if outputs != len(class_names):
        raise ModelFileError(
            f"'{model_path}' predicts {outputs} classes but its sidecar names "
            f"{len(class_names)} {list(class_names)}; they belong to different models"
        )
    if tuple(model.input_shape[1:]) != (IMAGE_SIZE, IMAGE_SIZE, 1):
        raise ModelFileError(f"'{model_path}' takes input {model.input_shape}, not 48x48x1 grey faces")
    from ferflow.runtime import native_stderr_silenced

    with native_stderr_silenced():
        probe = np.asarray(model.predict_on_batch(np.full((1, IMAGE_SIZE, IMAGE_SIZE, 1), 128.0, np.float32)))
    if not np.isfinite(probe).all():  # a diverged training's weights: NaN for every face
        raise ModelFileError(
            f"'{model_path}' gives non-finite outputs ({probe.ravel()[:3].tolist()}...) on a "
            "grey face: its training diverged; retrain it with a lower learning rate"
        )
