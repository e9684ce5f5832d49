"""File output: every file is written to a temporary name, then renamed, so a crash or a kill
never leaves a half-written output behind; and the targets the user names are checked before any
work (`file_target`, `folder_target`), so that no output replaces an input, a device or a link.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
import tempfile
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


PARTIAL = ".partial-"  # in the name of every temporary file, so that a killed run's can be found


def remove_partial_files(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that a killed writer left under `folder` (only ours: hidden
    names holding PARTIAL); return them."""
    left = [p for p in Path(folder).rglob(f".*{PARTIAL}*") if p.is_file()] if Path(folder).is_dir() else []
    for path in left:
        path.unlink(missing_ok=True)
    return left


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` if the block succeeds.

    `suffix` sets the temporary name's ending, for writers that check it (Keras wants `.keras`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{PARTIAL}", suffix=suffix or ".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes files private; outputs are not, and a replaced file keeps its mode
        mode = stat.S_IMODE(path.stat().st_mode) if path.is_file() else 0o666 & ~_umask()
        os.chmod(tmp_path, mode)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 text atomically. File names that are not UTF-8 (which Python reads with
    surrogate escapes) are written back as the bytes they were."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", errors="surrogateescape")


# ----------------------------------------------------------------------------- output targets

STDOUT = "-"  # the name that means standard output


class OutputError(ValueError):
    """An output cannot be written where the user asked; the message names the path."""


def _kind_of(mode: int) -> str | None:
    """'a device', 'a FIFO' or 'a socket' for what is not a regular file or folder, else None."""
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return None


def _resolved(paths: Collection[str | os.PathLike]) -> set[Path]:
    return {Path(p).resolve() for p in paths}


def file_target(
    path: str | os.PathLike, inputs: Collection[str | os.PathLike] = (), inputs_resolved: bool = False
) -> Path | None:
    """The file that an output named `path` will replace, checked before any work: None for
    standard output (`-`). A symbolic link is written through, to the file it points to.
    `inputs_resolved`: `inputs` are resolved paths already (a set, checked once per call).

    Raises OutputError, naming `path`, for a folder, a device, FIFO or socket (give `-` for
    standard output), one of `inputs`, a folder that does not exist or cannot be written (the
    file is written beside its target, then renamed onto it), or a file that is read-only.
    """
    if str(path) == STDOUT:
        return None
    shown = Path(path)
    target = shown.resolve()  # through links, to what would be replaced
    if target.is_dir():
        raise OutputError(f"'{shown}' is a folder; give a file name")
    if target.exists() and (kind := _kind_of(target.stat().st_mode)):
        raise OutputError(f"'{shown}' is {kind}, not a file; give '-' to write to standard output")
    if target in (inputs if inputs_resolved else _resolved(inputs)):
        raise OutputError(f"'{shown}' is one of the inputs and would be overwritten; choose another name")
    if not target.parent.is_dir():
        raise OutputError(f"the folder '{shown.parent}' does not exist")
    if not os.access(target.parent, os.W_OK | os.X_OK):
        raise OutputError(f"the folder '{target.parent}' is not writable, so '{shown}' cannot be written")
    if target.exists() and not os.access(target, os.W_OK):
        raise OutputError(f"'{shown}' is not writable")
    return target


def folder_target(path: str | os.PathLike, inputs: Collection[str | os.PathLike] = ()) -> Path:
    """The folder that an output named `path` will fill, checked before any work (it may not
    exist yet). Raises OutputError for a path that is not a folder, is one of `inputs`, or whose
    nearest existing folder cannot be written."""
    shown = Path(path)
    target = shown.resolve()
    if target.exists() and not target.is_dir():
        raise OutputError(f"'{shown}' exists and is not a folder")
    if target in _resolved(inputs):
        raise OutputError(f"'{shown}' is an input folder; its photos would be overwritten; choose another folder")
    existing = next(p for p in (target, *target.parents) if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"'{existing}' is not writable")
    return target


def write_output(target: Path | None, text: str, shown: str | os.PathLike = STDOUT) -> None:
    """Write `text` to a checked target (`file_target`): atomically to a file, or to standard
    output for None. Raises OutputError when it cannot be written (a full disk, a closed pipe)."""
    try:
        if target is None:
            sys.stdout.flush()
            stream = getattr(sys.stdout, "buffer", None)
            if stream is None:
                sys.stdout.write(text)
            else:  # as bytes, so that names that are not UTF-8 go out as they came in
                stream.write(text.encode("utf-8", "surrogateescape"))
            (stream or sys.stdout).flush()
        else:
            write_text(target, text)
    except OSError as error:
        where = "standard output" if target is None else f"'{shown}'"
        raise OutputError(f"{where} could not be written: {error.strerror or error}") from None


@contextmanager
def exclusive_output(target: Path | None, shown: str | os.PathLike = STDOUT) -> Iterator[None]:
    """Hold an exclusive lock on an output file for a whole run, so that a second run writing the
    same file is refused at once (OutputError) instead of silently replacing the first one's
    results. The lock is a hidden `.NAME.lock` file beside the target, removed afterwards."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    if target is None:
        yield
        return
    lock_path = target.parent / f".{target.name}.lock"
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise OutputError(
                f"'{shown}' is being written by another run (process {holder}); wait for it or choose another file"
            ) from None
        try:  # the holder before us may have removed the file after we opened it: lock the new one
            same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        lock_path.unlink(missing_ok=True)
        os.close(fd)


def _json_default(value: Any) -> Any:
    """Convert NumPy scalars and arrays, which the json module does not know."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, set)):
        return list(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def write_json(path: str | os.PathLike, data: Any, sort_keys: bool = True) -> None:
    """Write JSON with a trailing newline; keys sorted unless their order matters (the metrics'
    order is the column order of `dvc exp show`). Equal data gives equal bytes either way."""
    write_text(path, json.dumps(data, indent=2, sort_keys=sort_keys, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Save arrays uncompressed; refuses object arrays so the file loads with allow_pickle=False."""
    for name, array in arrays.items():
        if np.asarray(array).dtype == object:
            raise TypeError(f"array '{name}' has dtype object, which needs pickle to load")
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> None:
    """Save a matplotlib figure as PNG without embedding a timestamp, so reruns give equal bytes."""
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_model(model, path: str | os.PathLike) -> None:
    """Save a Keras model to a .keras file atomically."""
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)
