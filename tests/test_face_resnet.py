"""dlib's face-recognition ResNet: reading dlib's file format, folding, loading and the checks on the file.

The real weights file is not needed: these tests write files in dlib's format with known values.
`benchmarks/dlib_parity.py` checks the real file against dlib's own face descriptors.
"""

from __future__ import annotations

import hashlib

import keras
import numpy as np
import pytest

from ferflow.model import face_resnet
from ferflow.model.registry import build_model
from ferflow.runtime import seed_everything
from ferflow.training.recipe import compile_model
from ferflow.training.train import one_hot


def dlib_int(value: int) -> bytes:
    """dlib's integer encoding, written from its description: length byte (0x80 = minus), little-endian bytes."""
    magnitude = abs(value)
    body = magnitude.to_bytes(max(1, (magnitude.bit_length() + 7) // 8), "little")
    return bytes([len(body) | (0x80 if value < 0 else 0)]) + body


def dlib_tensor(values: np.ndarray) -> bytes:
    header = b"".join(dlib_int(v) for v in (2, values.size, 1, 1, 1))
    return header + values.astype("<f4").tobytes()


def dlib_name(name: bytes) -> bytes:
    return dlib_int(len(name)) + name


def write_dlib_file(path, rng) -> tuple[list, list, np.ndarray]:
    """A file laid out as dlib lays out the network (input first), with other layers' bytes between."""
    raw_convs, affines = [], []
    chunks = [dlib_name(b"loss_metric_2"), dlib_name(b"input_rgb_image_sized")]
    for size, in_channels, filters in face_resnet._conv_shapes():
        kernel = rng.normal(size=(filters, in_channels, size, size)).astype("float32")
        bias = rng.normal(size=filters).astype("float32")
        affine = rng.normal(size=2 * filters).astype("float32")
        raw_convs.append((kernel, bias))
        affines.append(affine)
        chunks += [dlib_name(b"con_4"), dlib_tensor(np.concatenate([kernel.ravel(), bias])), dlib_int(filters)]
        chunks += [dlib_name(b"affine_"), dlib_tensor(affine), dlib_name(b"relu_")]
    fc = rng.normal(size=(256, 128)).astype("float32")
    chunks += [dlib_name(b"fc_2"), dlib_int(128), dlib_int(256), dlib_tensor(fc.ravel())]
    path.write_bytes(b"".join(chunks))
    return raw_convs, affines, fc


@pytest.mark.parametrize("value", [0, 1, 127, 255, 256, 65_535, 2**40, -3, -300])
def test_dlib_integers_decode(value: int) -> None:
    encoded = b"\xff" + dlib_int(value) + b"\xee"
    assert face_resnet._read_int(encoded, 1) == (value, len(encoded) - 1)


def test_reading_folds_each_affine_into_its_convolution(tmp_path, rng) -> None:
    raw_convs, affines, fc = write_dlib_file(tmp_path / "net.dat", rng)
    folded, fc_read = face_resnet.read_dlib_weights(tmp_path / "net.dat")
    assert len(folded) == len(raw_convs) == 29
    for (kernel, bias), (raw_kernel, raw_bias), affine in zip(folded, raw_convs, affines):
        filters = raw_bias.size
        scale, shift = affine[:filters], affine[filters:]
        # dlib's (filters, in, rows, cols) becomes Keras's (rows, cols, in, filters)
        np.testing.assert_allclose(kernel, raw_kernel.transpose(2, 3, 1, 0) * scale, rtol=1e-6)
        np.testing.assert_allclose(bias, raw_bias * scale + shift, rtol=1e-6)
    np.testing.assert_array_equal(fc_read, fc)


def test_a_folded_convolution_computes_the_convolution_then_the_affine(rng) -> None:
    kernel = rng.normal(size=(3, 3, 2, 4)).astype("float32")
    bias, scale, shift = (rng.normal(size=4).astype("float32") for _ in range(3))
    x = rng.normal(size=(1, 6, 6, 2)).astype("float32")
    plain = keras.layers.Conv2D(4, 3, padding="same")
    plain.build(x.shape)
    plain.set_weights([kernel, bias])
    folded = keras.layers.Conv2D(4, 3, padding="same")
    folded.build(x.shape)
    folded.set_weights([kernel * scale, bias * scale + shift])
    np.testing.assert_allclose(folded(x), np.asarray(plain(x)) * scale + shift, rtol=1e-5, atol=1e-5)


def test_a_file_with_a_missing_layer_is_refused(tmp_path, rng) -> None:
    write_dlib_file(tmp_path / "net.dat", rng)
    data = (tmp_path / "net.dat").read_bytes()
    last_conv = data.rfind(dlib_name(b"con_4"))
    (tmp_path / "cut.dat").write_bytes(data[:last_conv] + data[data.find(dlib_name(b"fc_2")) :])
    with pytest.raises(face_resnet.DlibWeightsError, match="expected 29 convolutions, found 28"):
        face_resnet.read_dlib_weights(tmp_path / "cut.dat")


@pytest.fixture
def installed_weights(tmp_path, rng, monkeypatch):
    """A fake installed face_recognition_models package whose file passes the checksum."""
    package = tmp_path / "site" / "face_recognition_models"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    weights = package / face_resnet.DLIB_FILE
    convs = write_dlib_file(weights, rng)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(face_resnet, "DLIB_FILE_SHA256", hashlib.sha256(weights.read_bytes()).hexdigest())
    return weights, convs


def test_the_model_starts_from_the_installed_weights(installed_weights) -> None:
    weights, _ = installed_weights
    folded, _ = face_resnet.read_dlib_weights(weights)
    model = build_model("face_resnet", 7, crop_size=44, weights="dlib")
    kernel, bias = model.get_layer("stem_conv").get_weights()
    np.testing.assert_array_equal(kernel, folded[0][0])
    np.testing.assert_array_equal(bias, folded[0][1])
    kernel, _ = model.get_layer("level5_block1_conv2").get_weights()
    np.testing.assert_array_equal(kernel, folded[-1][0])


def test_a_changed_weights_file_is_refused_before_the_model_is_built(installed_weights) -> None:
    weights, _ = installed_weights
    weights.write_bytes(weights.read_bytes()[:-1])
    with pytest.raises(face_resnet.DlibWeightsError, match=r"is not the expected dlib weights file.*--force-reinstall"):
        build_model("face_resnet", 7, crop_size=44, weights="dlib")


def test_missing_weights_package_names_the_install_command(monkeypatch) -> None:
    monkeypatch.setattr(face_resnet.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(face_resnet.DlibWeightsError, match=r"pip install face_recognition_models==0\.3\.0"):
        face_resnet.dlib_weights_path()


def test_sums_of_different_sizes_zero_pad_the_bottom_right_and_the_last_channels(rng) -> None:
    # dlib adds a 3x3x2 tensor to a 4x4x4 one as if the smaller were zero-padded after its last row,
    # column and channel.
    small = rng.normal(size=(1, 3, 3, 2)).astype("float32")
    inputs = keras.Input((3, 3, 2))
    padded = keras.Model(inputs, face_resnet._pad_to(inputs, 4, 4, 4, "test"))(small)
    expected = np.zeros((1, 4, 4, 4), "float32")
    expected[:, :3, :3, :2] = small
    np.testing.assert_allclose(padded, expected, atol=1e-6)


def test_training_leaves_the_channel_padding_fixed(rng) -> None:
    seed_everything(0)
    model = build_model("face_resnet", 7, crop_size=44)
    compile_model(model, 1e-2)
    pads = [layer for layer in model.layers if layer.name.endswith("_pad_channels")]
    assert len(pads) == 3  # 32->64, 64->128 and 128->256 channels
    model.fit(rng.integers(0, 256, (4, 48, 48, 1)).astype("float32"), one_hot(np.arange(4), 7), verbose=0)
    for layer in pads:
        (kernel,) = layer.get_weights()
        np.testing.assert_array_equal(kernel[0, 0], np.eye(*kernel.shape[2:]))
