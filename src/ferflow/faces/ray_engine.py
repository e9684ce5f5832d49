"""`fer predict --engine ray`: the same records as `predict_paths`, scored on a Ray cluster.

    from ferflow.faces.predict import DEFAULT_MODEL, PredictOptions, load_classifier
    from ferflow.faces.ray_engine import connect, predict_paths_ray
    connect("10.0.0.5:6379")  # or connect(None): a local Ray on this machine only
    names = load_classifier(DEFAULT_MODEL).class_names
    result, face_count = predict_paths_ray(["/shared/photos"], DEFAULT_MODEL, names, PredictOptions())

The driver (this process) lists the input files; Ray Data turns the list into a dataset and
sends batches of paths to a pool of actors, each holding one ONNX Runtime classifier and one
face detector, loaded once. An actor runs `predict_paths` on its batch, so the decoding, the
options and the per-file problems are the local engine's own. The rows come back in input order:
to the driver for JSON and CSV, or straight to Parquet files written by the workers.

The workers read the inputs and write the Parquet folder themselves: on a cluster of several
machines both must be on storage that every node sees at the same path.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ferflow.faces.photo import first_line, is_video
from ferflow.faces.predict import (
    EngineError,
    FaceResult,
    Prediction,
    PredictOptions,
    Problem,
    expand_paths,
    predict_paths,
)

FILES_PER_BATCH = 64  # photos per actor call: enough faces to fill a model call, small enough to share out
# A local Ray that fer starts itself keeps every server on the loopback interface: the setting
# (despite its name) makes Ray use 127.0.0.1 as the node address on Linux too.
LOCAL_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
ADDRESS_PATTERN = re.compile(r"^(auto|(ray://)?[A-Za-z0-9.\-]+:\d{1,5}|\[[0-9A-Fa-f:]+\]:\d{1,5})$")


def require_ray(address: str | None = None) -> None:
    """Raise RuntimeError, saying what to install, when Ray Data cannot be imported. Ray is
    imported here first, after the settings that a local Ray needs (`keep_local`)."""
    keep_local(address)
    try:
        import ray.data  # noqa: F401
    except ImportError:
        raise RuntimeError("--engine ray needs Ray Data: pip install 'ferflow[ray]'") from None


def address_problem(address: str) -> str | None:
    """Why `address` cannot be a Ray address (HOST:PORT, ray://HOST:PORT or auto), or None."""
    if not ADDRESS_PATTERN.match(address):
        return f"--ray-address '{address}' is not HOST:PORT (or ray://HOST:PORT, or auto)"
    if address != "auto" and not 1 <= host_and_port(address)[1] <= 65535:
        return f"--ray-address '{address}': the port must be 1..65535"
    return None


def connect(address: str | None, cpus: int | None = None) -> None:
    """Join the Ray cluster at `address`, or start a local Ray on 127.0.0.1 with `cpus` CPUs (None:
    all of them). Does nothing when this process is connected already. A process that imports Ray
    itself calls `keep_local` first."""
    import logging

    if address is not None and address != "auto":
        check_reachable(address)  # Ray itself retries a wrong address for minutes
    keep_local(address)
    import ray

    if not ray.is_initialized():
        if address is None:
            ray.init(
                address="local", num_cpus=cpus, include_dashboard=False, _node_ip_address="127.0.0.1", **RAY_LOGGING
            )
        else:
            ray.init(address=address, **RAY_LOGGING)
    import ray.data  # noqa: F401  (configures its logger, which this quietens)

    # Ray Data's notes and warnings go to its log file in the session folder (/tmp/ray/session_latest/
    # logs/ray-data); the terminal gets its progress bars and errors. Its warning that a job "will
    # hang" without free CPUs comes from a check made before it looks for results it has already.
    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler):  # the terminal's; the file's is not one
            handler.setLevel(logging.ERROR)


RAY_LOGGING = {"logging_level": "warning", "log_to_driver": True}


def keep_local(address: str | None) -> None:
    """For a local Ray (no address) or a head on this machine (a loopback address), set LOCAL_ONLY
    in the environment. Ray reads it when it is first imported, and its servers read it: without
    it, Ray listens on every interface and replaces a loopback address with this machine's
    network address, where a head on 127.0.0.1 is not found."""
    if address is None or (address != "auto" and is_loopback(address)):
        for name, value in LOCAL_ONLY.items():
            os.environ.setdefault(name, value)


def host_and_port(address: str) -> tuple[str, int]:
    host, _, port = address.removeprefix("ray://").rpartition(":")
    return host.strip("[]"), int(port)


