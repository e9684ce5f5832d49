"""Seeding, determinism and a description of the machine a stage ran on."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Iterator
from contextlib import contextmanager


def configure_determinism() -> None:
    """Ask the backend for deterministic kernels; call before Keras is imported.

    TensorFlow reads TF_DETERMINISTIC_OPS at start-up; the other backends are
    deterministic on CPU already. Environment variables keep this backend-agnostic.
    """
    os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out of reports


@contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send what native code writes to file descriptor 2 to /dev/null for a while.

    TensorFlow's C++ start-up notes (oneDNN, a missing CUDA driver) ignore
    TF_CPP_MIN_LOG_LEVEL and would otherwise land in every report. Python errors still raise.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def start_backend() -> str:
    """Configure determinism, then load Keras and its backend quietly; return the backend name."""
    configure_determinism()
    with native_stderr_silenced():
        import keras

        keras.ops.convert_to_numpy(keras.ops.ones(1))  # the backend finds its devices here
    return keras.config.backend()


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and the Keras backend in one call."""
    import keras

    keras.utils.set_random_seed(int(seed))


def environment_info() -> dict[str, object]:
    """Keras backend, library versions and devices, for reports and the model sidecar."""
    import keras
    import numpy

    info: dict[str, object] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_count": os.cpu_count(),
        "keras": keras.__version__,
        "keras_backend": keras.config.backend(),
        "numpy": numpy.__version__,
    }
    backend = keras.config.backend()
    try:
        module = __import__({"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend])
        info[f"{backend}_version"] = module.__version__
    except (KeyError, ImportError):
        pass
    try:
        info["devices"] = keras.distribution.list_devices()
    except Exception as error:  # noqa: BLE001 - device listing is informative only
        info["devices"] = [f"unknown ({error})"]
    return info


def cpu_has_amx_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (Intel AMX, Sapphire Rapids on).

    Read from the Linux CPU flags; False where they cannot be read (other systems).
    """
    try:
        with open(cpuinfo, encoding="utf-8") as file:
            return any(line.startswith("flags") and "amx_bf16" in line.split() for line in file)
    except OSError:
        return False


def use_mixed_precision(requested: bool, cpu_bfloat16: bool = False) -> str:
    """Set Keras's dtype policy for training; return its name.

    - `requested` and a GPU: float16 compute with float32 variables (`mixed_float16`).
    - `cpu_bfloat16` on the TensorFlow backend and a CPU with AMX: bfloat16 compute with float32
      variables (`mixed_bfloat16`); oneDNN runs the convolutions on the AMX tiles, faster than
      float32 (docs/full-data.md has the measured faces/s).
    - otherwise float32: float16 on a CPU is slower and less accurate, and bfloat16 without
      AMX (or through XLA on JAX, or on PyTorch) was not measured here.

    Call before building the model.
    """
    import keras

    try:
        gpu = bool(keras.distribution.list_devices("gpu"))
    except Exception:  # noqa: BLE001 - a backend without device listing has no GPU for us
        gpu = False
    if requested and gpu:
        policy = "mixed_float16"
    elif cpu_bfloat16 and not gpu and keras.config.backend() == "tensorflow" and cpu_has_amx_bf16():
        policy = "mixed_bfloat16"
    else:
        policy = "float32"
    keras.config.set_dtype_policy(policy)
    return policy


def data_parallel_devices() -> int:
    """How many devices each batch is split over: 1 unless `use_data_parallel` set a distribution.
    Every batch must then hold a multiple of this many faces (JAX shards a batch evenly)."""
    import keras

    distribution = keras.distribution.distribution() if keras.config.backend() == "jax" else None
    return int(distribution.device_mesh.devices.size) if distribution is not None else 1


def use_data_parallel() -> int:
    """Spread each batch over every device Keras sees when it sees several.

    keras.distribution.DataParallel replicates the model on every device and splits each batch
    between them; Keras 3 implements it for the JAX backend. The devices are those of JAX's
    default platform: the GPUs of a multi-GPU machine, or the virtual CPU devices that
    XLA_FLAGS=--xla_force_host_platform_device_count=N makes (how the tests run this path
    without a GPU). Returns the number of devices used (1: one device, no distribution set).
    """
    import keras

    if keras.config.backend() != "jax":
        return 1
    devices = keras.distribution.list_devices()
    if len(devices) < 2:
        return 1
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    return len(devices)
