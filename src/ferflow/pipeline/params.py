"""The params schema: one typed model per section of params.yaml, checked once at the edge.

Every value is written once, in params.yaml. `load` validates the whole file (unknown keys,
missing keys, wrong types, ranges, choices, NaN and infinity are refused) and returns typed
sections; each stage notebook validates the section it is handed with the same model. The
rest of the package takes plain typed arguments and never sees this file.

Importing this module does not import Keras, so the stages that never touch a model check
their params without the backend's start-up cost.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from ruamel.yaml import YAML, YAMLError

from ferflow import (
    ARCHITECTURE_NAMES,
    CLASS_NAMES,
    CLASS_WEIGHTING_NAMES,
    CORRUPTION_NAMES,
    OPTIMIZER_NAMES,
    PRETRAINED_WEIGHTS,
    SCHEDULE_NAMES,
    paths,
)

PARAMS_FILE = paths.PARAMS
MIN_CROP = 32  # the smallest input every registered architecture takes (a test builds each one)
MAX_BLANK_THRESHOLD = 32.0
MAX_PARAMS_CHARS = 100_000  # the shipped file is 4 KB
MAX_TEXT = 4096  # the longest path a param may hold (Linux's PATH_MAX)
SEED = Annotated[int, Field(ge=0, le=2**32 - 1)]
PROBABILITY = Annotated[float, Field(ge=0.0, le=1.0)]


class ParamsError(ValueError):
    """A bad parameter: the message names the key, the value and what is allowed."""


class Section(BaseModel):
    """Strict: no unknown keys, no defaults (every value comes from params.yaml), no
    string-to-number or string-to-bool coercion, no NaN or infinity."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class DataParams(Section):
    source: str = Field(min_length=1, max_length=MAX_TEXT)
    classes: list[str] = Field(min_length=2)
    on_conflict: Literal["drop", "keep_first"]
    on_bad: Literal["error", "skip"]
    # A face's grey values vary by 30-70 (std); above 32 real faces would be dropped as blank.
    blank_threshold: float = Field(ge=0.0, le=MAX_BLANK_THRESHOLD)
    on_blank: Literal["drop", "keep"]

    @field_validator("classes")
    @classmethod
    def _known_classes(cls, items: list[str]) -> list[str]:
        pairs = [item.split("=", 1) if "=" in item else [item, item] for item in items]
        sources, labels = [p[0] for p in pairs], [p[1] for p in pairs]
        unknown = [name for name in sources if name not in CLASS_NAMES]
        if unknown:
            raise ValueError(f"unknown emotion(s) {unknown}; allowed: {list(CLASS_NAMES)}")
        bad = [label for label in labels if not re.fullmatch(r"[A-Za-z][\w-]*", label)]
        if bad:
            raise ValueError(f"new name(s) {bad} must be a letter then letters, digits, _ or -")
        if len(set(sources)) != len(sources) or len(set(labels)) != len(labels):
            raise ValueError("names must not repeat")
        return items


class ExploreParams(Section):
    faces_per_class: int = Field(ge=1, le=50)
    seed: SEED


class SplitParams(Section):
    train: float = Field(gt=0.0, le=1.0)
    val: PROBABILITY
    test: PROBABILITY
    seed: SEED
    strategy: Literal["stratified", "official"]

    @model_validator(mode="after")
    def _fractions_sum_to_one(self) -> SplitParams:
        total = self.train + self.val + self.test
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"train + val + test = {total:g}, but the fractions must sum to 1")
        return self

    @property
    def fractions(self) -> dict[str, float]:
        return {"train": self.train, "val": self.val, "test": self.test}


