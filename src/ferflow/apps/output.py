"""What `fer predict` writes: the table on stdout, the JSON and CSV records, and the checks
that an output path can be written before any work."""

from __future__ import annotations

import csv
import io
import json
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
    json_target: tuple[Path | None, str] | None,
    csv_target: tuple[Path | None, str] | None,
    class_names: tuple[str, ...],
    detector: str | None = None,
    model: dict | None = None,
) -> None:
    """Write the JSON and CSV records to targets checked by `ferflow.io.file_target`, each given
    as (target, the name the user gave); None target: standard output. Raises OutputError."""
    from ferflow.io import write_output

    records = [face.record() for face in faces]
    if json_target is not None:
        document = {"class_names": list(class_names), "detector": detector, "model": model, "faces": records}
        write_output(json_target[0], json.dumps(document, indent=1) + "\n", json_target[1])
    if csv_target is not None:
        write_output(csv_target[0], csv_text(records, class_names), csv_target[1])


def csv_text(records: list[dict], class_names: tuple[str, ...]) -> str:
    from ferflow.faces.records import VIDEO_COLUMNS, csv_columns

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=csv_columns(class_names))
    writer.writeheader()
    for record in records:
        probabilities = record.pop("probabilities")
        record.pop("probabilities_smoothed")  # the JSON has them; the CSV the smoothed label
        empty_for_photos = {key: "" if record[key] is None else record[key] for key in VIDEO_COLUMNS}
        row = {**record, **empty_for_photos, **probabilities}
        writer.writerow({key: spreadsheet_safe(value) for key, value in row.items()})
    return buffer.getvalue()


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value):
    """A text cell that a spreadsheet would run as a formula gets a leading quote (OWASP's advice
    against CSV injection); numbers and other text are written as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def displayable(name: str) -> str:
    """A file name for the terminal: bytes that are not UTF-8 shown as \\xNN escapes."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def print_table(faces: list, out=None) -> None:
    out = out or sys.stdout
    if faces:
        names = [displayable(f.file) for f in faces]
        width = max(len("file"), *(len(name) for name in names))
        print(f"{'file':<{width}}  {'frame':>5}  {'box (x, y, w, h)':<22}  {'emotion':<9}  confidence", file=out)
        for f, name in zip(faces, names):
            frame = "" if f.frame is None else str(f.frame)
            print(f"{name:<{width}}  {frame:>5}  {str(f.box):<22}  {f.emotion:<9}  {f.confidence:.3f}", file=out)
    out.flush()  # before the problems and the summary on stderr


def check_outputs(
    json_path: str | None, csv_path: str | None, annotate: Path | None, inputs: list[Path]
) -> tuple[tuple[Path | None, str] | None, tuple[Path | None, str] | None, Path | None]:
    """The targets of --json, --csv and --annotate, checked before any work (`ferflow.io`);
    raises OutputError with the flag in front of the reason."""
    from ferflow.io import STDOUT, OutputError, file_target, folder_target

    targets = []
    for flag, path in (("--json", json_path), ("--csv", csv_path)):
        try:
            targets.append(None if path is None else (file_target(path, inputs), str(path)))
        except OutputError as problem:
            raise OutputError(f"{flag}: {problem}") from None
    json_target, csv_target = targets
    if json_target and csv_target:
        if json_path == STDOUT and csv_path == STDOUT:
            raise OutputError("--json and --csv cannot both go to standard output ('-')")
        if json_target[0] is not None and json_target[0] == csv_target[0]:
            raise OutputError(f"--json and --csv name the same file '{json_path}'; give two names")
    try:
        folder = None if annotate is None else folder_target(annotate, inputs)
    except OutputError as problem:
        raise OutputError(f"--annotate: {problem}") from None
    return json_target, csv_target, folder
