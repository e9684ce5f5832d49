"""The contest's fer2013.csv: `emotion,pixels,Usage`, one 48x48 face per row.

`emotion` is an integer in the contest's order, which is not alphabetical:
0=Angry 1=Disgust 2=Fear 3=Happy 4=Sad 5=Surprise 6=Neutral. Labels are mapped by
name, so any class subset or order in `data.classes` works.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ferflow import IMAGE_SIZE
from ferflow.data.records import DataError, Dataset
from ferflow.io import write_text

CONTEST_EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
USAGES = ("Training", "PublicTest", "PrivateTest")
REQUIRED_COLUMNS = ("emotion", "pixels", "Usage")
PIXELS = IMAGE_SIZE * IMAGE_SIZE


def _parse_row(text: str) -> np.ndarray | None:
    """One row's pixels, or None when they are not exactly 2,304 integers in 0..255."""
    tokens = text.split()
    if len(tokens) != PIXELS or not all(token.isdigit() for token in tokens):
        return None
    values = np.asarray(tokens, dtype=np.int64)
    return values.astype(np.uint8) if values.max() <= 255 else None


def _row_problem(text: str) -> str:
    tokens = text.split()
    if len(tokens) != PIXELS:
        return f"has {len(tokens)} pixel values, not {PIXELS}"
    bad = next((t for t in tokens if not t.isdigit() or int(t) > 255), None)
    return f"has a pixel value {bad!r} that is not an integer in 0..255"


def parse_pixels(pixels: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Parse every row's pixels; return (images, ok-mask).

    Fast path: one C-level parse of all rows. It is accepted only if every row has exactly
    2,303 single spaces (so at most 2,304 tokens), the parse yields 2,304 values per row
    (so no token was empty or non-numeric: the parse stops at one), and all are <= 255.
    Otherwise rows are parsed one by one to find the bad ones.
    """
    rows = pixels.tolist()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # older NumPy warns at a bad token
            values = np.fromstring("\n".join(rows), dtype=np.uint16, sep=" ")
    except ValueError:  # NumPy 2.4+ raises at a bad token
        values = np.empty(0, dtype=np.uint16)
    single_spaced = (pixels.str.count(" ").to_numpy() == PIXELS - 1).all()
    if single_spaced and rows and values.size == PIXELS * len(rows) and values.max() <= 255:
        return values.reshape(-1, IMAGE_SIZE, IMAGE_SIZE).astype(np.uint8), np.ones(len(rows), bool)
    images = np.zeros((len(rows), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    ok = np.zeros(len(rows), dtype=bool)
    for i, row in enumerate(rows):
        parsed = _parse_row(row)
        if parsed is not None:
            images[i] = parsed.reshape(IMAGE_SIZE, IMAGE_SIZE)
            ok[i] = True
    return images, ok


def load_csv_dataset(
    path: str | os.PathLike, class_names: tuple[str, ...], key: str = "source", on_bad: str = "error"
) -> Dataset:
    """Read and validate fer2013.csv; rows are named by their line in the file (header = line 1)."""
    path = Path(path)
    if not path.exists():
        raise DataError(
            f"{key}: file '{path}' does not exist (resolved to '{path.resolve()}'). Set {key} in "
            "params.yaml to the contest's fer2013.csv or to a Kaggle-layout folder."
        )
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DataError(
            f"{key}: '{path}' is empty; the contest file starts with the header "
            "emotion,pixels,Usage and holds one face per row"
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DataError(f"{key}: '{path}' is not a readable CSV file: {error}") from error
    if frame.empty:
        raise DataError(f"{key}: '{path}' has a header but no rows; it needs one face per row")
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(
            f"{key}: '{path}' lacks column(s) {missing}; it has {list(frame.columns)}. "
            "The contest file's header is: emotion,pixels,Usage"
        )
    lines = np.arange(len(frame)) + 2  # line 1 is the header
    problems: dict[int, str] = {}

    emotion = pd.to_numeric(frame["emotion"], errors="coerce")
    for i in np.flatnonzero(~emotion.isin(range(len(CONTEST_EMOTIONS))).to_numpy()):
        problems[i] = f"emotion {frame['emotion'].iat[i]!r} is not an integer in 0..6"
    for i in np.flatnonzero(~frame["Usage"].isin(USAGES).to_numpy()):
        problems.setdefault(i, f"Usage {frame['Usage'].iat[i]!r} is not one of {list(USAGES)}")
    images, pixels_ok = parse_pixels(frame["pixels"])
    for i in np.flatnonzero(~pixels_ok):
        problems.setdefault(i, _row_problem(frame["pixels"].iat[i]))

    skipped = [(f"{path}:line {lines[i]}", reason) for i, reason in sorted(problems.items())]
    if skipped and on_bad == "error":
        item, reason = skipped[0]
        more = f" ({len(skipped) - 1} more bad rows)" if len(skipped) > 1 else ""
        raise DataError(
            f"{key}: {item} {reason}{more}. Fix or delete the row, or set data.on_bad: skip to leave bad rows out."
        )

    good = np.ones(len(frame), dtype=bool)
    good[list(problems)] = False
    codes = np.where(good, emotion.fillna(0).to_numpy(), 0).astype(int)  # bad rows get a dummy code
    names = np.asarray(CONTEST_EMOTIONS)[codes]
    wanted = good & np.isin(names, class_names)
    labels = np.asarray([class_names.index(n) for n in names[wanted]], dtype=np.int64)
    counts = np.bincount(labels, minlength=len(class_names))
    empty = [name for name, count in zip(class_names, counts) if count == 0]
    if empty:
        raise DataError(
            f"{key}: '{path}' has no rows for class(es) {empty}. Remove them from data.classes in params.yaml."
        )
    return Dataset(
        images=images[wanted],
        labels=labels,
        files=np.asarray([f"line {n}" for n in lines[wanted]], dtype=np.str_),
        splits=frame["Usage"].to_numpy(dtype=str)[wanted].astype(np.str_),
        class_names=tuple(class_names),
        skipped_classes=tuple(sorted(set(CONTEST_EMOTIONS) - set(class_names))),
        skipped_bad=skipped,
    )


def write_contest_csv(path: str | os.PathLike, images: np.ndarray, class_names: list[str], usages: list[str]) -> None:
    """Write faces in the contest's CSV format (for tests, benchmarks and conversions)."""
    codes = [CONTEST_EMOTIONS.index(name) for name in class_names]
    rows = [
        f"{code},{' '.join(map(str, image.ravel().tolist()))},{usage}"
        for code, image, usage in zip(codes, images, usages)
    ]
    write_text(path, "emotion,pixels,Usage\n" + "\n".join(rows) + "\n")
