"""Shared fixtures: tiny real data sets drawn from the embedded sample."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from ferflow import CLASS_NAMES
from ferflow.runtime import configure_determinism

configure_determinism()  # before any test imports Keras

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"


def copy_tiny_source(dest: Path, per_class: dict[str, int], split: str = "train") -> Path:
    """Copy the first N real faces of each class from data/sample/<split> into dest/<split>."""
    for name, count in per_class.items():
        files = sorted((SAMPLE / split / name).glob("*.jpg"))[:count]
        assert len(files) == count, f"data/sample/{split}/{name} has fewer than {count} faces"
        target = dest / split / name
        target.mkdir(parents=True, exist_ok=True)
        for path in files:
            shutil.copy(path, target / path.name)
    return dest


@pytest.fixture
def tiny_source(tmp_path: Path) -> Path:
    """A Kaggle-layout folder with 6 train and 2 test faces per class (56 real faces)."""
    root = tmp_path / "fer"
    copy_tiny_source(root, {name: 6 for name in CLASS_NAMES}, "train")
    copy_tiny_source(root, {name: 2 for name in CLASS_NAMES}, "test")
    return root


def save_small_model(
    path: Path, seed: int = 0, class_names=CLASS_NAMES, crop_size: int = 44, geometric: bool = False, **sidecar
) -> Path:
    """A small untrained model and its sidecar, as the train stage writes them."""
    import json

    from ferflow.io import save_model
    from ferflow.model.registry import build_model, make_augmentation
    from ferflow.runtime import seed_everything

    seed_everything(seed)
    augmentation = make_augmentation(seed) if geometric else None
    model = build_model("seed_cnn_compact", len(class_names), augmentation, crop_size=crop_size)
    save_model(model, path)
    sidecar = {
        "class_names": list(class_names),
        "arch": "seed_cnn_compact",
        "params": {"crop_size": crop_size},
        **sidecar,
    }
    path.with_suffix(".json").write_text(json.dumps(sidecar))
    return path


def save_member(folder: Path, name: str, seed: int, class_names=CLASS_NAMES, crop_size: int = 44) -> Path:
    """An ensemble member (or a teacher): seeds differ per member, and so do their recorded training times."""
    return save_small_model(folder / f"{name}.keras", seed, class_names, crop_size, training_seconds=10.0 + seed)


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    """Twelve real faces from the sample's test folder, as (12, 48, 48, 1) float32 pixels."""
    import cv2

    files = sorted((SAMPLE / "test").glob("*/*.jpg"))[:12]
    return np.stack([cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files]).astype("float32")[..., None]


# Two real FER-2013 faces from the embedded sample, placed on a canvas at known boxes (x, y, size).
PLACED = {
    SAMPLE / "test" / "angry" / "PublicTest_1419488.jpg": (40, 60, 144),
    SAMPLE / "test" / "fear" / "PublicTest_10150476.jpg": (280, 80, 144),
}


def two_face_canvas() -> np.ndarray:
    """A grey 480x300 photo holding the two PLACED faces."""
    import cv2

    canvas = np.full((300, 480), 200, dtype=np.uint8)
    for path, (x, y, size) in PLACED.items():
        face = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        canvas[y : y + size, x : x + size] = cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC)
    return canvas


@pytest.fixture(scope="session")
def model_path(tmp_path_factory) -> Path:
    """A small untrained model (with the rotation and zoom layers) and its sidecar."""
    return save_small_model(tmp_path_factory.mktemp("model") / "fer.keras", geometric=True)


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height grey pixels but holds one row: what a decompression
    bomb looks like before it is decoded (the real 20000x20000 one is 389 KB)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * (width + 1)))
        + chunk(b"IEND", b"")
    )


