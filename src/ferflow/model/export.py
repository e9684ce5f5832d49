"""Export a trained model for serving: ONNX, TensorFlow SavedModel or TFLite (LiteRT).

The exported graph is the inference model: the augmentation block is replaced by an identity
(it is inactive at inference anyway, and its random ops do not convert). Inputs stay raw grey
48x48x1 pixels 0..255, outputs the class probabilities in the sidecar's order.
Exports need the TensorFlow backend; ONNX also needs tf2onnx (see requirements.txt).

An export never deletes what it did not write. `resolve_output` decides where it goes before
any work: an existing folder receives the export inside it, and an existing path is replaced
only when it holds a previous export of the same format. The new export is built under a
hidden name beside the target (`.<name>.export-<pid>`), then renamed into place; such
leftovers of a killed export are removed by the next export to the same target.

Every export gets the model's sidecar beside it (`<name>.json`: classes, input spec, and where
it was exported from), so `fer predict --model <name>.onnx` can use it as it is.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from pathlib import Path

from ferflow.model.sidecar import sidecar_path

FORMATS = {"onnx": ".onnx", "saved_model": "", "tflite": ".tflite"}
KERAS_FORMATS = {"onnx": "onnx", "saved_model": "tf_saved_model", "tflite": "litert"}
# What a TensorFlow SavedModel folder holds; a folder with anything else is not replaced.
SAVED_MODEL_ENTRIES = {"saved_model.pb", "variables", "assets", "fingerprint.pb", "keras_metadata.pb"}
TFLITE_MAGIC = b"TFL3"  # bytes 4..8 of a TFLite flatbuffer


class ExportError(ValueError):
    """The export target cannot be used; the message names it and says what to do."""


def output_name(model_path: Path, fmt: str) -> str:
    return Path(model_path).stem + ("_saved_model" if fmt == "saved_model" else FORMATS[fmt])


def default_output(model_path: Path, fmt: str) -> Path:
    return Path(model_path).parent / "exported" / output_name(model_path, fmt)


def is_previous_export(path: Path, fmt: str) -> bool:
    """Whether `path` holds an export of format `fmt` (and nothing else), so it may be replaced."""
    if path.is_symlink():
        return False
    if fmt == "saved_model":
        return (
            path.is_dir()
            and (path / "saved_model.pb").is_file()
            and {entry.name for entry in path.iterdir()} <= SAVED_MODEL_ENTRIES
        )
    if not path.is_file():
        return False
    if fmt == "tflite":
        with open(path, "rb") as handle:
            return handle.read(8)[4:8] == TFLITE_MAGIC
    try:
        import onnx

        onnx.load_model(str(path), load_external_data=False)
        return True
    except Exception:  # any parse failure means: not an ONNX model
        return False


def resolve_output(out: str | Path | None, model_path: Path, fmt: str) -> Path:
    """Where the export of `model_path` goes, checked before any work. Raises ExportError.

    No `out`: beside the model in `exported/`. An existing folder that is not a previous
    export: the export goes inside it, under the model's name. An existing path is accepted
    only if it holds a previous export of the same format.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {sorted(FORMATS)}")
    target = Path(out) if out is not None else default_output(model_path, fmt)
    if target.is_dir() and not target.is_symlink() and not is_previous_export(target, fmt):
        target = target / output_name(model_path, fmt)
    if FORMATS[fmt] and target.suffix.lower() != FORMATS[fmt]:
        raise ExportError(
            f"--out '{target}': a {fmt} export is one file ending in {FORMATS[fmt]}; "
            f"give such a name or an existing folder"
        )
    if (target.exists() or target.is_symlink()) and not is_previous_export(target, fmt):
        raise ExportError(
            f"--out '{target}' exists and is not a previous {fmt} export; choose another name, or move it away first"
        )
    sidecar = sidecar_path(target)
    if sidecar.exists() and not target.exists():
        raise ExportError(
            f"--out '{target}': '{sidecar}' exists and is not the sidecar of a previous export; "
            f"choose another name, or move it away first"
        )
    existing = next(p for p in (target.parent, *target.parent.parents) if p.exists())
    if not existing.is_dir():
        raise ExportError(f"--out '{target}': '{existing}' is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ExportError(f"--out '{target}': the folder '{existing}' is not writable")
    return target


def remove_stale_scratch(target: Path) -> None:
    """Delete the hidden scratch folders that killed exports to `target` left behind."""
    for scratch in target.parent.glob(f".{glob.escape(target.name)}.export-*"):
        pid = scratch.name.rsplit("-", 2)[-2]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(scratch, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def replace_with(new: Path, target: Path) -> None:
    """Move `new` onto `target` (a previous export of the same kind, or nothing)."""
    if new.is_dir() and target.exists():
        # A folder cannot be renamed over a non-empty one: the old export steps aside first.
        old = target.parent / f".{target.name}.export-{os.getpid()}-old"
        os.rename(target, old)
        os.rename(new, target)
        shutil.rmtree(old)
    else:
        os.replace(new, target)


def inference_graph(model):
    """`model` called with training=False inside a new functional model.

    Keras's exporters trace the model without fixing the training flag, and batch normalization
    then normalises each batch by its own statistics instead of the learned ones: the export of
    a network with batch normalization answered up to 0.45 away from the model in probability.
    """
    import keras

    face = keras.Input(shape=model.input_shape[1:], name="face")
    return keras.Model(face, model(face, training=False), name="inference")


def exported_sidecar(info: dict, model_path: Path, target: Path, source_name: str | None = None) -> dict:
    """`info` (the model's sidecar) plus where the export at `target` came from and its checksum."""
    from ferflow.io import sha256_file

    exported = {
        **{key: value for key, value in info.items() if key != "model_sha256"},  # the source's, not the export's
        "exported_from": {"file": source_name or Path(model_path).name, "sha256": sha256_file(model_path)},
    }
    if target.is_file():
        exported["model_sha256"] = sha256_file(target)
    return exported


def export_model(model, fmt: str, out: str | Path, model_path: Path | None = None, sidecar: dict | None = None) -> Path:
    """Write `model` (a keras.Model) in format `fmt` to `out` (see `resolve_output`), atomically.

    With `sidecar` (the model's, read from `model_path`), it is written beside the export with
    `exported_sidecar`, after the export is in place.
    """
    import keras
    import numpy as np

    from ferflow.model.registry import without_augmentation
    from ferflow.runtime import native_stderr_silenced

    target = resolve_output(out, Path(model_path or "model.keras"), fmt)
    if keras.config.backend() != "tensorflow":
        raise RuntimeError(
            f"export needs the TensorFlow backend (KERAS_BACKEND=tensorflow), not {keras.config.backend()}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_scratch(target)
    inference = inference_graph(without_augmentation(model))
    scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.export-{os.getpid()}-"))
    try:
        built = scratch / ("model" + FORMATS[fmt])
        with native_stderr_silenced():  # TensorFlow's graph warnings are not the user's concern
            inference.predict(np.zeros((1, 48, 48, 1), dtype="float32"), verbose=0)  # exporters need a called model
            inference.export(str(built), format=KERAS_FORMATS[fmt], verbose=False)
        if sidecar is not None and fmt == "onnx":  # the file describes itself (its card, in its metadata)
            from ferflow.model.card import embed_in_onnx

            embed_in_onnx(built, exported_sidecar(sidecar, Path(model_path), scratch / "none"))
        replace_with(built, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if sidecar is not None:  # beside it, the same card with the export's own checksum
        from ferflow.model.card import write_card

        write_card(sidecar_path(target), exported_sidecar(sidecar, Path(model_path), target))
    return target