def is_loopback(address: str) -> bool:
    import ipaddress

    host, _ = host_and_port(address)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name
        return False


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Raise ConnectionError, in one line, when nothing answers at `address` within `timeout_s`."""
    import socket

    host, port = host_and_port(address)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as error:
        reason = error.strerror or error
        raise ConnectionError(f"nothing answers at {host}:{port} ({reason}); is the Ray head running?") from None


def cluster_cpus() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


class FaceScorer:
    """A Ray Data callable class: one classifier and one detector for each actor, loaded once,
    scoring a batch of file paths with the local engine."""

    def __init__(self, model_path: str, options: PredictOptions, threads: int) -> None:
        from ferflow.faces.detectors import face_detector
        from ferflow.model.classifier import load_classifier
        from ferflow.model.onnx_runtime import THREADS_VARIABLE

        os.environ[THREADS_VARIABLE] = str(threads)  # the detector's sessions read it too
        self.classifier = load_classifier(model_path, threads)
        self.options = options
        if options.detect:
            face_detector(options.detector, options.second_look)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        files = [os.fsdecode(bytes(path)) for path in batch["path"]]
        result = predict_paths(files, self.classifier, self.options)
        return rows_of(result, self.classifier.class_names)


def rows_of(result: Prediction, class_names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """One row per face, then one per problem, as columns. A face's `problem` is empty; a
    problem's numbers are -1 or NaN. File names travel as bytes, so that names that are not UTF-8
    survive."""
    faces, problems = result.faces, result.problems
    missing_int, missing_float = [-1] * len(problems), [np.nan] * len(problems)

    def ints(values: list) -> np.ndarray:
        return np.array(values + missing_int, dtype=np.int64)

    def floats(values: list) -> np.ndarray:
        return np.array(values + missing_float, dtype=np.float64)

    def texts(values: list) -> np.ndarray:
        return np.array(values + [""] * len(problems), dtype=object)

    def smoothed(face: FaceResult, name: str) -> float:
        return np.nan if face.probabilities_smoothed is None else face.probabilities_smoothed[name]

    return {
        "file": np.array([os.fsencode(item.file) for item in [*faces, *problems]], dtype=object),
        "frame": ints([-1 if f.frame is None else f.frame for f in faces]),
        "time": floats([np.nan if f.time is None else f.time for f in faces]),
        "track": ints([-1 if f.track is None else f.track for f in faces]),
        **{name: ints([f.box[i] for f in faces]) for i, name in enumerate(BOX)},
        "emotion": texts([f.emotion for f in faces]),
        "emotion_smoothed": texts([f.emotion_smoothed or "" for f in faces]),
        "confidence": floats([f.confidence for f in faces]),
        **{name: floats([f.probabilities[name] for f in faces]) for name in class_names},
        **{SMOOTHED + name: floats([smoothed(f, name) for f in faces]) for name in class_names},
        "problem": np.array([""] * len(faces) + [p.kind for p in problems], dtype=object),
        "message": np.array([""] * len(faces) + [p.message for p in problems], dtype=object),
    }


SMOOTHED = "smoothed:"  # the prefix of the columns of a track's smoothed probabilities


BOX = ("x", "y", "width", "height")


def scored_dataset(files: list[Path], model_path: Path, options: PredictOptions, workers: int, threads: int):
    """The lazy Ray dataset of face and problem rows for `files`, in their order."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # the records in the local engine's order
    context.enable_progress_bars = options.progress
    options = dataclasses.replace(options, progress=False)  # the workers' own bars would be Ray's log lines
    has_video = any(is_video(path) for path in files)
    items = [{"path": os.fsencode(path)} for path in files]
    return ray.data.from_items(items).map_batches(
        FaceScorer,
        fn_constructor_args=(str(model_path), options, threads),
        batch_size=1 if has_video else FILES_PER_BATCH,  # a video is many photos' work on its own
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=threads,
    )