def build_hostile_images(folder: Path) -> dict[str, Path]:
    """Images that must each give a per-file problem (or a result), never a crash: bombs, 1-pixel
    and very thin images, truncated, empty and non-image files, CMYK, 16-bit, animated GIF, and
    a rotated photo with an EXIF orientation tag."""
    import cv2
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    face = Image.open(sorted((SAMPLE / "test" / "happy").glob("*.jpg"))[0]).convert("L").resize((160, 160))
    photo = Image.new("L", (320, 240), 200)
    photo.paste(face, (80, 40))
    files = {
        "bomb.png": png_header(20000, 20000),  # over PIL's own limit: it raises, not warns
        "over_our_limit.png": png_header(9000, 9000),
        "one_pixel.png": cv2.imencode(".png", np.full((1, 1), 128, np.uint8))[1].tobytes(),
        "thin_wide.png": cv2.imencode(".png", np.zeros((1, 40000), np.uint8))[1].tobytes(),
        "thin_tall.png": cv2.imencode(".png", np.zeros((5000, 2), np.uint8))[1].tobytes(),
        "sixteen_bit.png": cv2.imencode(".png", (np.asarray(photo, np.uint16) * 257))[1].tobytes(),
        "empty.jpg": b"",
        "not_an_image.jpg": b"plain text with an image's name",
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    photo.convert("CMYK").save(folder / "cmyk.jpg")
    photo.save(folder / "whole.jpg")
    (folder / "truncated.jpg").write_bytes((folder / "whole.jpg").read_bytes()[:600])
    photo.save(folder / "animated.gif", save_all=True, append_images=[photo.rotate(10)], duration=100)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the stored pixels are rotated; viewers turn them upright
    photo.rotate(90, expand=True).save(folder / "exif_rotated.jpg", exif=exif)
    (folder / "whole.jpg").unlink()
    return {path.name: path for path in sorted(folder.iterdir())}


@pytest.fixture(scope="session")
def hostile_images(tmp_path_factory) -> dict[str, Path]:
    return build_hostile_images(tmp_path_factory.mktemp("hostile"))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


# The synthetic clip of the video tests and benchmark: 640x480, two real sample faces (120 px)
# moving slowly, crossing paths at 4.2 s (the second drawn over the lower third of the first);
# the second switches from an angry face to a surprised one (another person) at 5 s.
CLIP_FACES = {
    "a": SAMPLE / "test" / "happy" / "PublicTest_35934455.jpg",
    "b_before": SAMPLE / "test" / "angry" / "PublicTest_5177911.jpg",
    "b_after": SAMPLE / "test" / "surprise" / "PublicTest_48907173.jpg",
}
CLIP_SWITCH_S = 5.0


def clip_positions(time: float, speed: float = 1.0) -> dict[str, tuple[int, int]]:
    """The top-left corners of faces a and b at `time` seconds (`speed` times faster, bouncing
    between the frame's sides)."""

    def bounce(x: float) -> int:
        return round(abs((x - 40) % 960 - 480) * -1 + 520) if speed != 1.0 else round(x)

    return {"a": (bounce(40 + 48 * speed * time), 100), "b": (bounce(360 - 28 * speed * time), 180)}


def write_two_face_clip(
    path: Path,
    fps: float = 10,
    seconds: float = 10,
    size: int = 120,
    speed: float = 1.0,
    hidden: tuple[float, float] | None = None,
) -> Path:
    """The clip above; `speed` times faster, and face a left out of the frames in the `hidden`
    interval of seconds (an occlusion)."""
    import cv2

    faces = {
        name: cv2.resize(cv2.imread(str(file), cv2.IMREAD_GRAYSCALE), (size, size), interpolation=cv2.INTER_CUBIC)
        for name, file in CLIP_FACES.items()
    }
    fourcc = "MJPG" if path.suffix == ".avi" else "mp4v"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (640, 480))
    assert writer.isOpened(), f"OpenCV cannot write {path}"
    for index in range(round(fps * seconds)):
        time = index / fps
        frame = np.full((480, 640), 190, np.uint8)
        for name, (x, y) in clip_positions(time, speed).items():
            if name == "a" and hidden is not None and hidden[0] <= time < hidden[1]:
                continue
            face = faces["a"] if name == "a" else faces["b_before" if time < CLIP_SWITCH_S else "b_after"]
            frame[y : y + size, x : x + size] = face
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()
    return path
