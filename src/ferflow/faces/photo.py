"""Photos for the photo tool, on NumPy and Pillow alone (OpenCV only for videos): decoding,
grey conversion, resizing and the face crop.

Photos are RGB 8-bit arrays (grey 2-D arrays for 16-bit images), as Pillow decodes them.
Faces become grey and are resized the way `ferflow.data.folders.load_image` treats training images
(Pillow's grey conversion, then a bilinear resize), so a face gives the model the same pixels
in training and in `fer predict`.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from ferflow import IMAGE_SIZE

FACE_RESAMPLING = PILImage.Resampling.BILINEAR  # ferflow.data.folders.load_image's
OPENCV_EXTRA = "pip install 'ferflow[opencv]'"
Box = tuple[int, int, int, int]  # a face's (x, y, width, height) in a photo's pixels


def iou(a: Box | np.ndarray, b: Box | np.ndarray) -> float:
    """Intersection over union of two (x, y, width, height) boxes."""
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


def turned_copy(pixels: np.ndarray, degrees: float, max_side: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`pixels` turned by `degrees` anticlockwise about its centre, on a canvas that holds all of
    it (the corners in the photo's mean colour), shrunk in the same step to at most `max_side` on
    its long side, and the 2x3 matrix that maps a point (x, y, 1) of the copy back to the photo."""
    angle = math.radians(degrees)
    cos, sin = round(math.cos(angle), 15), round(math.sin(angle), 15)
    height, width = pixels.shape[:2]
    # The canvas of Pillow's rotate(expand=True), computed as it computes it (rounding included).
    xs = [cos * (x - width / 2) - sin * (y - height / 2) + width / 2 for x in (0, width) for y in (0, height)]
    ys = [sin * (x - width / 2) + cos * (y - height / 2) + height / 2 for x in (0, width) for y in (0, height)]
    canvas = (math.ceil(max(xs)) - math.floor(min(xs)), math.ceil(max(ys)) - math.floor(min(ys)))
    scale = min(1.0, max_side / max(canvas)) if max_side else 1.0
    size = (max(1, round(canvas[0] * scale)), max(1, round(canvas[1] * scale)))
    # Anticlockwise on screen (y down): a point's offset from the centre turns back by the inverse,
    # and one bilinear step turns and shrinks (a second resize would cost as much as the turn).
    turn_back = np.array([[cos, -sin], [sin, cos]]) / scale
    shift = np.array([width / 2, height / 2]) - turn_back @ np.array([size[0] / 2, size[1] / 2])
    back = np.column_stack([turn_back, shift])
    fill = tuple(int(v) for v in np.asarray(pixels).reshape(-1, 1 if pixels.ndim == 2 else pixels.shape[2]).mean(0))
    image = PILImage.fromarray(np.ascontiguousarray(pixels))
    copy = image.transform(size, PILImage.Transform.AFFINE, tuple(back.ravel()), PILImage.BILINEAR, fillcolor=fill)
    return np.asarray(copy), back


def to_grey(pixels: np.ndarray) -> np.ndarray:
    """8-bit grey: Pillow's conversion of an RGB photo (as in training); a grey one as it is."""
    return pixels if pixels.ndim == 2 else np.asarray(PILImage.fromarray(pixels, mode="RGB").convert("L"))


def to_rgb(pixels: np.ndarray) -> np.ndarray:
    return pixels if pixels.ndim == 3 else np.repeat(pixels[:, :, None], 3, axis=2)


def _area_weights(source: int, target: int) -> tuple[np.ndarray, np.ndarray]:
    """(target, taps) source indices and weights that shrink an axis by area averaging: each output
    pixel spans `source / target` input pixels and weighs each by the share of it that it covers."""
    scale = source / target
    starts = np.arange(target) * scale
    ends = np.minimum(starts + scale, source)
    indices = np.floor(starts).astype(np.int64)[:, None] + np.arange(int(np.ceil(scale)) + 1)[None, :]
    weights = np.clip(np.minimum(indices + 1, ends[:, None]) - np.maximum(indices, starts[:, None]), 0, None)
    weights /= weights.sum(axis=1, keepdims=True)
    return np.minimum(indices, source - 1), weights.astype(np.float32)


