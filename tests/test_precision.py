"""Mixed precision: which policy a request gives, and the float32 copy that is saved."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from ferflow import runtime
from ferflow.io import save_model
from ferflow.model.registry import build_model, in_float32, make_augmentation

AMX_FLAGS = "flags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n"
NO_AMX_FLAGS = "flags\t\t: fpu sse avx2 avx512f avx512_bf16\n"


@pytest.fixture(autouse=True)
def float32_after_each_test():
    yield
    keras.config.set_dtype_policy("float32")  # the policy is global: leave it as other tests expect


@pytest.mark.parametrize(
    "flags, expected", [(AMX_FLAGS, True), (NO_AMX_FLAGS, False), ("processor\t: 0\nflags\t\t: fpu amx_bf16x\n", False)]
)
def test_amx_is_read_from_the_cpu_flags(tmp_path, flags, expected) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: a CPU\n" + flags)
    assert runtime.cpu_has_amx_bf16(str(cpuinfo)) is expected


def test_unreadable_cpu_flags_mean_no_amx(tmp_path) -> None:
    assert runtime.cpu_has_amx_bf16(str(tmp_path / "missing")) is False


@pytest.mark.parametrize(
    "requested, cpu_bfloat16, amx, expected",
    [
        (False, False, True, "float32"),
        (True, False, True, "float32"),  # float16 is for GPUs; there is none here
        (False, True, False, "float32"),  # bfloat16 without AMX is not used
        (False, True, True, "mixed_bfloat16"),
    ],
)
def test_policy_on_a_cpu(monkeypatch, requested, cpu_bfloat16, amx, expected) -> None:
    if keras.config.backend() != "tensorflow" and expected == "mixed_bfloat16":
        expected = "float32"  # bfloat16 on a CPU is only used (and measured) on TensorFlow
    monkeypatch.setattr(runtime, "cpu_has_amx_bf16", lambda: amx)
    assert runtime.use_mixed_precision(requested, cpu_bfloat16) == expected
    assert keras.config.dtype_policy().name == expected


def test_float32_copy_of_a_bfloat16_model(tmp_path, rng) -> None:
    keras.config.set_dtype_policy("mixed_bfloat16")
    model = build_model("vgg_quarter", 7, augmentation=make_augmentation(0), crop_size=44)
    assert model.get_layer("stage1_conv1").compute_dtype == "bfloat16"
    copy = in_float32(model)
    # the containers (input, augmentation block) compute nothing themselves: their layers do
    computing = (keras.Sequential, keras.layers.InputLayer)
    inner = [layer for layer in copy.layers if not isinstance(layer, computing)]
    inner += copy.get_layer("augmentation").layers
    assert {layer.compute_dtype for layer in inner} == {"float32"}
    for a, b in zip(model.get_weights(), copy.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    x = rng.integers(0, 256, size=(4, 48, 48, 1)).astype("float32")
    float32_out = copy.predict(x, verbose=0)
    assert float32_out.dtype == np.float32
    # bfloat16 keeps 8 bits of mantissa: the two agree to about 1e-2, not to float32's last bits
    np.testing.assert_allclose(float32_out, model.predict(x, verbose=0), atol=2e-2)

    keras.config.set_dtype_policy("float32")
    path = tmp_path / "model.keras"
    save_model(copy, path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert {layer.compute_dtype for layer in loaded.layers if not isinstance(layer, computing)} == {"float32"}
    np.testing.assert_allclose(loaded.predict(x, verbose=0), float32_out, rtol=1e-5, atol=1e-6)
