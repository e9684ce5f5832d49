"""dlib's face-recognition ResNet as a Keras body, started from its public-domain weights or from scratch.

The network is the 29-convolution ResNet of dlib's `dlib_face_recognition_resnet_model_v1.dat`, trained by
Davis King to tell 7,485 people apart and released into the public domain (CC0 1.0). The file comes from
PyPI in `face_recognition_models==0.3.0`; it is read from that installed package, checked against its
SHA-256, and never downloaded at run time.

dlib stores each convolution followed by a fixed per-channel scale and shift ("affine", its frozen batch
norm); here each pair is folded into one convolution with a bias, which computes the same function.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
from keras import layers

DLIB_PACKAGE = "face_recognition_models==0.3.0"
DLIB_FILE = "models/dlib_face_recognition_resnet_model_v1.dat"
DLIB_FILE_SHA256 = "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"
# dlib's input layer subtracts these RGB means from 0..255 pixels and divides by 256.
DLIB_RGB_MEANS = (122.782, 117.001, 104.298)
# Faces are enlarged to this size before the network: the smallest at which every level keeps a pixel.
INPUT_SIZE = 112
# Per level, from the input: (width, blocks, whether the first block halves the size).
LEVELS = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))


class DlibWeightsError(RuntimeError):
    """The dlib weights are not installed, or not the file this module was written for."""


def dlib_weights_path() -> Path:
    """The installed dlib weights file, checked against its SHA-256."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise DlibWeightsError(
            f"train.weights=dlib needs the dlib face-recognition weights: pip install {DLIB_PACKAGE}"
        )
    path = Path(spec.origin).parent / DLIB_FILE
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"
    if digest != DLIB_FILE_SHA256:
        raise DlibWeightsError(
            f"{path} is not the expected dlib weights file (SHA-256 {digest}); "
            f"reinstall with: pip install --force-reinstall {DLIB_PACKAGE}"
        )
    return path


def _read_int(data: bytes, pos: int) -> tuple[int, int]:
    """dlib's integer encoding: a byte holding the length (and 0x80 for a minus sign), then little-endian bytes."""
    head = data[pos]
    size = head & 0x0F
    value = int.from_bytes(data[pos + 1 : pos + 1 + size], "little")
    return (-value if head & 0x80 else value), pos + 1 + size


def _read_tensor(data: bytes, pos: int) -> np.ndarray:
    """A dlib tensor (format version 2): four sizes, then float32 values, little-endian."""
    version, pos = _read_int(data, pos)
    if version != 2:
        raise DlibWeightsError(f"unexpected dlib tensor format version {version}")
    shape = []
    for _ in range(4):
        size, pos = _read_int(data, pos)
        shape.append(size)
    count = int(np.prod(shape))
    return np.frombuffer(data, "<f4", count=count, offset=pos).copy()


def _tensors_after(data: bytes, tag: bytes, sizes_first: int = 0) -> list[np.ndarray]:
    """The parameter tensor of every layer whose serialized name is `tag`, in file order (input first).

    `sizes_first` integers sit between the name and the tensor (a fully connected layer's sizes).
    """
    marker = bytes([1, len(tag)]) + tag  # a name is stored as its length, then its bytes
    found, pos = [], data.find(marker)
    while pos >= 0:
        start = pos + len(marker)
        for _ in range(sizes_first):
            _, start = _read_int(data, start)
        found.append(_read_tensor(data, start))
        pos = data.find(marker, start)
    return found


def read_dlib_weights(path: Path) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """The 29 convolutions as (kernel HWIO, bias) with their affine layers folded in, and the final
    256x128 fully connected matrix that maps pooled features to dlib's face descriptor."""
    data = Path(path).read_bytes()
    convs, affines = _tensors_after(data, b"con_4"), _tensors_after(data, b"affine_")
    (fc,) = _tensors_after(data, b"fc_2", sizes_first=2)
    shapes = _conv_shapes()
    if len(convs) != len(shapes) or len(affines) != len(shapes):
        raise DlibWeightsError(f"{path}: expected {len(shapes)} convolutions, found {len(convs)}")
    folded = []
    for params, affine, (size, in_channels, filters) in zip(convs, affines, shapes):
        kernel_values = filters * in_channels * size * size
        if params.size != kernel_values + filters or affine.size != 2 * filters:
            raise DlibWeightsError(f"{path}: a convolution does not have the expected shape")
        kernel = params[:kernel_values].reshape(filters, in_channels, size, size).transpose(2, 3, 1, 0)
        scale, shift = affine[:filters], affine[filters:]
        folded.append((kernel * scale, params[kernel_values:] * scale + shift))
    return folded, fc.reshape(LEVELS[-1][0], -1)


