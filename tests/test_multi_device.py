"""Keras's data-parallel training, as the train stage sets it up (`ferflow.runtime.use_data_parallel`),
on two virtual CPU devices of JAX: the same loss curve as one device, and a saved model that
loads and predicts the same. No GPU needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import REPO

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from ferflow.runtime import start_backend, use_data_parallel
    start_backend()
    import keras, numpy as np
    from ferflow.io import save_model
    from ferflow.pipeline.params import check, read_section
    from ferflow.training.recipe import build_training
    from ferflow.training.train import fit_resumable

    parallel = sys.argv[1] == "parallel"
    devices = use_data_parallel() if parallel else 1
    rng = np.random.default_rng(0)
    faces = int(sys.argv[4])
    x = rng.integers(0, 256, (faces, 48, 48)).astype(np.uint8)
    y = np.arange(faces) % 7
    x_val, y_val = x[: faces // 4], y[: faces // 4]
    recipe = {"arch": "seed_cnn_compact", "weights": "none", "epochs": 3, "batch_size": 16, "seed": 3,
              "optimizer": "sgd", "learning_rate": 0.01, "weight_decay": 0.0, "schedule": "cosine",
              "warmup_epochs": 0, "label_smoothing": 0.0, "crop_size": 44, "flip": True, "random_erasing": 0.3,
              "noise_augment": 0.5, "mixup_alpha": 0.0, "geometric_augment": False, "mixed_precision": False}
    p = check("train", {**read_section("train", sys.argv[3]), **recipe})
    training = build_training(p, x, y, 7)
    model, history, _ = fit_resumable(training.model, training.batches, x_val, y_val, 3, sys.argv[2] + ".checkpoints",
                                      "fingerprint", "val_loss", [], restore_best=False)
    save_model(model, sys.argv[2])
    print(json.dumps({"devices": devices, "seen": len(keras.distribution.list_devices()),
                      "loss": history["loss"], "batches": len(training.batches),
                      "last_batch": len(training.batches[len(training.batches) - 1][0]),
                      "probabilities": model.predict_on_batch(x[:8, ..., None].astype("float32")).tolist()}))
    """
)


def train(how: str, model_path, faces: int = 64, **env: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, how, str(model_path), str(REPO), str(faces)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO / "src"), "KERAS_BACKEND": "jax", **env},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[dict, dict, object]:
    folder = tmp_path_factory.mktemp("devices")
    two_devices = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    single = train("single", folder / "one.keras", **two_devices)  # two devices seen, one used
    parallel = train("parallel", folder / "two.keras", **two_devices)
    return single, parallel, folder


def test_two_virtual_devices_train_like_one(runs) -> None:
    single, parallel, _ = runs
    assert single["seen"] == parallel["seen"] == 2
    assert (single["devices"], parallel["devices"]) == (1, 2)  # the train stage's choice: every device seen
    np.testing.assert_allclose(parallel["loss"], single["loss"], rtol=1e-4)
    assert max(single["loss"]) - min(single["loss"]) > 1e-3  # the weights moved: not a comparison of constants
    np.testing.assert_allclose(parallel["probabilities"], single["probabilities"], atol=1e-5)


def test_a_model_trained_on_two_devices_loads_and_predicts_the_same_on_one(runs) -> None:
    _, parallel, folder = runs
    code = (
        "import json, sys, numpy as np; from ferflow.runtime import start_backend; start_backend(); import keras; "
        "m = keras.saving.load_model(sys.argv[1], safe_mode=True, compile=False); "
        "x = np.random.default_rng(0).integers(0, 256, (64, 48, 48)).astype(np.uint8)[:8, ..., None]; "
        "print(json.dumps(m.predict_on_batch(x.astype('float32')).tolist()))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(folder / "two.keras")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO / "src"), "KERAS_BACKEND": "jax"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    np.testing.assert_allclose(json.loads(done.stdout.strip().splitlines()[-1]), parallel["probabilities"], atol=1e-5)


def test_a_batch_that_does_not_split_evenly_is_cut_not_a_crash(tmp_path) -> None:
    """61 faces in batches of 16: the last batch of 13 is cut to 12 for two devices (JAX refuses
    to shard 13 faces over 2), and the 15 validation faces to 14."""
    two_devices = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    parallel = train("parallel", tmp_path / "odd.keras", faces=61, **two_devices)
    single = train("single", tmp_path / "odd_single.keras", faces=61, **two_devices)
    assert (parallel["batches"], parallel["last_batch"]) == (4, 12)
    assert (single["batches"], single["last_batch"]) == (4, 13)  # one device: nothing cut
    assert all(np.isfinite(parallel["loss"]))
