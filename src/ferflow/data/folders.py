"""Loading FER-2013 in either of its published forms, with validation before any work.

Forms accepted under `data.source`:

    <source>/<split>/<emotion>/*.jpg|*.jpeg|*.png   Kaggle folders (train/ + test/, any split names)
    <source>/<emotion>/*.jpg|*.jpeg|*.png           a single folder of class folders
    <source>.csv                                    the contest's fer2013.csv (emotion,pixels,Usage)

Every image is converted to 48x48 uint8 grey. Bad items (a corrupt image, a malformed
CSV row) stop the load with their file or line, or are skipped and listed, by policy.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ferflow import CLASS_NAMES, IMAGE_SIZE
from ferflow.data.records import DataError, Dataset, split_classes
from ferflow.images import to_8bit_grey

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass
class ImageList:
    """The files found under a source, before decoding."""

    files: list[Path]
    labels: list[int]
    splits: list[str]
    skipped_hidden: list[Path] = field(default_factory=list)
    skipped_classes: list[str] = field(default_factory=list)


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def find_images(
    source: str | os.PathLike, class_names: tuple[str, ...] = CLASS_NAMES, key: str = "source"
) -> ImageList:
    """List the image files under `source` with their labels; validate the layout first.

    Known FER-2013 emotions left out of `class_names` are skipped (a class subset);
    any other folder name is an error, as are stray non-image files and empty classes.
    """
    root = Path(source)
    if not root.exists():
        raise DataError(
            f"{key}: path '{source}' does not exist (resolved to '{root.resolve()}'). "
            f"Set {key} in params.yaml to a folder in the Kaggle layout "
            "<split>/<emotion>/*.jpg (the Kaggle download of FER-2013), or use the "
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
                    f"{key}: unknown class folder '{class_dir}'. Expected one of {sorted(known)}; rename or remove it."
                )
            if class_dir.name not in class_names:
                skipped_classes.add(class_dir.name)
                continue
            label = class_names.index(class_dir.name)
            # scandir and string sorting: far cheaper than Path objects for 30,000 files.
            with os.scandir(class_dir) as entries:
                listing = sorted((entry.name, entry.is_dir()) for entry in entries)
            for name, is_dir in listing:
                path = class_dir / name
                if name.startswith("."):
                    images.skipped_hidden.append(path)
                elif is_dir or os.path.splitext(name)[1].lower() not in IMAGE_SUFFIXES:
                    raise DataError(
                        f"{key}: '{path}' is not a .jpg, .jpeg or .png image. Move it out of the data folder."
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
    """Decode one image file to a 48x48 uint8 grey array (any size, bit depth, grey or colour)."""
    try:
        # One read per file: PIL's own reads of a small JPEG are many tiny system calls.
        with Image.open(io.BytesIO(Path(path).read_bytes())) as image:
            grey = to_8bit_grey(image)
            if grey.size != (IMAGE_SIZE, IMAGE_SIZE):
                grey = grey.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
            return np.asarray(grey, dtype=np.uint8)
    except UnidentifiedImageError:
        raise DataError(
            f"cannot decode image '{path}': not an image format that can be read "
            "(JPEG, PNG, ...). Replace or delete the file."
        ) from None
    except (OSError, ValueError) as error:
        raise DataError(f"cannot decode image '{path}': {error}. Replace or delete the file.") from None


def decode_images(files: list[Path], on_bad: str = "error") -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Decode files into one (n, 48, 48) uint8 array.

    Every file is decoded before any error is raised, so on_bad="error" names the first
    undecodable file in order (and counts the rest); "skip" returns the decodable images
    only, the mask of which files they are, and (file, reason) for each skipped one. One
    process: decoding 48x48 JPEGs is dominated by per-file Python overhead, which threads do not share out and a process
    pool's start-up and copying eat on two cores.
    """
    if on_bad not in ("error", "skip"):
        raise ValueError(f"on_bad must be 'error' or 'skip', not {on_bad!r}")
    images = np.zeros((len(files), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    skipped: list[tuple[str, str]] = []
    good = np.ones(len(files), dtype=bool)
    for i, path in enumerate(files):
        try:
            images[i] = load_image(path)
        except DataError as error:
            skipped.append((str(path), str(error)))
            good[i] = False
    if skipped and on_bad == "error":
        more = len(skipped) - 1
        raise DataError(
            skipped[0][1]
            + (f" ({more} more undecodable files; set data.on_bad: skip to leave them out)" if more else "")
        )
    return images[good], good, skipped


def load_folder_dataset(
    source: str | os.PathLike, class_names: tuple[str, ...] = CLASS_NAMES, key: str = "source", on_bad: str = "error"
) -> Dataset:
    """Find, validate and decode every image under a Kaggle-layout folder."""
    found = find_images(source, class_names, key=key)
    images, good, skipped = decode_images(found.files, on_bad)
    prefix = len(str(Path(source))) + 1  # paths are stored relative to the source
    return Dataset(
        images=images,
        labels=np.asarray(found.labels, dtype=np.int64)[good],
        files=np.asarray([str(path)[prefix:] for path in found.files], dtype=np.str_)[good],
        splits=np.asarray(found.splits, dtype=np.str_)[good],
        class_names=tuple(class_names),
        skipped_hidden=len(found.skipped_hidden),
        skipped_classes=tuple(found.skipped_classes),
        skipped_bad=skipped,
    )


def load_dataset(
    source: str | os.PathLike, classes: tuple[str, ...] = CLASS_NAMES, key: str = "source", on_bad: str = "error"
) -> Dataset:
    """Load `source`, a Kaggle-layout folder or the contest's CSV file, whichever it is.

    `classes` lists the emotions to keep, in output order; "happy=joy" keeps happy faces
    and names the class "joy" in every output.
    """
    sources, labels = split_classes(classes)
    if str(source).lower().endswith(".csv"):
        from ferflow.data.contest_csv import load_csv_dataset  # noqa: PLC0415 - keeps pandas out of folder loads

        dataset = load_csv_dataset(source, sources, key=key, on_bad=on_bad)
    else:
        dataset = load_folder_dataset(source, sources, key=key, on_bad=on_bad)
    return dataset.renamed(labels)
