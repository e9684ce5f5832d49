"""The model handle: a trained model with its sidecar, loaded and checked once, on ONNX Runtime
(an exported .onnx file: no TensorFlow needed) or Keras (a .keras file), giving class
probabilities over any test-time views."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ferflow.model.onnx_runtime import ASSETS, load_checked_ensemble, load_checked_onnx
from ferflow.model.sidecar import ModelFileError, class_names_of, crop_size_of, load_checked_model
from ferflow.model.tta import view_probabilities
from ferflow.runtime import native_stderr_silenced

SHIPPED_MODEL = ASSETS / "fer2013.onnx"  # the shipped single model, installed with the package


@dataclass
class Classifier:
    """A model with its sidecar (the model card), read and checked once: what every caller that
    classifies faces holds, on ONNX Runtime or Keras."""

    model: object  # an OnnxModel, an OnnxEnsemble or a keras.Model: anything with predict_on_batch
    class_names: tuple[str, ...]
    crop_size: int
    path: Path
    runtime: str = "onnx"  # "onnx" (ONNX Runtime) or "keras"
    sidecar: dict = field(default_factory=dict, repr=False)  # the model card, read once with the model

    def probabilities(self, faces: np.ndarray, mode: str = "none", batch_size: int = 256) -> np.ndarray:
        """Class probabilities of raw-pixel faces, averaged over the test-time views of `mode`
        (none, flip, tencrop: `ferflow.model.tta`)."""
        with native_stderr_silenced():
            return view_probabilities(self.model.predict_on_batch, faces, mode, self.crop_size, batch_size)


def load_classifier(model_path: str | Path = SHIPPED_MODEL, threads: int | None = None) -> Classifier:
    """Load a model with its sidecar, checking that the two agree: an exported .onnx model on ONNX
    Runtime (the default; no TensorFlow needed), the .json card of an ensemble of .onnx members
    (averaged), or a .keras model in safe mode (needs Keras)."""
    model_path = Path(model_path)
    if model_path.is_dir():
        raise ModelFileError(
            f"'{model_path}' is a folder; pass the .onnx or .keras model file (with its .json sidecar beside it)"
        )
    if not model_path.is_file():
        raise ModelFileError(
            f"model file '{model_path}' does not exist; train one with `dvc repro` or pass --model PATH"
        )
    suffix = model_path.suffix.lower()
    if suffix not in (".onnx", ".json"):
        require_keras(model_path)
    loaders = {".onnx": load_checked_onnx, ".json": load_checked_ensemble}
    try:
        model, info = loaders[suffix](model_path, threads) if suffix in loaders else load_keras(model_path)
    except ModelFileError as error:
        raise ModelFileError(f"{error}; pass a model trained by this pipeline") from None
    runtime = "onnx" if suffix in loaders else "keras"
    return Classifier(model, class_names_of(info), crop_size_of(info), model_path, runtime, info)


def require_keras(model_path: Path) -> None:
    """A .keras model needs Keras; say in one line what to do when it is not installed."""
    try:  # whether Keras is here, without importing it (start_backend does, quietly)
        keras_found = importlib.util.find_spec("keras") is not None
    except ValueError:  # a module set to None in sys.modules
        keras_found = False
    if not keras_found:
        raise ModelFileError(
            f"'{model_path}' is a Keras model, and Keras is not installed: install it "
            f"(pip install 'ferflow[pipeline]'), or pass an exported .onnx model "
            f"(fer export --format onnx, where Keras is installed)"
        ) from None


def load_keras(model_path: Path):
    from ferflow.runtime import start_backend

    start_backend()  # loads Keras with the backend's start-up logs kept off the terminal
    return load_checked_model(model_path)