def area_shrunk(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """`pixels` (8-bit or float32, grey or with channels) shrunk to width x height by area averaging,
    as OpenCV's INTER_AREA shrinks (up to the rounding of a grey level), which the detectors'
    settings were chosen with (Pillow's box filter samples the pixels at the edges instead of
    weighing them, and finds fewer faces)."""
    x = np.asarray(pixels, dtype=np.float32)
    rows, row_weights = _area_weights(x.shape[0], height)
    x = np.ascontiguousarray(np.einsum("htw...,ht->hw...", x[rows], row_weights))
    cols, col_weights = _area_weights(x.shape[1], width)
    x = np.ascontiguousarray(np.einsum("hwt...,wt->hw...", x[:, cols], col_weights))  # later gathers need rows
    return np.floor(x + 0.5).clip(0, 255).astype(np.uint8) if pixels.dtype == np.uint8 else x


def detection_copy(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """An 8-bit photo shrunk to width x height for detection, by area averaging. A photo more than
    four times larger is first reduced by a whole factor with Pillow (block means), so that a
    large photo needs little memory."""
    factor = min(pixels.shape[0] // height, pixels.shape[1] // width) // 2
    if factor >= 2:
        pixels = np.asarray(PILImage.fromarray(pixels).reduce(factor))
    return area_shrunk(pixels, width, height)


def resized_face(grey: np.ndarray, size: int) -> np.ndarray:
    """A grey face region resized to size x size as training resizes its images."""
    if grey.shape == (size, size):
        return grey
    return np.asarray(PILImage.fromarray(grey).resize((size, size), FACE_RESAMPLING))


def require_opencv(purpose: str):
    """The cv2 module, or RuntimeError saying which extra brings it."""
    try:
        import cv2
    except ImportError:
        raise RuntimeError(f"{purpose} needs OpenCV: {OPENCV_EXTRA}") from None
    return cv2


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"}  # a GIF: its first frame
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}


def is_video(path: str | Path) -> bool:
    """Whether a file is read as a video, by its name."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


class ImageError(ValueError):
    """One image cannot be decoded or searched for faces; the message names the file."""


@dataclass
class Image:
    file: str
    frame: int | None
    pixels: np.ndarray  # RGB 8-bit, or grey for a 16-bit image (see ferflow.faces.photo)
    time: float | None = None  # a video frame's seconds from the start: its index / the frame rate


def read_images(path: Path, video_stride: int | None) -> Iterator[Image]:
    """The image in `path`, or every `video_stride`-th frame of a video. Raises ValueError if unreadable."""
    if is_video(path):
        if not video_stride:
            raise ValueError(f"'{path}' is a video; pass --video-stride N to classify every N-th frame")
        yield from read_video(path, video_stride)
        return
    yield Image(str(path), None, decode_image(path, str(path)))


def read_video(path: Path, stride: int) -> Iterator[Image]:
    """Every `stride`-th frame of a video. Raises ValueError naming the file for a video that cannot
    be opened, whose frames are over the pixel limit, or that ends before the frames its header
    promises (a truncated file), after yielding the frames it could read."""
    from ferflow.runtime import native_stderr_silenced

    try:
        cv2 = require_opencv("reading videos")
    except RuntimeError as missing:
        raise ImageError(f"'{path}': {missing}") from None
    refuse_image_as_video(path)
    with native_stderr_silenced():  # FFmpeg's own complaints ("moov atom not found") stay off the terminal
        capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise ValueError(f"'{path}' cannot be opened as a video")
        fps = capture.get(cv2.CAP_PROP_FPS)
        low, high = FRAME_RATE_RANGE
        if not (math.isfinite(fps) and low <= fps <= high):
            raise ValueError(f"'{path}' has no usable frame rate in its header ({fps:g} fps); re-encode it with one")
        width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if width * height > MAX_IMAGE_PIXELS:
            raise ImageError(
                f"'{path}' has frames of {width}x{height} pixels; the limit is {MAX_IMAGE_PIXELS:,} pixels a frame"
            )
        promised = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        index = frames = 0
        while True:
            with native_stderr_silenced():
                ok, frame = capture.read()
            if not ok:
                break
            if frame.shape[0] * frame.shape[1] > MAX_IMAGE_PIXELS:  # a frame larger than the header said
                raise ImageError(f"'{path}' frame {index} is over the limit of {MAX_IMAGE_PIXELS:,} pixels")
            if index % stride == 0:
                frames += 1
                # OpenCV's BGR to RGB; the time from the frame rate, as players show it
                yield Image(str(path), index, np.ascontiguousarray(frame[:, :, ::-1]), index / fps)
            index += 1
    finally:
        capture.release()
    if frames == 0:
        raise ValueError(f"'{path}' has no readable video frames")
    if 0 < index < promised:
        raise ValueError(f"'{path}' ended after {index} of the {promised} frames its header promises (truncated?)")


# Frame rates a header may give: FFmpeg turns a 0 in an MP4's header into 1/1024 fps.
FRAME_RATE_RANGE = (0.1, 1000.0)


def video_frame_rate(path: Path) -> float:
    """The frame rate in a video's header (0 when it has none or cannot be opened)."""
    cv2 = require_opencv("reading videos")
    capture = cv2.VideoCapture(str(path))
    try:
        return float(capture.get(cv2.CAP_PROP_FPS)) if capture.isOpened() else 0.0
    finally:
        capture.release()


# The first bytes of the image formats that FFmpeg would open as a one-frame "video".
IMAGE_SIGNATURES = {
    b"\xff\xd8\xff": "JPEG",
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"GIF8": "GIF",
    b"BM": "BMP",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
}


def refuse_image_as_video(path: Path) -> None:
    """Raise ValueError when a file named as a video is an image (by its first bytes)."""
    with open(path, "rb") as file:
        head = file.read(16)
    kinds = [kind for signature, kind in IMAGE_SIGNATURES.items() if head.startswith(signature)]
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        kinds.append("WEBP")
    if kinds:
        raise ValueError(f"'{path}' is a {kinds[0]} image, not a video; rename it to classify it as a photo")


# Larger images are refused rather than decoded (a "decompression bomb" is a small file).
MAX_IMAGE_PIXELS = 50_000_000


def decode_image(data: bytes | Path, name: str) -> np.ndarray:
    """Decode an image (file bytes, or a file read as it is decoded) to RGB 8-bit pixels (grey for
    a 16-bit image).

    Raises ValueError naming `name` for empty, non-image, truncated or oversized data, from the
    header before anything else is read (a large file that is no image is not read whole). PIL
    decodes (once): it refuses a truncated JPEG, and it is the decoder training uses. EXIF
    orientation is applied; 16-bit images are scaled to 8 bits, not clipped, as in training.
    """
    from PIL import ImageOps, UnidentifiedImageError

    from ferflow.images import SIXTEEN_BIT_MODES, to_8bit_grey

    if (data.stat().st_size == 0) if isinstance(data, Path) else not data:
        raise ImageError(f"'{name}' is empty")
    try:
        with warnings.catch_warnings():
            # PIL warns above its own limit and raises above twice that; ours is lower and checked
            # from the header alone, before anything is decoded.
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            probe = PILImage.open(data if isinstance(data, Path) else io.BytesIO(data))
        with probe:
            if probe.width * probe.height > MAX_IMAGE_PIXELS:
                raise ImageError(
                    f"'{name}' is {probe.width}x{probe.height} pixels; the limit is {MAX_IMAGE_PIXELS:,} pixels"
                )
            probe.load()  # decodes everything: raises on truncated data
            image = ImageOps.exif_transpose(probe)
            if image.mode in SIXTEEN_BIT_MODES:
                return np.asarray(to_8bit_grey(image))
            return np.asarray(image.convert("RGB"))
    except ImageError:
        raise
    except PILImage.DecompressionBombError:
        raise ImageError(
            f"'{name}' has more than {MAX_IMAGE_PIXELS:,} pixels, the limit (a decompression bomb?)"
        ) from None
    except UnidentifiedImageError:
        raise ImageError(f"'{name}' is not a readable image") from None
    except Exception as error:  # PIL's decoders raise many types on malformed data
        raise ImageError(f"'{name}' is not a readable image: {first_line(error)}") from None


def pixel_count(data: bytes, name: str) -> int:
    """The pixels an image will decode to, read from its header alone. Raises ImageError for
    data that is empty, not an image, or over MAX_IMAGE_PIXELS."""
    from PIL import UnidentifiedImageError

    if not data:
        raise ImageError(f"'{name}' is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(data)) as probe:
                pixels = probe.width * probe.height
    except PILImage.DecompressionBombError:
        pixels = MAX_IMAGE_PIXELS + 1
    except UnidentifiedImageError:
        raise ImageError(f"'{name}' is not a readable image") from None
    except Exception as error:  # PIL's header parsers raise many types on malformed data
        raise ImageError(f"'{name}' is not a readable image: {first_line(error)}") from None
    if pixels > MAX_IMAGE_PIXELS:
        raise ImageError(f"'{name}' has more than {MAX_IMAGE_PIXELS:,} pixels, the limit")
    return pixels


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def face_frame(box: tuple[int, int, int, int], margin: float, square: bool) -> tuple[int, int, int, int]:
    """The region (x, y, w, h) cut out for a detected box: with `square`, the shorter side grown to
    the longer around the box's centre (FER-2013 faces are square), then `margin` of the size
    added on each side."""
    x, y, w, h = box
    if square:
        side = max(w, h)
        x, y, w, h = x - (side - w) / 2, y - (side - h) / 2, side, side
    left, top = round(x - w * margin), round(y - h * margin)
    return left, top, round(x + w + w * margin) - left, round(y + h + h * margin) - top


def crop_face(grey: np.ndarray, box: tuple[int, int, int, int], margin: float, square: bool = False) -> np.ndarray:
    """The face's frame (see `face_frame`) resized to 48x48.

    Where the frame runs past the image, the edge pixels are repeated rather than the frame
    clipped, so a face at the border keeps the framing (and proportions) of the others.
    """
    left, top, width, height = face_frame(box, margin, square)
    pad = max(0, -left, -top, left + width - grey.shape[1], top + height - grey.shape[0])
    if pad:
        grey = np.pad(grey, pad, mode="edge")
        left, top = left + pad, top + pad
    return resized_face(grey[top : top + height, left : left + width], IMAGE_SIZE)