def _conv_shapes() -> list[tuple[int, int, int]]:
    """(kernel size, input channels, filters) of each convolution, in file order."""
    shapes, channels = [(7, 3, 32)], 32
    for width, blocks, _ in LEVELS:
        for _ in range(blocks):
            shapes += [(3, channels, width), (3, width, width)]
            channels = width
    return shapes


def _pad_to(x, height: int, width: int, channels: int, name: str):
    """Zero-pad bottom, right and trailing channels, as dlib adds tensors of different sizes."""
    if x.shape[1] < height or x.shape[2] < width:
        x = layers.ZeroPadding2D(((0, height - x.shape[1]), (0, width - x.shape[2])), name=f"{name}_pad")(x)
    if x.shape[-1] < channels:
        # a fixed 1x1 convolution that copies the channels and appends zero ones
        pad = layers.Conv2D(channels, 1, use_bias=False, trainable=False, name=f"{name}_pad_channels")
        x_in = x
        x = pad(x_in)
        pad.set_weights([np.eye(x_in.shape[-1], channels, dtype="float32")[None, None]])
    return x


def _conv(x, filters: int, size: int, stride: int, name: str, learned: list):
    padding = "same" if stride == 1 else "valid"  # dlib pads only unstrided convolutions
    conv = layers.Conv2D(filters, size, strides=stride, padding=padding, name=name)
    learned.append(conv)
    return conv(x)


def _residual(x, width: int, stride: int, name: str, learned: list):
    y = _conv(x, width, 3, stride, f"{name}_conv1", learned)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = _conv(y, width, 3, 1, f"{name}_conv2", learned)
    shortcut = x if stride == 1 else layers.AveragePooling2D(2, name=f"{name}_shortcut_pool")(x)
    height, breadth = max(y.shape[1], shortcut.shape[1]), max(y.shape[2], shortcut.shape[2])
    y = _pad_to(y, height, breadth, width, f"{name}_main")
    shortcut = _pad_to(shortcut, height, breadth, width, f"{name}_shortcut")
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([y, shortcut]))


def dlib_features(rgb, learned: list):
    """dlib's network from normalised RGB input to its pooled 256 features.

    Appends its learned convolutions to `learned`, in dlib's file order.
    """
    x = _conv(rgb, 32, 7, 2, "stem_conv", learned)
    x = layers.ReLU(name="stem_relu")(x)
    x = layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)
    for level, (width, blocks, halves) in enumerate(LEVELS):
        for block in range(blocks):
            stride = 2 if halves and block == 0 else 1
            x = _residual(x, width, stride, f"level{level + 1}_block{block + 1}", learned)
    return layers.GlobalAveragePooling2D(name="pool")(x)


def dlib_input(pixels_0_1):
    """0..1 grey faces enlarged to the network's size and normalised as dlib's RGB input."""
    x = layers.Resizing(INPUT_SIZE, INPUT_SIZE, interpolation="bilinear", name="enlarge")(pixels_0_1)
    x = layers.Concatenate(name="grey_to_rgb")([x, x, x])
    return layers.Rescaling(255.0 / 256.0, offset=[-m / 256.0 for m in DLIB_RGB_MEANS], name="dlib_normalise")(x)


def load_dlib_weights(convolutions: list, path: Path) -> None:
    """Set the network's convolutions, in dlib's file order, to dlib's trained ones."""
    for conv, (kernel, bias) in zip(convolutions, read_dlib_weights(path)[0], strict=True):
        conv.set_weights([kernel, bias])


def face_resnet_body(x, weights: str | None = None):
    """The registry's body: 0..1 grey faces in, dropout on the 256 pooled features out.

    weights="dlib" starts from dlib's face-recognition weights; None trains from scratch.
    """
    if weights not in (None, "dlib"):
        raise ValueError(f"face_resnet takes weights 'dlib' or none, not {weights!r}")
    path = dlib_weights_path() if weights == "dlib" else None  # fail before building anything
    convolutions: list = []
    features = dlib_features(dlib_input(x), convolutions)
    if path is not None:
        load_dlib_weights(convolutions, path)
    return layers.Dropout(0.3, name="drop")(features)