class TrainParams(Section):
    arch: Literal[ARCHITECTURE_NAMES]  # type: ignore[valid-type]
    weights: Literal[("none", *sorted({w for names in PRETRAINED_WEIGHTS.values() for w in names}))]  # type: ignore[valid-type]
    epochs: int = Field(ge=1, le=10_000)
    batch_size: int = Field(ge=1, le=65_536)
    optimizer: Literal[OPTIMIZER_NAMES]  # type: ignore[valid-type]
    learning_rate: float = Field(gt=0.0, le=10.0)
    weight_decay: float = Field(ge=0.0, le=1.0)
    schedule: Literal[SCHEDULE_NAMES]  # type: ignore[valid-type]
    warmup_epochs: int = Field(ge=0, le=1_000)
    label_smoothing: float = Field(ge=0.0, le=0.5)
    mixup_alpha: float = Field(ge=0.0, le=10.0)
    teacher: str = Field(max_length=MAX_TEXT)  # a trained .keras model giving soft targets; "" = none
    distill_weight: PROBABILITY
    distill_temperature: float = Field(ge=1.0, le=20.0)
    crop_size: int = Field(ge=0, le=48)  # 0 or MIN_CROP..48: smaller crops leave no room for pooling
    flip: bool
    random_erasing: PROBABILITY
    noise_augment: PROBABILITY
    noise_max_sigma: float = Field(ge=0.0, le=1.0)
    geometric_augment: bool
    class_weights: Literal[CLASS_WEIGHTING_NAMES]  # type: ignore[valid-type]
    seed: SEED
    mixed_precision: bool
    cpu_bfloat16: bool
    monitor: Literal["val_accuracy", "val_loss"]
    keep: Literal["best", "last"]
    early_stopping_patience: int = Field(ge=1, le=10_000)
    reduce_lr_patience: int = Field(ge=1, le=10_000)
    reduce_lr_factor: float = Field(ge=0.01, le=0.99)

    @field_validator("crop_size")
    @classmethod
    def _crop_leaves_room_for_pooling(cls, crop_size: int) -> int:
        if 0 < crop_size < MIN_CROP:
            raise ValueError(
                f"a crop is 0 (off) or {MIN_CROP} to 48 pixels: every architecture pools its input "
                f"down {MIN_CROP}x or more"
            )
        return crop_size

    @field_validator("teacher")
    @classmethod
    def _teacher_is_a_model_file(cls, teacher: str) -> str:
        if teacher and not (teacher.endswith(".keras") and Path(teacher).is_file()):
            raise ValueError(
                f"'{teacher}' is not a .keras model file (paths are relative to the project "
                "root); pass a model trained by this pipeline, or '' for none"
            )
        return teacher

    @model_validator(mode="after")
    def _teacher_and_weight_together(self) -> TrainParams:
        if bool(self.teacher) != (self.distill_weight > 0):
            raise ValueError(
                f"train.teacher ({self.teacher!r}) and train.distill_weight ({self.distill_weight}) "
                "go together: set both (a model file and a weight above 0) or neither"
            )
        return self

    @model_validator(mode="after")
    def _weights_only_for_pretrained_backbones(self) -> TrainParams:
        if self.weights != "none" and self.weights not in PRETRAINED_WEIGHTS.get(self.arch, ()):
            owners = sorted(a for a, names in PRETRAINED_WEIGHTS.items() if self.weights in names)
            raise ValueError(f"weights {self.weights!r} apply only to {', '.join(owners)}, not {self.arch!r}")
        return self


class EvaluateParams(Section):
    batch_size: int = Field(ge=1, le=65_536)
    latency_repeats: int = Field(ge=1, le=100_000)
    tta: Literal["flip", "tencrop"]
    occlusion_patch: int = Field(ge=2, le=24)


class RobustnessParams(Section):
    corruptions: list[Literal[CORRUPTION_NAMES]] = Field(min_length=1)  # type: ignore[valid-type]
    seed: SEED

    @field_validator("corruptions")
    @classmethod
    def _no_repeats(cls, items: list[str]) -> list[str]:
        if len(set(items)) != len(items):
            raise ValueError("corruptions must not repeat")
        return items


class Params(BaseModel):
    """The whole params.yaml: one section per stage."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    data: DataParams
    explore: ExploreParams
    split: SplitParams
    train: TrainParams
    evaluate: EvaluateParams
    robustness: RobustnessParams


SECTIONS: dict[str, type[Section]] = {name: field.annotation for name, field in Params.model_fields.items()}


def _describe(error: dict[str, Any], prefix: str) -> str:
    key = ".".join([prefix, *map(str, error["loc"])] if prefix else map(str, error["loc"]))
    if key.endswith(".[key]"):  # pydantic marks the key itself of a dict
        key = key[: -len(".[key]")]
    kind, message = error["type"], error["msg"].removeprefix("Value error, ")
    if kind == "missing":
        return f"{key} is missing"
    if kind == "extra_forbidden":
        section = key.rpartition(".")[0]
        known = sorted(SECTIONS[section].model_fields) if section in SECTIONS else sorted(SECTIONS)
        return f"{key} is not a known key; known keys{f' of {section}' if section else ''}: {known}"
    if error["loc"] == () or kind.startswith("model_"):
        return f"{prefix or 'params'}: {message}"
    shown = repr(error["input"])
    if len(shown) > 80:  # a value pasted by mistake is named, not echoed whole
        shown = f"{shown[:60]}... ({len(shown):,} characters)"
    return f"{key} = {shown} is invalid: {message}"


def _fail(error: ValidationError, prefix: str, where: str) -> ParamsError:
    errors = error.errors()
    missing = [
        ".".join([prefix, *map(str, e["loc"])] if prefix else map(str, e["loc"]))
        for e in errors
        if e["type"] == "missing"
    ]
    lines = [_describe(e, prefix) for e in errors if e["type"] != "missing"]
    if missing:
        lines.append(f"missing key(s) {missing}")
    return ParamsError(f"params ({where}): " + "; ".join(lines))


def check(section: str, values: Any) -> Section:
    """Validate one section's values (a dict) and return its typed model."""
    if section not in SECTIONS:
        raise ParamsError(f"params: unknown section {section!r}; known: {sorted(SECTIONS)}")
    try:
        return SECTIONS[section].model_validate(values)
    except ValidationError as error:
        raise _fail(error, section, f"section {section}") from None


def check_text(text: str, path: str = PARAMS_FILE) -> Params:
    """Validate the text of a whole params file (named `path` in messages)."""
    try:
        raw = parse_yaml(text)
    except ParamsError as error:
        raise ParamsError(str(error).replace("params:", f"params ({path}):", 1)) from None
    except YAMLError as error:
        raise ParamsError(f"params ({path}): not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"params ({path}): expected one mapping of sections {sorted(SECTIONS)}")
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise _fail(error, "", path) from None


def load(path: str | Path = PARAMS_FILE) -> Params:
    """Read and validate a whole params file: every key present, none unknown."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params: the file {str(path)!r} does not exist; run from the project folder")
    return check_text(path.read_text(encoding="utf-8"), str(path))


def project_root(start: str | Path = ".") -> Path:
    """The nearest folder at or above `start` that holds params.yaml (notebooks run from notebooks/)."""
    start = Path(start).resolve()
    for folder in (start, *start.parents):
        if (folder / PARAMS_FILE).is_file():
            return folder
    raise ParamsError(f"params: no {PARAMS_FILE} in {start} or any folder above it")


def read_section(section: str, start: str | Path = ".") -> dict[str, Any]:
    """One section of the project's params.yaml as a plain dict: a notebook's default parameters."""
    return parse_yaml((project_root(start) / PARAMS_FILE).read_text(encoding="utf-8"))[section]


def parse_yaml(text: str) -> Any:
    """YAML as DVC reads params.yaml (ruamel.yaml's safe loader, YAML 1.2): `1e-3` is a number,
    `yes` and `on` are strings, so that `check`, the notebooks and `dvc exp run -S` agree.

    Refuses (ParamsError) a file over MAX_PARAMS_CHARS and any anchor or alias, before building
    anything: a few lines of nested aliases ("billion laughs") expand to gigabytes."""
    if len(text) > MAX_PARAMS_CHARS:
        raise ParamsError(
            f"params: the file has {len(text):,} characters; a params file has at most {MAX_PARAMS_CHARS:,}"
        )
    for event in YAML(typ="safe").parse(text):
        if getattr(event, "anchor", None) is not None:
            line = event.start_mark.line + 1
            raise ParamsError(
                f"params: line {line} uses the YAML anchor or alias '{event.anchor}'; write each value out in full"
            )
    return YAML(typ="safe").load(text)


def check_data_source(source: str) -> None:
    """Refuse a `data.source` that DVC could not hash, before any stage runs: a missing path,
    or a folder holding broken links (DVC stops on them whatever `data.on_bad` says)."""
    path = Path(source)
    if not path.exists():
        raise ParamsError(
            f"data.source = {source!r} does not exist (paths are relative to the project root); "
            "give a Kaggle-layout folder or the contest's fer2013.csv"
        )
    project = Path.cwd().resolve()
    if path.is_dir() and (path.resolve() == project or path.resolve() in project.parents):
        raise ParamsError(f"data.source = {source!r} contains this project ({project}); give the data set's own folder")
    if path.is_dir():
        broken = [
            Path(folder) / name
            for folder, dirs, files in os.walk(path)
            for name in dirs + files
            if os.path.islink(Path(folder) / name) and not os.path.exists(Path(folder) / name)
        ]
        if broken:
            raise ParamsError(
                f"data.source = {source!r} holds {len(broken)} broken link(s), such as "
                f"'{broken[0]}'; DVC cannot read the folder with them: fix their targets or remove "
                "those links, or point data.source at a copy of the data set without them"
            )
