"""What `fer predict` writes: the table on stdout, the JSON and CSV records, and the checks
that an output path can be written before any work."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path


def model_description(classifier, quality: str, tta: bool) -> dict:
    """Which model answered, and how: for the JSON of predict and the answers of serve."""
    return {
        "quality": quality if classifier.path == chosen_default(quality) else "custom",
        "file": classifier.path.name,
        "runtime": classifier.runtime,
        "tta": tta,
    }


def chosen_default(quality: str) -> Path:
    from ferflow.faces.predict import QUALITIES

    return QUALITIES[quality][0]


def write_records(
    faces: list,
    json_path: Path | None,
    csv_path: Path | None,
    class_names: tuple[str, ...],
    detector: str | None = None,
    model: dict | None = None,
) -> None:
    from ferflow.io import write_text

    records = [face.record() for face in faces]
    if json_path is not None:
        document = {"class_names": list(class_names), "detector": detector, "model": model, "faces": records}
        write_text(json_path, json.dumps(document, indent=1) + "\n")
    if csv_path is not None:
        buffer = io.StringIO()
        columns = ["file", "frame", "x", "y", "width", "height", "emotion", "confidence", *class_names]
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        for record in records:
            probabilities = record.pop("probabilities")
            writer.writerow({**record, "frame": "" if record["frame"] is None else record["frame"], **probabilities})
        write_text(csv_path, buffer.getvalue())


def print_table(faces: list, out=None) -> None:
    out = out or sys.stdout
    if faces:
        width = max(len("file"), *(len(f.file) for f in faces))
        print(f"{'file':<{width}}  {'frame':>5}  {'box (x, y, w, h)':<22}  {'emotion':<9}  confidence", file=out)
        for f in faces:
            frame = "" if f.frame is None else str(f.frame)
            print(f"{f.file:<{width}}  {frame:>5}  {str(f.box):<22}  {f.emotion:<9}  {f.confidence:.3f}", file=out)
    out.flush()  # before the problems and the summary on stderr


def output_problem(path: Path | None, is_dir: bool) -> str | None:
    """Why `path` cannot be written (as a file, or a folder with `is_dir`), or None if it can."""
    if path is None:
        return None
    if is_dir:
        if path.exists() and not path.is_dir():
            return f"'{path}' exists and is not a folder"
        existing = next(p for p in (path, *path.parents) if p.exists())
        if not os.access(existing, os.W_OK):
            return f"'{existing}' is not writable"
        return None
    if path.is_dir():
        return f"'{path}' is a folder; give a file name"
    if not path.parent.is_dir():
        return f"the folder '{path.parent}' does not exist"
    if not os.access(path if path.exists() else path.parent, os.W_OK):
        return f"'{path}' is not writable"
    return None
