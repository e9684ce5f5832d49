"""Model registry: builders by name, all taking raw 0..255 grey faces.

Every model starts with an optional geometric augmentation block (active only in training),
an optional centre crop, and a Rescaling layer, so callers feed raw 48x48x1 pixel values and
never normalise or crop by hand. Only Keras layers are used, so the same code runs on
TensorFlow, JAX and PyTorch.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import layers

from ferflow import IMAGE_SIZE, PRETRAINED_WEIGHTS
from ferflow.model.face_resnet import face_resnet_body

INPUT_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 1)


def make_augmentation(seed: int, rotation_degrees: float = 15.0, zoom: float = 0.10) -> keras.Sequential:
    """Geometric training augmentation as layers, active only in training: rotation and zoom.

    Crops, flips, erasing and noise are cheaper as NumPy on whole batches (`ferflow.training.augment`);
    these two need interpolation, which the Keras layers do (at a cost on a CPU).
    """
    return keras.Sequential(
        [
            layers.RandomRotation(rotation_degrees / 360.0, fill_mode="nearest", seed=seed),
            layers.RandomZoom(zoom, zoom, fill_mode="nearest", seed=seed + 1),
        ],
        name="augmentation",
    )


def _conv_block(
    x,
    filters: list[int],
    dropout: float,
    name: str,
    kernel_sizes: list[int] | None = None,
    activation_first: bool = True,
):
    """Conv(s) with batch-norm, then max-pool and dropout.

    `activation_first` keeps the conv(relu) -> BN order common in FER-2013 Keras CNNs; False gives the
    conv -> BN -> ReLU order of the VGG paper.
    """
    kernel_sizes = kernel_sizes or [3] * len(filters)
    for i, (f, k) in enumerate(zip(filters, kernel_sizes)):
        if activation_first:
            x = layers.Conv2D(f, k, padding="same", activation="relu", name=f"{name}_conv{i + 1}")(x)
            x = layers.BatchNormalization(name=f"{name}_bn{i + 1}")(x)
        else:
            x = layers.Conv2D(f, k, padding="same", use_bias=False, name=f"{name}_conv{i + 1}")(x)
            x = layers.BatchNormalization(name=f"{name}_bn{i + 1}")(x)
            x = layers.ReLU(name=f"{name}_relu{i + 1}")(x)
    x = layers.MaxPooling2D(2, name=f"{name}_pool")(x)
    return layers.Dropout(dropout, name=f"{name}_drop")(x) if dropout else x


def _dense_block(x, units: int, dropout: float, name: str):
    x = layers.Dense(units, activation="relu", name=f"{name}_dense")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.Dropout(dropout, name=f"{name}_drop")(x)


def seed_cnn_body(x):
    """A common FER-2013 Keras CNN: conv 32,32 / 64,64 / 128,128 / 256, then dense 512, 256."""
    for i, filters in enumerate([[32, 32], [64, 64], [128, 128], [256]]):
        x = _conv_block(x, filters, 0.25, name=f"block{i + 1}")
    x = layers.Flatten(name="flatten")(x)
    x = _dense_block(x, 512, 0.5, name="fc1")
    return _dense_block(x, 256, 0.5, name="fc2")


def seed_cnn_deep_body(x):
    """The deeper seed CNN: conv 64 3x3 / 128 5x5 / 256 3x3 / 512 5x5, dense 512-256-128-64."""
    for i, (filters, kernel) in enumerate([(64, 3), (128, 5), (256, 3), (512, 5)]):
        x = _conv_block(x, [filters], 0.25, name=f"block{i + 1}", kernel_sizes=[kernel])
    x = layers.Flatten(name="flatten")(x)
    for i, units in enumerate([512, 256, 128, 64]):
        x = _dense_block(x, units, 0.25 if units < 256 else 0.4, name=f"fc{i + 1}")
    return x


def seed_cnn_compact_body(x):
    """The compact seed CNN: conv 32, conv 64 (each pooled), dense 128, dropout."""
    x = layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(64, 3, padding="same", activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(128, activation="relu", name="fc1_dense")(x)
    return layers.Dropout(0.5, name="fc1_drop")(x)


def vgg_body(x, widths: tuple[int, ...] = (64, 128, 256, 512), dense_units: int = 512):
    """VGG-style: 4 stages of 2 conv-BN-ReLU layers (64->512), max-pool after each, 2 dense.

    As in the best published from-scratch FER-2013 result (Khaireddin & Chen, 2021), with
    the two 4096-unit dense layers narrowed to `dense_units` to keep the shipped file under 30 MB.
    """
    for i, width in enumerate(widths):
        x = _conv_block(x, [width, width], 0.0, name=f"stage{i + 1}", activation_first=False)
    x = layers.Flatten(name="flatten")(x)
    for i in range(2):
        x = layers.Dense(dense_units, activation="relu", name=f"fc{i + 1}_dense")(x)
        x = layers.Dropout(0.5, name=f"fc{i + 1}_drop")(x)
    return x


def _slim_vgg(x, stages: tuple[tuple[int, int], ...], dense_units: int = 256, dropout: float = 0.3):
    """VGG-style stages of (width, convs) conv-BN-ReLU layers, max-pool after each, one dense layer."""
    for i, (width, convs) in enumerate(stages):
        x = _conv_block(x, [width] * convs, 0.0, name=f"stage{i + 1}", activation_first=False)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(dense_units, activation="relu", name="fc1_dense")(x)
    return layers.Dropout(dropout, name="fc1_drop")(x)


def vgg_half_body(x):
    """Half-width VGG: 4 stages of 2 conv-BN-ReLU (32->256), max-pool after each, one dense 256.

    About 1.4 M parameters at 44 px crops.
    """
    return _slim_vgg(x, ((32, 2), (64, 2), (128, 2), (256, 2)))


def vgg_three_quarter_body(x):
    """Three-quarter-width VGG: `vgg_half` at 48->384 filters, one dense 256; about 3.0 M parameters."""
    return _slim_vgg(x, ((48, 2), (96, 2), (192, 2), (384, 2)))


def vgg_half_deep_body(x):
    """Half-width VGG with a third conv in the last two stages (VGG-13 to VGG-16 style); 2.2 M parameters."""
    return _slim_vgg(x, ((32, 2), (64, 2), (128, 3), (256, 3)))


def vgg_quarter_body(x):
    """Quarter-width VGG (16->128), one dense 256: 0.43 M parameters, for small data and quick runs."""
    return _slim_vgg(x, ((16, 2), (32, 2), (64, 2), (128, 2)))


def _residual_block(x, filters: int, stride: int, name: str):
    shortcut = x
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = layers.BatchNormalization(name=f"{name}_bn2")(y)
    if stride != 1 or shortcut.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_proj")(x)
        shortcut = layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([y, shortcut]))


def resnet_small_body(x):
    """A small ResNet: 3x3 stem, then 2 basic blocks per stage at 64/128/256/512, global pooling."""
    x = layers.Conv2D(64, 3, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    for i, filters in enumerate([64, 128, 256, 512]):
        for j in range(2):
            x = _residual_block(x, filters, 2 if (j == 0 and i > 0) else 1, name=f"stage{i + 1}_block{j + 1}")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return layers.Dropout(0.3, name="drop")(x)


def resnet_half_body(x):
    """A half-width ResNet: 3x3 stem (32), one basic block per stage at 32/64/128/256 (stride 2
    from the second), global pooling. Compute close to the half-width VGG."""
    x = layers.Conv2D(32, 3, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    for i, filters in enumerate([32, 64, 128, 256]):
        x = _residual_block(x, filters, 1 if i == 0 else 2, name=f"stage{i + 1}_block1")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return layers.Dropout(0.3, name="drop")(x)


def efficientnet_b0_body(x, weights: str | None = None):
    """EfficientNet-B0 from keras.applications on the grey face repeated to 3 channels.

    The application rescales 0..255 input itself, so the [0, 1] input is scaled back first.
    weights=None trains from scratch; "imagenet" needs a machine that can download them.
    """
    x = layers.Rescaling(255.0, name="to_255")(x)
    x = layers.Concatenate(name="grey_to_rgb")([x, x, x])
    backbone = keras.applications.EfficientNetB0(
        include_top=False, weights=weights, input_shape=tuple(x.shape[1:]), pooling="avg"
    )
    return layers.Dropout(0.2, name="drop")(backbone(x))


# name -> function that maps the normalised input tensor to the last hidden features.
ARCHITECTURES: dict[str, Callable] = {
    "seed_cnn": seed_cnn_body,
    "seed_cnn_deep": seed_cnn_deep_body,
    "seed_cnn_compact": seed_cnn_compact_body,
    "vgg": vgg_body,
    "vgg_quarter": vgg_quarter_body,
    "vgg_half": vgg_half_body,
    "vgg_half_deep": vgg_half_deep_body,
    "vgg_three_quarter": vgg_three_quarter_body,
    "resnet_small": resnet_small_body,
    "resnet_half": resnet_half_body,
    "efficientnet_b0": efficientnet_b0_body,
    "face_resnet": face_resnet_body,
}
TAKES_WEIGHTS = PRETRAINED_WEIGHTS  # architectures that take the `weights` argument, and which weights


def build_model(
    arch: str,
    num_classes: int,
    augmentation: keras.Sequential | None = None,
    input_shape: tuple[int, int, int] = INPUT_SHAPE,
    crop_size: int = 0,
    weights: str | None = None,
) -> keras.Model:
    """Build a registered architecture: raw pixels in, class probabilities out.

    `crop_size` adds a centre crop after augmentation: with the augmentation's shift this is
    a random crop in training and the centre crop at test. The probabilities layer stays
    float32 under a mixed-precision policy, so outputs and the loss are computed in full precision.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"architecture {arch!r} is not registered; choose one of {sorted(ARCHITECTURES)}")
    if weights is not None and weights not in TAKES_WEIGHTS.get(arch, ()):
        owners = sorted(a for a, names in TAKES_WEIGHTS.items() if weights in names) or sorted(TAKES_WEIGHTS)
        raise ValueError(f"weights {weights!r} apply only to {', '.join(owners)}, not {arch!r}")
    inputs = keras.Input(shape=input_shape, name="pixels")
    x = augmentation(inputs) if augmentation is not None else inputs
    if crop_size:
        x = layers.CenterCrop(crop_size, crop_size, name="centre_crop")(x)
    x = layers.Rescaling(1.0 / 255.0, name="normalise")(x)
    x = ARCHITECTURES[arch](x, weights=weights) if arch in TAKES_WEIGHTS else ARCHITECTURES[arch](x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=arch)


def without_augmentation(model: keras.Model) -> keras.Model:
    """A copy of `model` with the augmentation block replaced by an identity layer.

    Outputs are identical at inference (augmentation is inactive there anyway), but the graph
    holds no random ops, which exporters such as tf2onnx cannot convert.
    """

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        if layer.name == "augmentation":
            return keras.Sequential([keras.layers.Identity()], name="augmentation")
        return layer.__class__.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone)
    for layer in copy.layers:
        if layer.name != "augmentation" and layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return copy


def in_float32(model: keras.Model) -> keras.Model:
    """A copy of `model` whose layers all compute in float32, with the same weights.

    A model trained under a mixed policy (bfloat16 on a CPU with AMX, float16 on a GPU) keeps
    its variables in float32 already; only the compute dtype changes. The copy is what is saved,
    so evaluation and `fer predict` give float32 results on any machine, AMX or not.
    """

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        if isinstance(layer, keras.Sequential):  # the augmentation block
            return keras.Sequential([clone(inner) for inner in layer.layers], name=layer.name)
        config = layer.get_config()
        if "dtype" in config and not isinstance(layer, keras.layers.InputLayer):
            config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy
