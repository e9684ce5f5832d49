"""The model card: the JSON beside every model (its sidecar) and inside every shipped ONNX file.

One writer (`write_card`) and one reader (`check_card`, used by `ferflow.model.sidecar.read_sidecar`
and for the card embedded in an ONNX file) for every model the project makes: the train
stage's, `fer export`'s, the shipped ones (`ferflow.pipeline.ship`, `.ensemble`, `.onnx_export`).
Every field is known and typed here; a card from a newer version of the format is refused.
Only the standard library: the photo tool reads cards without NumPy's help.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ferflow import IMAGE_SIZE

CARD_VERSION = 1  # raise it when a field changes meaning; readers refuse newer cards
ONNX_KEY = "ferflow_model_card"  # the ONNX metadata_props key that holds the card
MIN_CROP = 16  # ten-crop shifts faces by (48 - crop) / 2 pixels: more would leave little face

NUMBER = (int, float)
# Every field a card may hold, with its JSON types. Only the classes are required.
FIELDS: dict[str, tuple[type, ...]] = {
    "class_names": (list,),  # the model's outputs, in order
    "input": (dict,),  # what the model takes (INPUT_SPEC)
    "arch": (str,),  # the registry's architecture, or "ensemble"
    "params": (dict,),  # the train params it was trained with; crop_size drives ten-crop
    "card_version": (int,),
    "data": (dict,),  # where its training data came from, split sizes, checksums
    "metrics": (dict,),  # the training run's validation figures
    "validation_metrics": (dict,),  # an ensemble's, from `ferflow.pipeline.ensemble evaluate`
    "test_metrics": (dict,),  # measured once on the test split, after every choice
    "environment": (dict,),  # the machine and libraries it was trained with
    "training_seconds": (*NUMBER, type(None)),
    "seconds_per_epoch": (list,),
    "train_images_per_second": NUMBER,
    "resumed_after_epoch": (int,),
    "training_note": (str,),  # how the training cost was counted
    "members": (list,),  # an ensemble's members: file, checksum, params, figures
    "onnx_members": (list,),  # an ensemble shipped as ONNX files: file and checksum of each
    "exported_from": (dict,),  # the model an export came from, and how close it stays to it
    "model_sha256": (str,),  # the model file this card describes
    "run_git_commit": (str,),  # the commit the shipped model was trained at
    "run_model_sha256": (str,),  # the run's own model file, before it was re-saved for shipping
}
REQUIRED = ("class_names",)


class CardError(ValueError):
    """A model card that cannot be used; the message names the file and the field."""


def check_card(card: Any, where: str) -> dict[str, Any]:
    """`card` checked field by field (`where` names it in messages); returns it. Raises CardError."""
    if not isinstance(card, dict):
        raise CardError(f"'{where}' is not a model card (a JSON object with {list(REQUIRED)})")
    version = card.get("card_version", 1)  # cards written before the version was recorded are version 1
    if isinstance(version, int) and version > CARD_VERSION:
        raise CardError(
            f"'{where}' is a version {version} model card; this ferflow reads up to {CARD_VERSION}: upgrade it"
        )
    missing = [name for name in REQUIRED if name not in card]
    if missing:
        raise CardError(f"'{where}' is not a model card: it lacks {missing}")
    unknown = sorted(set(card) - set(FIELDS))
    if unknown:
        raise CardError(f"'{where}' has unknown field(s) {unknown}; a model card holds {sorted(FIELDS)}")
    for name, value in card.items():
        types = FIELDS[name]
        if isinstance(value, bool) or not isinstance(value, types):
            expected = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise CardError(f"'{where}': {name} must be {expected}, got {json.dumps(value)[:60]}")
    names = card["class_names"]
    if len(names) < 2 or not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        raise CardError(f"'{where}': class_names must be two or more different names, got {names}")
    crop = card.get("params", {}).get("crop_size", 0)
    if isinstance(crop, bool) or not isinstance(crop, int) or not (crop == 0 or MIN_CROP <= crop <= IMAGE_SIZE):
        raise CardError(
            f"'{where}': params.crop_size must be 0 (whole faces) or a whole number of pixels from {MIN_CROP} "
            f"to {IMAGE_SIZE}, got {crop!r}; restore the card written with the model"
        )
    return card


def card_text(card: dict[str, Any], where: str) -> str:
    """The card as the JSON text that is written, after checking it and stamping its version."""
    stamped = {**card, "card_version": CARD_VERSION}
    check_card(stamped, where)
    return json.dumps(stamped, indent=2, sort_keys=True) + "\n"


def write_card(path: str | Path, card: dict[str, Any]) -> dict[str, Any]:
    """Write a model card (atomically) after checking every field; return what was written."""
    from ferflow.io import write_text

    text = card_text(card, str(path))
    write_text(path, text)
    return json.loads(text)


def embed_in_onnx(onnx_path: str | Path, card: dict[str, Any]) -> None:
    """Store the card in an ONNX file's metadata (ONNX_KEY), so that the file describes itself
    (ultralytics does the same with its exports). Needs the `onnx` package."""
    import onnx

    from ferflow.io import atomic_path

    model = onnx.load(str(onnx_path))
    kept = [prop for prop in model.metadata_props if prop.key != ONNX_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=ONNX_KEY, value=card_text(card, str(onnx_path)))
    with atomic_path(onnx_path, suffix=".onnx") as tmp:
        onnx.save(model, str(tmp))


def card_in_onnx(metadata: dict[str, str], where: str) -> dict[str, Any] | None:
    """The card an ONNX file carries (from ONNX Runtime's `custom_metadata_map`), checked, or None."""
    if ONNX_KEY not in metadata:
        return None
    try:
        card = json.loads(metadata[ONNX_KEY])
    except ValueError as error:
        raise CardError(f"'{where}': its embedded model card is not JSON: {error}") from None
    return check_card(card, f"{where} (embedded card)")
