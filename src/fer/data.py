"""Loading FER-2013 from the Kaggle folder layout, with validation before any decoding.

Layouts accepted under `data.source`:

    <source>/<split>/<emotion>/*.jpg|*.jpeg|*.png   (train/ + test/, or any split names)
    <source>/<emotion>/*.jpg|*.jpeg|*.png           (a single folder of class folders)

Every image is converted to 48x48 uint8 grey.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fer import CLASS_NAMES, IMAGE_SIZE

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class DataError(ValueError):
    """Bad input data: the message names the file or key and says what to do."""


@dataclass
class ImageList:
    """The files found under a source, before decoding."""

    files: list[Path]
    labels: list[int]
    splits: list[str]
    skipped_hidden: list[Path] = field(default_factory=list)
    skipped_classes: list[str] = field(default_factory=list)


@dataclass
class Dataset:
    """Decoded images with their labels, source files and the split folder each came from."""

    images: np.ndarray  # (n, 48, 48) uint8
    labels: np.ndarray  # (n,) int64, index into class_names
    files: np.ndarray  # (n,) str, path relative to the source
    splits: np.ndarray  # (n,) str, the split folder ("" for a flat layout)
    class_names: tuple[str, ...]
    skipped_hidden: int = 0
    skipped_classes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.labels)

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return {name: int(count) for name, count in zip(self.class_names, counts)}


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def find_images(source: str | os.PathLike, class_names: tuple[str, ...] = CLASS_NAMES,
                key: str = "data.source") -> ImageList:
    """List the image files under `source` with their labels; validate the layout first.

    Known FER-2013 emotions left out of `class_names` are skipped (a class subset);
    any other folder name is an error, as are stray non-image files and empty classes.
    """
    root = Path(source)
    if not root.exists():
        raise DataError(
            f"{key}: path '{source}' does not exist (resolved to '{root.resolve()}'). "
            f"Set {key} in params.yaml to a folder in the Kaggle layout "
            "<split>/<emotion>/*.jpg, for example ../shared/fer2013, or use the "
            "embedded sample data/sample."
        )
    if not root.is_dir():
        raise DataError(f"{key}: '{source}' is a file, not a folder of <split>/<emotion>/ images.")

    known = set(CLASS_NAMES) | set(class_names)
    top = _visible_dirs(root)
    if not top:
        raise DataError(f"{key}: '{source}' holds no folders; expected <split>/<emotion>/ or <emotion>/.")
    flat = any(d.name in known for d in top)
    split_dirs = [("", root)] if flat else [(d.name, d) for d in top]

    images = ImageList(files=[], labels=[], splits=[])
    skipped_classes: set[str] = set()
    for split_name, split_dir in split_dirs:
        for class_dir in _visible_dirs(split_dir):
            if class_dir.name not in known:
                raise DataError(
                    f"{key}: unknown class folder '{class_dir}'. Expected one of "
                    f"{sorted(known)}; rename or remove it."
                )
            if class_dir.name not in class_names:
                skipped_classes.add(class_dir.name)
                continue
            label = class_names.index(class_dir.name)
            for path in sorted(class_dir.iterdir()):
                if path.name.startswith("."):
                    images.skipped_hidden.append(path)
                elif path.is_dir() or path.suffix.lower() not in IMAGE_SUFFIXES:
                    raise DataError(
                        f"{key}: '{path}' is not a .jpg, .jpeg or .png image. "
                        "Move it out of the data folder."
                    )
                else:
                    images.files.append(path)
                    images.labels.append(label)
                    images.splits.append(split_name)
    counts = np.bincount(np.asarray(images.labels, dtype=np.int64), minlength=len(class_names))
    empty = [name for name, count in zip(class_names, counts) if count == 0]
    if empty:
        raise DataError(
            f"{key}: no images for class(es) {empty} under '{source}'. Add images to "
            "those folders or remove the classes from data.classes in params.yaml."
        )
    images.skipped_classes = sorted(skipped_classes)
    return images


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Decode one image file to a 48x48 uint8 grey array (any size, grey or colour)."""
    try:
        with Image.open(path) as image:
            grey = image.convert("L")
            if grey.size != (IMAGE_SIZE, IMAGE_SIZE):
                grey = grey.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
            return np.asarray(grey, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise DataError(
            f"cannot decode image '{path}': {error}. Replace or delete the file."
        ) from error


def decode_images(files: list[Path], workers: int | None = None) -> np.ndarray:
    """Decode many files into one (n, 48, 48) uint8 array, in threads (PIL decodes outside the GIL)."""
    out = np.empty((len(files), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    workers = workers or min(8, (os.cpu_count() or 1) * 2)

    def decode_into(index: int) -> None:
        out[index] = load_image(files[index])

    with ThreadPoolExecutor(max_workers=workers) as pool:
        # list() re-raises the first decoding error, naming its file.
        list(pool.map(decode_into, range(len(files)), chunksize=256))
    return out


def load_folder_dataset(source: str | os.PathLike, class_names: tuple[str, ...] = CLASS_NAMES,
                        key: str = "data.source") -> Dataset:
    """Find, validate and decode every image under `source`."""
    found = find_images(source, class_names, key=key)
    images = decode_images(found.files)
    root = Path(source)
    return Dataset(
        images=images,
        labels=np.asarray(found.labels, dtype=np.int64),
        files=np.asarray([str(p.relative_to(root)) for p in found.files], dtype=np.str_),
        splits=np.asarray(found.splits, dtype=np.str_),
        class_names=tuple(class_names),
        skipped_hidden=len(found.skipped_hidden),
        skipped_classes=tuple(found.skipped_classes),
    )
