"""Export the shipped models and MTCNN's networks to ONNX, into the package's assets.

    python -m ferflow.pipeline.onnx_export   # after shipping a model (ferflow.pipeline.ship or .ensemble)

Part of shipping a model: it writes `src/ferflow/assets/` from `models/pretrained/`:
- `fer2013.onnx` with its sidecar (the .keras sidecar plus the ONNX file's checksum and where it
  came from);
- the ensemble as separate members, averaged at run time, from `fer2013_ensemble.json` (the
  card that lists its .keras members, `fer2013.keras` first): its ONNX card lists `fer2013.onnx`
  and `fer2013_member<N>.onnx`, each with its checksum, so that no file holds the whole ensemble;
- `mtcnn_{pnet,rnet,onet}.onnx`, the `mtcnn` package's networks (MIT License; see NOTICE.md);
- `checksums.json`, the SHA-256 of every ONNX file.
Before anything is replaced, each export is checked against its original: classifier
probabilities within 1e-4 on the embedded sample's faces, detector network outputs within
1e-4 on an image. This needs TensorFlow, Keras, tf2onnx and the mtcnn package (the pipeline's
requirements); the photo tool that uses the results needs none of them.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from ferflow import paths
from ferflow.io import sha256_file, write_json
from ferflow.model.onnx_runtime import ASSETS, CHECKSUMS, OnnxModel

REPO = Path(__file__).resolve().parents[3]
SINGLE, ENSEMBLE = "fer2013", "fer2013_ensemble"
TOLERANCE = 1e-4
# Network input shapes, batch first; None is any size (P-Net is fully convolutional).
MTCNN_INPUTS = {"pnet": (None, None, None, 3), "rnet": (None, 24, 24, 3), "onet": (None, 48, 48, 3)}


class ParityError(RuntimeError):
    """An export does not reproduce its original within the tolerance."""


def sample_faces(count: int = 64) -> np.ndarray:
    """Real faces from the embedded sample, as (n, 48, 48, 1) float32 pixels 0..255."""
    from PIL import Image

    files = sorted((REPO / paths.SAMPLE / "test").glob("*/*.jpg"))[:count]
    return np.stack([np.asarray(Image.open(p).convert("L"), dtype=np.float32) for p in files])[..., None]


def check_parity(name: str, expected: list[np.ndarray], got: list[np.ndarray]) -> float:
    worst = max(float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in zip(expected, got, strict=True))
    if not worst <= TOLERANCE:
        raise ParityError(f"{name}: the ONNX export differs from the original by {worst:.2e} (> {TOLERANCE})")
    return worst


def export_classifier(keras_path: Path, folder: Path) -> dict:
    """Export one shipped .keras model with its sidecar into `folder`; return what was checked."""
    from ferflow.model.export import export_model
    from ferflow.model.sidecar import load_checked_model

    model, info = load_checked_model(keras_path)
    target = export_model(model, "onnx", folder / (keras_path.stem + ".onnx"))
    faces = sample_faces()
    worst = check_parity(target.name, [model.predict_on_batch(faces)], [OnnxModel(target).predict_on_batch(faces)])
    card_with_its_file(target, info, keras_path, worst)
    return {"file": target.name, "max_abs_difference": worst}


def card_with_its_file(target: Path, info: dict, source: Path, worst: float) -> dict:
    """Embed `info` (the card of `source`, with where the export came from) in the ONNX file at
    `target`, then write it beside the file with the file's checksum; return the sidecar."""
    from ferflow.model.card import embed_in_onnx, write_card
    from ferflow.model.export import exported_sidecar
    from ferflow.model.sidecar import sidecar_path

    card = exported_sidecar(info, source, target.with_name("none"), f"{paths.PRETRAINED}/{source.name}")
    card["exported_from"]["max_abs_difference"] = worst
    embed_in_onnx(target, card)
    return write_card(sidecar_path(target), {**card, "model_sha256": sha256_file(target)})