def predict_paths_ray(
    paths: list[str | Path],
    model_path: Path,
    class_names: tuple[str, ...],
    options: PredictOptions,
    workers: int | None = None,
    threads: int = 1,
    parquet_dir: Path | None = None,
    collect_faces: bool = True,
) -> tuple[Prediction, int]:
    """`predict_paths` on the connected Ray cluster (`connect`), with `workers` actors of `threads`
    threads each (None: one per CPU of the cluster). With `parquet_dir`, the face rows are also
    written there as Parquet files (`write_parquet`); without `collect_faces`, the driver keeps
    only the problems. Returns the prediction and the count of faces."""
    if options.annotate_dir is not None:
        raise ValueError("--annotate is not available with --engine ray")
    files, problems = expand_paths(paths, options.video_stride is not None)
    result = Prediction(problems=problems, files_seen=len(files))
    if not files:
        return result, 0
    from ray.exceptions import RayError

    workers = workers or max(1, cluster_cpus() // threads)
    dataset = scored_dataset(files, model_path, options, min(workers, len(files)), threads)
    face_count = 0
    try:
        if parquet_dir is not None:
            dataset = dataset.materialize()  # scored once, read twice: the Parquet files, then the problems
            write_parquet(dataset, parquet_dir.resolve())
        for batch in dataset.iter_batches(batch_format="numpy", batch_size=4096):
            faces, batch_problems, count = records_of(batch, class_names, collect_faces)
            result.faces.extend(faces)
            result.problems.extend(batch_problems)
            face_count += count
    except KeyboardInterrupt:
        result.interrupted = True
    except RayError as error:
        raise EngineError(f"the Ray job failed: {first_line(error)}") from None
    return result, face_count


def records_of(
    batch: dict[str, np.ndarray], class_names: tuple[str, ...], collect_faces: bool
) -> tuple[list[FaceResult], list[Problem], int]:
    """The FaceResults (when `collect_faces`), Problems and count of faces of a batch of rows."""
    faces, problems = [], []
    is_problem = batch["problem"] != ""
    for row in np.flatnonzero(is_problem):
        file = os.fsdecode(batch["file"][row])
        problems.append(Problem(file, str(batch["problem"][row]), str(batch["message"][row])))
    if collect_faces:
        for row in np.flatnonzero(~is_problem):
            faces.append(face_of(batch, row, class_names))
    return faces, problems, int((~is_problem).sum())


def face_of(batch: dict[str, np.ndarray], row: int, class_names: tuple[str, ...]) -> FaceResult:
    """The FaceResult of one face row (`rows_of`'s inverse)."""
    frame, track, time = int(batch["frame"][row]), int(batch["track"][row]), float(batch["time"][row])
    smoothed = {name: float(batch[SMOOTHED + name][row]) for name in class_names}
    return FaceResult(
        os.fsdecode(batch["file"][row]),
        None if frame < 0 else frame,
        tuple(int(batch[name][row]) for name in BOX),
        str(batch["emotion"][row]),
        float(batch["confidence"][row]),
        {name: float(batch[name][row]) for name in class_names},
        time=None if np.isnan(time) else time,
        track=None if track < 0 else track,
        emotion_smoothed=str(batch["emotion_smoothed"][row]) or None,
        probabilities_smoothed=None if any(np.isnan(list(smoothed.values()))) else smoothed,
    )


def face_table(batch):
    """The Parquet columns of a (pandas) batch: its faces, as the CSV has them (the frame empty
    for a photo, the file name as text, bytes that are not UTF-8 written as \\xNN)."""
    from ferflow.faces.records import csv_columns

    class_names = tuple(name.removeprefix(SMOOTHED) for name in batch.columns if name.startswith(SMOOTHED))
    faces = batch[batch["problem"] == ""]
    faces = faces.assign(
        file=[bytes(name).decode("utf-8", "backslashreplace") for name in faces["file"]],
        frame=faces["frame"].where(faces["frame"] >= 0).astype("Int64"),
        track=faces["track"].where(faces["track"] >= 0).astype("Int64"),
        emotion_smoothed=faces["emotion_smoothed"].where(faces["emotion_smoothed"] != ""),
    )
    return faces[csv_columns(class_names)].reset_index(drop=True)


def write_parquet(dataset, folder: Path) -> None:
    """Write the face rows as Parquet files into `folder`: first into a hidden folder beside it,
    then swapped in, so that a failed run leaves the previous folder whole."""
    from ferflow.io import PARTIAL

    staging = folder.parent / f".{folder.name}{PARTIAL}{uuid.uuid4().hex[:8]}"
    try:
        dataset.map_batches(face_table, batch_format="pandas").write_parquet(str(staging))
        if not staging.exists():  # no face at all: an empty folder, not a missing one
            staging.mkdir()
        replace_folder(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def replace_folder(new: Path, folder: Path) -> None:
    """Put `new` where `folder` is, removing the old one only once the new one is in place."""
    if not folder.exists():
        new.rename(folder)
        return
    old = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
    folder.rename(old)
    new.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def parquet_problem(folder: Path) -> str | None:
    """Why `folder` cannot take the Parquet output, or None: it may be missing, empty or a
    previous run's Parquet folder (replaced), and nothing else."""
    if not folder.exists():
        return None
    if not folder.is_dir():
        return f"'{folder}' exists and is not a folder"
    others = [entry.name for entry in iter_entries(folder) if not entry.name.endswith(".parquet")]
    if others:
        return f"'{folder}' holds files that are not Parquet ('{others[0]}'); give an empty or new folder"
    return None


def iter_entries(folder: Path) -> Iterator[os.DirEntry]:
    with os.scandir(folder) as entries:
        yield from entries
