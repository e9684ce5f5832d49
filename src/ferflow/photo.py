"""Pixel operations of the photo tool on NumPy and Pillow alone (OpenCV is optional).

Photos are RGB 8-bit arrays (grey 2-D arrays for 16-bit images), as Pillow decodes them.
Faces become grey and are resized the way `ferflow.data.load_image` treats training images
(Pillow's grey conversion, then a bilinear resize), so a face gives the model the same pixels
in training and in `fer predict`.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

FACE_RESAMPLING = Image.Resampling.BILINEAR  # ferflow.data.load_image's
SHRINK_RESAMPLING = Image.Resampling.BOX  # each output pixel averages the input pixels it covers
OPENCV_EXTRA = "pip install 'ferflow[opencv]'"
Box = tuple[int, int, int, int]  # a face's (x, y, width, height) in a photo's pixels


def to_grey(pixels: np.ndarray) -> np.ndarray:
    """8-bit grey: Pillow's conversion of an RGB photo (as in training); a grey one as it is."""
    return pixels if pixels.ndim == 2 else np.asarray(Image.fromarray(pixels, mode="RGB").convert("L"))


def to_rgb(pixels: np.ndarray) -> np.ndarray:
    return pixels if pixels.ndim == 3 else np.repeat(pixels[:, :, None], 3, axis=2)


def resized(pixels: np.ndarray, width: int, height: int, resampling: Image.Resampling) -> np.ndarray:
    """`pixels` (8-bit grey or RGB, or float32 with any number of channels) resized to width x height."""
    if pixels.dtype == np.uint8:
        return np.asarray(Image.fromarray(pixels).resize((width, height), resampling))
    if pixels.ndim == 2:
        return np.asarray(Image.fromarray(pixels.astype(np.float32), mode="F").resize((width, height), resampling))
    return np.stack([resized(pixels[:, :, c], width, height, resampling) for c in range(pixels.shape[2])], axis=2)


def resized_face(grey: np.ndarray, size: int) -> np.ndarray:
    """A grey face region resized to size x size as training resizes its images."""
    return grey if grey.shape == (size, size) else resized(grey, size, size, FACE_RESAMPLING)


def require_opencv(purpose: str):
    """The cv2 module, or RuntimeError saying which extra brings it."""
    try:
        import cv2
    except ImportError:
        raise RuntimeError(f"{purpose} needs OpenCV: {OPENCV_EXTRA}") from None
    return cv2
