"""Build MTCNN's second look (`ferflow.faces.mtcnn.SecondLook`): examples, training, ONNX file.

The shipped file (about 45 minutes on 2 cores):

    python benchmarks/second_look.py --faces data/processed/dataset.npz:train --scenes 9000 \
        --drawn 0.5 --turned 0.35 --networks 3 --out src/ferflow/assets/face_second_look.onnx

Faces from the training split are changed by generic occluders, turns and lighting (not the
hard-faces benchmark's own changes), placed in photos (24 to a grid on grey, or one to four on
a crop of a photo that no benchmark uses, or on a picture drawn from nothing) and searched as
`fer predict` searches them, some on the copy that `--find-turned` turns. Every candidate that
P-Net and R-Net keep is an example, cut as O-Net cuts it: a face when it overlaps a placed face
with IoU >= 0.5, not a face when it overlaps none by 0.3. Face-free photos add candidates that
are all not faces. The rules and choices: benchmarks/results/second_look*/."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
from grids import iou, load_faces

from ferflow.faces.detectors import TURNS, shrunk, upright_box
from ferflow.faces.mtcnn import MtcnnDetector, grey_patches, patch_fractions
from ferflow.faces.photo import to_rgb, turned_copy

DETECT_SIZE = 320
SEED = 0


def background_photos(chessboard: bool = True) -> list[np.ndarray]:
    """Grey photos without faces (scikit-learn's, scikit-image's, matplotlib's sample images).
    The chessboard is also one of the face-free photos that `hard_faces.py --alone` counts boxes
    in; runs with drawn pictures, whose checks stand in for it, leave it out."""
    import matplotlib
    import sklearn.datasets
    from skimage import data as skimage_data

    photos = [np.asarray(image) for image in sklearn.datasets.load_sample_images().images]
    for name in ("coins", "logo", "microaneurysms", "shepp_logan_phantom") + (("checkerboard",) if chessboard else ()):
        photos.append(np.asarray(getattr(skimage_data, name)()))
    photos += list(skimage_data.stereo_motorcycle()[:2])
    sample_data = Path(matplotlib.get_data_path()) / "sample_data"
    for name in ("logo2.png", "Minduka_Present_Blue_Pack.png"):
        photos.append(cv2.imread(str(sample_data / name), cv2.IMREAD_COLOR))
    return [grey(photo) for photo in photos]


def grey(photo: np.ndarray) -> np.ndarray:
    photo = np.asarray(photo)
    if photo.dtype != np.uint8:
        photo = np.clip(photo * (255.0 if photo.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    if photo.ndim == 3:
        photo = cv2.cvtColor(photo[:, :, :3], cv2.COLOR_RGB2GRAY)
    return photo


def drawn_background(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A face-free picture drawn from nothing: lines of random text, a regular pattern
    (checks, stripes, a grid of dots) or scattered shapes, on a plain ground."""
    ground, ink = (int(v) for v in rng.integers(0, 256, size=2))
    canvas = np.full((height, width), ground, np.uint8)
    kind = rng.random()
    if kind < 0.4:  # text: a page, a sign, a screen
        scale = float(np.exp(rng.uniform(np.log(0.3), np.log(2.0))))
        font = int(rng.choice([0, 1, 2, 3, 4, 6, 7])) | (16 if rng.random() < 0.3 else 0)
        thickness = int(rng.integers(1, 4))
        letters = np.array(list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?()-+=/ "))
        line = int(30 * scale) + int(rng.integers(2, 20))
        for y in range(int(rng.integers(line // 2, line + 1)), height + line, line):
            words = "".join(rng.choice(letters, size=int(rng.integers(5, 80))))
            cv2.putText(canvas, words, (int(rng.integers(-20, 20)), y), font, scale, ink, thickness, cv2.LINE_AA)
    elif kind < 0.7:  # a regular pattern
        step = int(rng.integers(4, 80))
        ys, xs = np.mgrid[0:height, 0:width]
        pattern = rng.integers(3)
        if pattern == 0:
            mask = (ys // step + xs // step) % 2 == 1
        elif pattern == 1:
            angle = rng.uniform(0, np.pi)
            mask = ((xs * np.cos(angle) + ys * np.sin(angle)) // step) % 2 == 1
        else:
            mask = np.hypot(ys % step - step / 2, xs % step - step / 2) < step * rng.uniform(0.1, 0.45)
        canvas[mask] = ink
    else:  # scattered shapes and lines
        for _ in range(int(rng.integers(5, 40))):
            shade = int(rng.integers(0, 256))
            a = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            b = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            thickness = int(rng.choice([-1, 1, 2, 4]))
            shape = rng.integers(3)
            if shape == 0:
                cv2.rectangle(canvas, a, b, shade, thickness)
            elif shape == 1:
                cv2.circle(canvas, a, int(rng.integers(3, max(4, min(height, width) // 3))), shade, thickness)
            else:
                cv2.line(canvas, a, b, shade, max(1, thickness))
    return canvas


def occluded(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One to three ellipses or polygons of one random grey over random parts of the face."""
    out = face.copy()
    for _ in range(rng.integers(1, 4)):
        shade = int(rng.integers(0, 256))
        centre = tuple(int(v) for v in rng.integers(4, 44, size=2))
        if rng.random() < 0.5:
            axes = tuple(int(v) for v in rng.integers(6, 26, size=2))
            cv2.ellipse(out, centre, axes, float(rng.uniform(0, 180)), 0, 360, shade, -1)
        else:
            corners = (np.array(centre) + rng.integers(-22, 23, size=(int(rng.integers(3, 7)), 2))).astype(np.int32)
            cv2.fillPoly(out, [corners], shade)
    return out


def changed(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A face with none, some or several of: occluders, a turn, a change of contrast or gamma."""
    if rng.random() < 0.6:
        face = occluded(face, rng)
    if rng.random() < 0.4:
        turn = cv2.getRotationMatrix2D((23.5, 23.5), float(rng.uniform(-40, 40)), 1.0)
        face = cv2.warpAffine(face, turn, (48, 48), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if rng.random() < 0.3:
        values = face.astype(np.float32) / 255.0
        if rng.random() < 0.5:
            values = (values - values.mean()) * rng.uniform(1.5, 3.0) + values.mean()
        else:
            values = np.clip(values, 0, 1) ** rng.uniform(0.35, 2.8)
        face = np.clip(values * 255.0, 0, 255).astype(np.uint8)
    return face


def crop_of(photo: np.ndarray, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A random crop of `photo`, resized to height x width and maybe flipped or turned on its side."""
    if rng.random() < 0.5:
        photo = np.rot90(photo, int(rng.integers(1, 4)))
    ph, pw = photo.shape[:2]
    side = rng.uniform(0.3, 1.0)
    ch, cw = max(8, int(ph * side)), max(8, int(pw * side))
    top, left = int(rng.integers(0, ph - ch + 1)), int(rng.integers(0, pw - cw + 1))
    crop = cv2.resize(np.ascontiguousarray(photo[top : top + ch, left : left + cw]), (width, height))
    return crop[:, ::-1].copy() if rng.random() < 0.5 else crop


def ground(photo: np.ndarray, height: int, width: int, drawn: float, rng: np.random.Generator) -> np.ndarray:
    """A crop of a background `photo` or, with probability `drawn`, a drawn picture."""
    if drawn and rng.random() < drawn:
        # As drawn: cropped, turned and flipped as the photos are, they gave the second look more
        # boxes in face-free photos (benchmarks/results/second_look_v3/).
        return drawn_background(height, width, rng)
    return crop_of(photo, height, width, rng)


def scene(
    faces: np.ndarray, backgrounds: list[np.ndarray], rng: np.random.Generator, drawn: float = 0.0
) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """A grey photo and the (x, y, w, h) of the faces placed in it: 24 faces in a grid on grey,
    one to four faces on a background, or a background with no face."""
    kind = rng.random()
    if kind < 0.3:
        size = int(rng.integers(40, 321))
        cell = size * 3 // 2
        canvas = np.full((4 * cell, 6 * cell), 128, np.uint8)
        spots = [(c * cell + (cell - size) // 2, r * cell + (cell - size) // 2) for r in range(4) for c in range(6)]
    elif kind < 0.7:
        size = int(rng.integers(40, 200))
        count = int(rng.integers(1, 5))
        height, width = int(size * rng.uniform(1.3, 2.5)), int(size * count * rng.uniform(1.2, 2.0))
        canvas = ground(backgrounds[rng.integers(len(backgrounds))], height, width, drawn, rng)
        step = width // count
        spots = [
            (i * step + int(rng.integers(0, max(1, step - size))), int(rng.integers(0, height - size + 1)))
            for i in range(count)
        ]
    else:
        side = int(rng.integers(200, 700))
        photo = backgrounds[rng.integers(len(backgrounds))]
        return ground(photo, side, int(side * rng.uniform(0.6, 1.6)), drawn, rng), []
    placed = []
    for left, top in spots:
        face = changed(faces[rng.integers(len(faces))], rng)
        canvas[top : top + size, left : left + size] = cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC)
        placed.append((left, top, size, size))
    return canvas, placed


def overlaps(box: tuple[float, ...], placed: list[tuple[int, int, int, int]]) -> float:
    """The largest IoU of an (x, y, w, h) box with the placed (x, y, w, h) faces."""
    return max((iou(box, face) for face in placed), default=0.0)


def in_photo(box: np.ndarray, back: np.ndarray | None, scale: float) -> tuple[float, ...]:
    """A candidate's (x1, y1, x2, y2) on the searched copy as the (x, y, w, h) box in the photo,
    mapped as `detect_turned_faces` maps it (`back` None: the copy is only shrunk)."""
    x, y, w, h = box[0], box[1], box[2] - box[0], box[3] - box[1]
    return tuple(v / scale for v in (x, y, w, h)) if back is None else upright_box((x, y, w, h), back, scale)


def examples(
    detector: MtcnnDetector, photo: np.ndarray, placed: list, turn: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The candidates' grey 48x48 patches as O-Net sees them, their labels (1 face, 0 not, -1
    neither) and O-Net's scores; with a `turn`, on the copy turned by it that `--find-turned`
    searches."""
    small, scale = shrunk(photo, DETECT_SIZE)
    back = None
    if turn:
        small, back = turned_copy(small, turn, DETECT_SIZE)
    image, boxes = detector.candidates(to_rgb(small))
    if len(boxes) == 0:
        return np.empty((0, 48, 48, 1), np.float32), np.empty(0, np.int8), np.empty(0, np.float32)
    fractions = patch_fractions(image[None], boxes)
    onet = np.asarray(detector.onet(image[None], fractions)[-1])[:, 1]
    overlap = np.array([overlaps(in_photo(box, back, scale), placed) for box in boxes])
    labels = np.where(overlap >= 0.5, 1, np.where(overlap < 0.3, 0, -1)).astype(np.int8)
    return grey_patches(image, fractions, 48), labels, onet.astype(np.float32)


def build_examples(faces: np.ndarray, count: int, drawn: float = 0.0, turned: float = 0.0) -> dict[str, np.ndarray]:
    """Examples from `count` scenes; a share `drawn` of the backgrounds are drawn pictures, and a
    share `turned` of the scenes are searched on a copy turned as `--find-turned` turns it."""
    rng = np.random.default_rng(SEED)
    backgrounds = background_photos(chessboard=not drawn)
    detector = MtcnnDetector()
    patches, labels, onet = [], [], []
    for i in range(count):
        photo, placed = scene(faces, backgrounds, rng, drawn)
        turn = float(rng.choice(TURNS)) if turned and rng.random() < turned else 0.0
        p, lab, o = examples(detector, cv2.cvtColor(photo, cv2.COLOR_GRAY2RGB), placed, turn)
        keep = lab >= 0
        patches.append(p[keep].astype(np.float16))
        labels.append(lab[keep])
        onet.append(o[keep])
        if (i + 1) % 200 == 0:
            print(f"{i + 1} scenes, {sum(map(len, labels))} examples", flush=True)
    return {"x": np.concatenate(patches), "y": np.concatenate(labels), "onet": np.concatenate(onet)}


def verifier_model(name: str = "face_second_look"):
    import keras

    inputs = keras.Input((48, 48, 1))
    x = inputs
    for filters in (16, 32, 64):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(96, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.3)(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    return keras.Model(inputs, outputs, name=name)


def train(data: dict[str, np.ndarray], epochs: int, seed: int = SEED, name: str = "face_second_look"):
    """One network; `seed` sets its start and its order of examples, the held-out tenth is the
    same for every seed."""
    import keras

    keras.utils.set_random_seed(seed)
    x, y = data["x"].astype(np.float32), data["y"].astype(np.float32)
    x = np.concatenate([x, x[:, :, ::-1]])  # mirrored copies: a face mirrored is a face
    y = np.concatenate([y, y])
    order = np.random.default_rng(SEED).permutation(len(x))
    x, y = x[order], y[order]
    held = len(x) // 10
    model = verifier_model(name)
    model.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy", metrics=["accuracy"])
    model.fit(x[held:], y[held:], batch_size=128, epochs=epochs, validation_data=(x[:held], y[:held]), verbose=2)
    return model


def averaged(networks: list):
    """One model whose score is the mean of `networks`' scores: a steadier verifier than any one."""
    import keras

    if len(networks) == 1:
        return networks[0]
    inputs = keras.Input((48, 48, 1))
    outputs = keras.layers.Average()([network(inputs) for network in networks])
    return keras.Model(inputs, outputs, name="face_second_look")


def second_look_card(data: dict[str, np.ndarray], settings: dict, worst: float) -> dict:
    """The ONNX file's model card: what goes in, what comes out, what it was trained on."""
    return {
        "class_names": ["not a face", "face"],
        "input": {
            "shape": [48, 48, 1],
            "dtype": "float32",
            "range": [-1, 1],
            "description": "grey 48x48 patches of MTCNN's candidates, cut as O-Net cuts them, "
            "(pixel - 127.5) / 128; one output: the probability of a face",
        },
        "arch": "second_look",
        "params": {**settings, "seed": SEED},
        "data": {
            "source": f"benchmarks/second_look.py: {len(data['y'])} candidates ({int(data['y'].sum())} faces) "
            "from FER-2013's training split, changed and placed in photos, and from the sample photos of "
            "scikit-learn, scikit-image and matplotlib (see NOTICE.md)",
        },
        "exported_from": {"file": "the Keras model trained by benchmarks/second_look.py", "max_abs_difference": worst},
    }


def export(model, data: dict[str, np.ndarray], settings: dict, target: Path) -> float:
    """Write `model` to `target` as ONNX with its card, checked against Keras on 256 examples."""
    from ferflow.model.card import embed_in_onnx
    from ferflow.model.export import export_model
    from ferflow.model.onnx_runtime import OnnxModel

    partial = target.with_name(target.stem + ".partial.onnx")
    export_model(model, "onnx", partial)
    sample = data["x"][:256].astype(np.float32)
    worst = float(np.max(np.abs(model.predict_on_batch(sample) - OnnxModel(partial).predict_on_batch(sample))))
    if worst > 1e-4:
        partial.unlink()
        raise SystemExit(f"error: the ONNX export differs from Keras by {worst:.2e}")
    embed_in_onnx(partial, second_look_card(data, settings, worst))
    partial.replace(target)
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", required=True, help="the training faces: dataset.npz:train")
    parser.add_argument("--scenes", type=int, default=2400)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--drawn", type=float, default=0.0, help="share of backgrounds drawn (text, patterns, shapes)")
    parser.add_argument("--turned", type=float, default=0.0, help="share of scenes searched on a turned copy")
    parser.add_argument("--networks", type=int, default=1, help="networks averaged, trained with seeds 0, 1, ...")
    parser.add_argument("--examples", type=Path, help="a cache of the examples (.npz): read if it exists, else written")
    parser.add_argument("--out", type=Path, required=True, help="the ONNX file to write")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.examples and args.examples.exists():
        data = dict(np.load(args.examples))
    else:
        faces, _, _ = load_faces(args.faces)
        data = build_examples(faces, args.scenes, args.drawn, args.turned)
        if args.examples:
            np.savez_compressed(args.examples, **data)
    print(f"{len(data['y'])} examples, {int(data['y'].sum())} faces, {time.perf_counter() - started:.0f} s")
    if args.networks == 1:
        model = train(data, args.epochs)
    else:
        model = averaged([train(data, args.epochs, SEED + i, f"network_{i}") for i in range(args.networks)])
    settings = {"scenes": args.scenes, "epochs": args.epochs}
    if args.drawn or args.turned:  # the shipped network's card lists only what it used
        settings |= {"drawn": args.drawn, "turned": args.turned}
    if args.networks > 1:
        settings["networks"] = args.networks
    worst = export(model, data, settings, args.out)
    summary = {"examples": int(len(data["y"])), "faces": int(data["y"].sum()), "max_abs_difference": worst}
    print(json.dumps(summary), f"{args.out}, {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