def export_ensemble(card_path: Path, single: Path, folder: Path) -> list[dict]:
    """Export the members of the shipped ensemble, which its card (`card_path`) lists as .keras
    files beside it, into `folder` as ONNX files, and the ensemble's ONNX card listing them; member
    0 must be the single model already exported to `single`. Each member and the average are
    checked against Keras."""

    from ferflow.model.card import write_card
    from ferflow.model.export import export_model, exported_sidecar
    from ferflow.model.onnx_runtime import OnnxEnsemble
    from ferflow.model.sidecar import load_checked_model, read_sidecar

    info = read_sidecar(card_path)
    faces = sample_faces()
    files, checked, expected = [single], [], []
    for index, recorded in enumerate(info["members"]):
        source = card_path.parent / recorded["file"]
        if sha256_file(source) != recorded["sha256"]:
            raise ParityError(f"{source.name} is not the member that {card_path.name} records (SHA-256 differs)")
        member, member_info = load_checked_model(source)
        expected.append(member.predict_on_batch(faces))
        if index == 0:
            check_parity(f"{single.name} as member 0", [expected[0]], [OnnxModel(single).predict_on_batch(faces)])
            continue
        target = export_model(member, "onnx", folder / f"{source.stem}.onnx")
        worst = check_parity(target.name, [expected[-1]], [OnnxModel(target).predict_on_batch(faces)])
        card_with_its_file(target, member_info, source, worst)
        files.append(target)
        checked.append({"file": target.name, "max_abs_difference": worst})
    average = OnnxEnsemble([OnnxModel(path) for path in files])
    worst = check_parity(f"{card_path.name}", [np.mean(expected, axis=0)], [average.predict_on_batch(faces)])
    card = exported_sidecar(info, card_path, folder / "none", f"{paths.PRETRAINED}/{card_path.name}")
    card["exported_from"]["max_abs_difference"] = worst
    card["onnx_members"] = [{"file": path.name, "sha256": sha256_file(path)} for path in files]
    write_card(folder / card_path.name, card)
    return [*checked, {"file": card_path.name, "max_abs_difference": worst}]


def export_mtcnn(folder: Path) -> list[dict]:
    """Export the mtcnn package's three networks into `folder`, each checked on a real image."""
    import tensorflow as tf
    import tf2onnx

    from ferflow.faces.mtcnn import MTCNN_FILES, mtcnn_networks
    from ferflow.model.card import embed_in_onnx

    rng = np.random.default_rng(0)
    checked = []
    for (key, network), shape in zip(zip(("pnet", "rnet", "onet"), mtcnn_networks()), MTCNN_INPUTS.values()):
        spec = [tf.TensorSpec(shape, tf.float32, name="image")]
        function = tf.function(lambda batch, net=network: net(batch, training=False), input_signature=spec)
        target = folder / MTCNN_FILES[key]
        tf2onnx.convert.from_function(function, input_signature=spec, opset=17, output_path=str(target))
        sample = rng.uniform(-1, 1, (4, *(s or 61 for s in shape[1:3]), 3)).astype(np.float32)
        expected = [np.asarray(output) for output in function(sample)]
        worst = check_parity(target.name, expected, OnnxModel(target).outputs(sample))
        embed_in_onnx(target, mtcnn_card(key, shape, worst))
        checked.append({"file": target.name, "max_abs_difference": worst})
    return checked


def mtcnn_card(key: str, shape: tuple, worst: float) -> dict:
    """The card of one of MTCNN's networks: a face/not-face classifier with box regression."""
    from importlib import metadata

    return {
        "class_names": ["not a face", "face"],
        "input": {
            "shape": list(shape[1:]),
            "dtype": "float32",
            "range": [-1, 1],
            "description": "RGB windows scaled as (pixel - 127.5) / 128; "
            + ("any size (fully convolutional)" if key == "pnet" else f"{shape[1]}x{shape[2]}"),
        },
        "arch": f"mtcnn_{key}",
        "params": {},
        "data": {"source": "the weights in the mtcnn wheel (Ivan de Paz Centeno, MIT License; see NOTICE.md)"},
        "exported_from": {"file": f"mtcnn {metadata.version('mtcnn')}", "max_abs_difference": worst},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Export the shipped models and MTCNN to ONNX package assets.")
    parser.add_argument("--pretrained", type=Path, default=REPO / paths.PRETRAINED)
    parser.add_argument("--out", type=Path, default=ASSETS)
    args = parser.parse_args(argv)
    from ferflow.runtime import start_backend

    start_backend()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.out.parent, prefix=".assets-") as scratch:
        scratch = Path(scratch)
        try:  # everything is exported and checked in scratch first: a failure replaces nothing
            checked = [export_classifier(args.pretrained / f"{SINGLE}.keras", scratch)]
            checked += export_ensemble(args.pretrained / f"{ENSEMBLE}.json", scratch / f"{SINGLE}.onnx", scratch)
            checked += export_mtcnn(scratch)
        except ParityError as error:
            print(f"error: {error}; nothing was replaced", file=sys.stderr)
            return 1
        for stale in args.out.glob("*.onnx"):  # what an earlier layout shipped (the ensemble in one file)
            if not (scratch / stale.name).exists():
                stale.unlink()
        for path in sorted(scratch.iterdir()):
            shutil.move(str(path), args.out / path.name)
    write_json(args.out / CHECKSUMS.name, {p.name: sha256_file(p) for p in sorted(args.out.glob("*.onnx"))})
    for row in checked:
        print(f"{row['file']}: max difference from the original {row['max_abs_difference']:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
