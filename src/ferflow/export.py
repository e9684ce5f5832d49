"""Export a trained model for serving: ONNX, TensorFlow SavedModel or TFLite (LiteRT).

The exported graph is the inference model: the augmentation block is replaced by an identity
(it is inactive at inference anyway, and its random ops do not convert). Inputs stay raw grey
48x48x1 pixels 0..255, outputs the class probabilities in the sidecar's order.
Exports need the TensorFlow backend; ONNX also needs tf2onnx (see requirements.txt).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

FORMATS = {"onnx": ".onnx", "saved_model": "", "tflite": ".tflite"}
KERAS_FORMATS = {"onnx": "onnx", "saved_model": "tf_saved_model", "tflite": "litert"}


def default_output(model_path: Path, fmt: str) -> Path:
    return model_path.parent / "exported" / (model_path.stem + ("_saved_model" if fmt == "saved_model" else FORMATS[fmt]))


def export_model(model, fmt: str, out: str | Path) -> Path:
    """Write `model` (a keras.Model) in format `fmt` to `out`, atomically (temporary name, then rename)."""
    import keras
    import numpy as np

    from ferflow.models import without_augmentation
    from ferflow.runtime import native_stderr_silenced

    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {sorted(FORMATS)}")
    if keras.config.backend() != "tensorflow":
        raise RuntimeError(f"export needs the TensorFlow backend (KERAS_BACKEND=tensorflow), not {keras.config.backend()}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    inference = without_augmentation(model)
    inference.predict(np.zeros((1, 48, 48, 1), dtype="float32"), verbose=0)  # exporters need a called model
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as scratch:
        tmp = Path(scratch) / ("model" + FORMATS[fmt])
        with native_stderr_silenced():
            inference.export(str(tmp), format=KERAS_FORMATS[fmt], verbose=False)
        if out.is_dir():
            shutil.rmtree(out)
        elif out.exists():
            out.unlink()
        tmp.rename(out)
    return out
