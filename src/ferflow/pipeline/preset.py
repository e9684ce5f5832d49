"""Write a named preset of params into params.yaml, keeping its comments.

    python -m ferflow.pipeline.preset full data.source=/path/to/fer2013 [train.epochs=40 ...]
    dvc repro

A preset is a YAML file in params/presets/ (cpu, full, quick) holding the sections and keys it
sets; `full` is the best recipe this project knows for the whole data set (docs: Results).
Extra `section.key=value` pairs override the preset. Values are validated against the params
schema before the file is touched, and the file is replaced atomically.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from ruamel.yaml import YAML

from ferflow import paths
from ferflow.io import write_text
from ferflow.pipeline import params

PRESETS_DIR = Path(paths.PRESETS)  # in the project folder, beside params.yaml: one YAML file a preset


def load_presets(folder: str | Path | None = None) -> dict[str, dict[str, dict[str, object]]]:
    """Each preset by name (its file's stem): the params sections and keys it sets."""
    folder = Path(folder) if folder is not None else params.project_root() / PRESETS_DIR
    presets = {path.stem: params.parse_yaml(path.read_text(encoding="utf-8")) for path in sorted(folder.glob("*.yaml"))}
    if not presets:
        raise params.ParamsError(f"no presets (*.yaml) in '{folder}'")
    return presets


def parse_override(text: str) -> tuple[str, str, object]:
    """'train.epochs=40' -> ('train', 'epochs', 40), the value read as YAML."""
    key, sep, value = text.partition("=")
    section, dot, name = key.partition(".")
    if not sep or not dot or not name:
        raise params.ParamsError(f"override {text!r}: expected section.key=value, e.g. train.epochs=40")
    return section, name, params.parse_yaml(value) if value else value


def apply_preset(path: Path, preset: str, overrides: list[str], presets: dict | None = None) -> dict:
    """Merge the preset (from `presets`, else the project's) and overrides into the params file
    at `path`; return what changed."""
    presets = presets if presets is not None else load_presets()
    if preset not in presets:
        raise params.ParamsError(f"unknown preset {preset!r}; known: {sorted(presets)}")
    changes: dict[str, dict[str, object]] = {s: dict(v) for s, v in presets[preset].items()}
    for text in overrides:
        section, name, value = parse_override(text)
        changes.setdefault(section, {})[name] = value
    round_trip = YAML()
    round_trip.preserve_quotes = True
    round_trip.width = 4096  # keep long lists on one line
    document = round_trip.load(path.read_text(encoding="utf-8"))
    for section, values in changes.items():
        if section not in document:
            raise params.ParamsError(f"params: unknown section {section!r}; known: {sorted(params.SECTIONS)}")
        for name, value in values.items():
            document[section][name] = value
    buffer = io.StringIO()
    round_trip.dump(document, buffer)
    candidate = buffer.getvalue()
    params.check_text(candidate, str(path))  # bad keys or values stop here, before any write
    write_text(path, candidate)
    return changes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a params preset into params.yaml.")
    parser.add_argument("preset", help=f"a preset's name: a file in {PRESETS_DIR}/ without .yaml (cpu, full, quick)")
    parser.add_argument("overrides", nargs="*", help="section.key=value pairs applied after the preset")
    parser.add_argument("--params", default=paths.PARAMS, type=Path)
    args = parser.parse_args(argv)
    try:
        changes = apply_preset(args.params, args.preset, args.overrides)
    except params.ParamsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for section, values in changes.items():
        for name, value in values.items():
            print(f"{section}.{name} = {value}")
    print(f"wrote {args.params}; now run: dvc repro")
    return 0


if __name__ == "__main__":
    sys.exit(main())
