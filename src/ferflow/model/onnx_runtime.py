"""Inference on ONNX Runtime: the shipped models and face detector without TensorFlow or Keras.

`fer predict` and `fer serve` run on this by default. The shipped files live in the package's
`assets/` folder with their sidecars and a `checksums.json` that `python -m ferflow.pipeline.onnx_export`
writes when a model is shipped (it also checks that they match the Keras originals).
Everything here needs only numpy and onnxruntime.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import numpy as np

from ferflow.model.sidecar import ModelFileError, check_agreement, read_sidecar, sidecar_path

ASSETS = Path(str(resources.files("ferflow").joinpath("assets")))
CHECKSUMS = ASSETS / "checksums.json"
THREADS_VARIABLE = "FERFLOW_THREADS"


def available_cores() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_problem(threads: int | None) -> str | None:
    """Why `threads` (None: the default) cannot be used for a model call, or None. More threads
    than cores only slow a call down, and a huge count takes memory for each thread's stack."""
    cores = available_cores()
    if threads is not None and not 1 <= threads <= cores:
        return f"--threads must be 1 to {cores} (the cores this process may use), got {threads}"
    configured = os.environ.get(THREADS_VARIABLE, "").strip()
    if configured and not (configured.isdigit() and 1 <= int(configured) <= cores):
        return f"{THREADS_VARIABLE}={configured!r}: give a whole number of threads from 1 to {cores} (the cores)"
    return None


def default_threads() -> int:
    """Threads for one model call: FERFLOW_THREADS, or the cores this process may use."""
    problem = threads_problem(None)
    if problem:
        raise ValueError(problem)
    configured = os.environ.get(THREADS_VARIABLE, "").strip()
    return int(configured) if configured else available_cores()


def make_session(path: str | Path, threads: int | None = None):
    """An InferenceSession on the CPU with `threads` intra-op threads and one inter-op thread."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1  # these graphs are chains: no parallel branches to run
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: nothing on the terminal in normal use
    # No busy-waiting between calls: MTCNN's three networks run one after another, and a pool
    # spinning after its network would take the cores from the next.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own types for a bad file
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelFileError(f"'{path}' is not an ONNX model that ONNX Runtime can load: {first}") from None


class OnnxModel:
    """An ONNX graph with one input, called like a Keras model's `predict_on_batch`."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        self.path = Path(path)
        self.session = make_session(self.path, threads)
        self.input_name = self.session.get_inputs()[0].name
        self.name = self.path.stem

    @property
    def input_shape(self) -> tuple:
        return tuple(self.session.get_inputs()[0].shape)

    @property
    def output_shape(self) -> tuple:
        return tuple(self.session.get_outputs()[0].shape)

    def outputs(self, batch: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})

    def predict_on_batch(self, batch: np.ndarray) -> np.ndarray:
        return self.outputs(batch)[0]

    def embedded_card(self) -> dict | None:
        """The model card stored in the file's metadata (`ferflow.model.card`), checked, or None."""
        from ferflow.model.card import CardError, card_in_onnx

        try:
            return card_in_onnx(self.session.get_modelmeta().custom_metadata_map, str(self.path))
        except CardError as error:
            raise ModelFileError(str(error)) from None


def asset(name: str) -> Path:
    """A file shipped in the package's assets folder."""
    path = ASSETS / name
    if not path.is_file():
        raise ModelFileError(f"the package's '{name}' is missing from {ASSETS}; reinstall ferflow")
    return path


class OnnxEnsemble:
    """Member ONNX models averaged: called like one model (the mean of their probabilities)."""

    def __init__(self, members: list[OnnxModel]) -> None:
        self.members = members

    @property
    def input_shape(self) -> tuple:
        return self.members[0].input_shape

    @property
    def output_shape(self) -> tuple:
        return self.members[0].output_shape

    def predict_on_batch(self, batch: np.ndarray) -> np.ndarray:
        return np.mean([member.predict_on_batch(batch) for member in self.members], axis=0)


def load_checked_ensemble(card_path: str | Path, threads: int | None = None) -> tuple[OnnxEnsemble, dict]:
    """(the members averaged, the ensemble's card): a JSON model card whose `onnx_members` name
    ONNX files beside it, each checked by its SHA-256; else ModelFileError."""
    from ferflow.io import sha256_file

    card_path = Path(card_path)
    info = read_sidecar(card_path)
    members = info.get("onnx_members")
    if not isinstance(members, list) or len(members) < 2:
        raise ModelFileError(
            f"'{card_path}' is not an ensemble card (no list of 'onnx_members'); pass a model file "
            "(.onnx or .keras), or the .json card of an ensemble"
        )
    models = []
    for member in members:
        name = member.get("file", "") if isinstance(member, dict) else ""
        path = card_path.parent / name
        if not name or Path(name).name != name or not path.is_file():
            raise ModelFileError(f"'{card_path}' names the member '{name}', which is not a file beside it")
        if sha256_file(path) != member.get("sha256"):
            raise ModelFileError(
                f"'{path}' is not the member that '{card_path.name}' describes (its SHA-256 differs); "
                "keep the ensemble's files together as they were shipped"
            )
        models.append(OnnxModel(path, threads))
    ensemble = OnnxEnsemble(models)
    check_agreement(card_path, ensemble, info)
    return ensemble, info


def load_checked_onnx(model_path: str | Path, threads: int | None = None) -> tuple[OnnxModel, dict]:
    """(ONNX model on ONNX Runtime, its sidecar), checked to agree; else ModelFileError."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise ModelFileError(f"model file '{model_path}' does not exist")
    model = OnnxModel(model_path, threads)
    embedded = model.embedded_card()
    # The sidecar beside the file, or else the card the file carries in its metadata.
    info = embedded if embedded is not None and not sidecar_path(model_path).exists() else read_sidecar(model_path)
    check_agreement(model_path, model, info)
    return model, info
