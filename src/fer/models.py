"""Model registry: builders by name, all taking raw 0..255 grey faces.

Every model starts with an optional augmentation block (active only in training) and a
Rescaling layer, so callers feed raw pixel values and never normalise by hand.
Only Keras layers are used, so the same code runs on TensorFlow, JAX and PyTorch.
"""

from __future__ import annotations

from typing import Callable

import keras
from keras import layers

from fer import IMAGE_SIZE

INPUT_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 1)


def make_augmentation(seed: int, rotation_degrees: float = 15.0, shift: float = 0.10,
                      zoom: float = 0.10, horizontal_flip: bool = True) -> keras.Sequential:
    """Training-time augmentation as layers: rotation, shift, zoom, horizontal flip.

    No vertical flip and no shear: upside-down or sheared faces are not real inputs.
    """
    stack = [
        layers.RandomRotation(rotation_degrees / 360.0, fill_mode="nearest", seed=seed),
        layers.RandomTranslation(shift, shift, fill_mode="nearest", seed=seed + 1),
        layers.RandomZoom(zoom, zoom, fill_mode="nearest", seed=seed + 2),
    ]
    if horizontal_flip:
        stack.append(layers.RandomFlip("horizontal", seed=seed + 3))
    return keras.Sequential(stack, name="augmentation")


def _conv_block(x, filters: list[int], dropout: float, name: str):
    for i, f in enumerate(filters):
        x = layers.Conv2D(f, 3, padding="same", activation="relu", name=f"{name}_conv{i + 1}")(x)
        x = layers.BatchNormalization(name=f"{name}_bn{i + 1}")(x)
    x = layers.MaxPooling2D(2, name=f"{name}_pool")(x)
    return layers.Dropout(dropout, name=f"{name}_drop")(x)


def _dense_block(x, units: int, dropout: float, name: str):
    x = layers.Dense(units, activation="relu", name=f"{name}_dense")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.Dropout(dropout, name=f"{name}_drop")(x)


def seed_cnn_body(x):
    """The seed projects' CNN: conv 32,32 / 64,64 / 128,128 / 256, then dense 512, 256."""
    for i, filters in enumerate([[32, 32], [64, 64], [128, 128], [256]]):
        x = _conv_block(x, filters, 0.25, name=f"block{i + 1}")
    x = layers.Flatten(name="flatten")(x)
    x = _dense_block(x, 512, 0.5, name="fc1")
    return _dense_block(x, 256, 0.5, name="fc2")


# name -> function that maps the normalised input tensor to the last hidden features.
ARCHITECTURES: dict[str, Callable] = {
    "seed_cnn": seed_cnn_body,
}


def build_model(arch: str, num_classes: int, augmentation: keras.Sequential | None = None,
                input_shape: tuple[int, int, int] = INPUT_SHAPE) -> keras.Model:
    """Build a registered architecture: raw pixels in, class probabilities out."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"train.arch = {arch!r} is not registered; choose one of {sorted(ARCHITECTURES)}")
    inputs = keras.Input(shape=input_shape, name="pixels")
    x = augmentation(inputs) if augmentation is not None else inputs
    x = layers.Rescaling(1.0 / 255.0, name="normalise")(x)
    x = ARCHITECTURES[arch](x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=arch)
