"""A short check of the GPU paths on a machine that has GPUs: a few epochs of the `full` preset's
recipe with mixed precision (and Keras data-parallel over every device when JAX sees several).

    python benchmarks/gpu_check.py --out benchmarks/results/gpu_check.json          # TensorFlow
    KERAS_BACKEND=jax python benchmarks/gpu_check.py --out ...                     # data-parallel

Trains the `full` preset's network (params/presets/full.yaml over params.yaml's train section)
on the embedded sample's faces for `--epochs` epochs, as the train stage builds it
(`build_training`), with the dtype policy and device spread the train stage picks
(`use_mixed_precision`, `use_data_parallel`). Prints the devices seen, the policy, faces/s of
the epochs after the first (which compiles), the loss per epoch and a one-line verdict:
"passed" when a GPU was used, the policy is mixed_float16 and the loss fell. Stops starting new
epochs after `--time-limit` seconds, so that it fits in the few minutes a lent machine gives.
On a machine without a GPU it runs on the CPU and its verdict says so.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--time-limit", type=float, default=360.0, help="seconds; no new epoch starts after it")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from ferflow.runtime import environment_info, start_backend, use_data_parallel, use_mixed_precision

    backend = start_backend()
    import keras

    from ferflow.data.folders import load_dataset
    from ferflow.io import write_json
    from ferflow.pipeline.params import check, read_section
    from ferflow.training.recipe import build_training

    full = yaml.safe_load((REPO / "params" / "presets" / "full.yaml").read_text())["train"]
    p = check("train", {**read_section("train", REPO), **full, "epochs": args.epochs})
    devices = keras.distribution.list_devices()
    spread = use_data_parallel()
    policy = use_mixed_precision(p.mixed_precision, p.cpu_bfloat16)
    data = load_dataset(REPO / "data" / "sample")
    images, labels = data.images, data.labels
    training = build_training(p, images, labels, len(data.class_names))

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.start)
            if time.perf_counter() - started > args.time_limit:
                self.model.stop_training = True

    seconds: list[float] = []
    started = time.perf_counter()
    history = training.model.fit(training.batches, epochs=p.epochs, callbacks=[Timer()], verbose=0)
    losses = [float(v) for v in history.history["loss"]]
    steady = seconds[1:] or seconds
    faces_per_second = len(images) * len(steady) / sum(steady)
    gpu = any(str(d).lower().startswith(("gpu", "cuda")) for d in devices)
    fell = len(losses) > 1 and losses[-1] < losses[0]
    verdict = (
        "passed" if gpu and policy == "mixed_float16" and fell else "not a GPU pass" if not gpu else "FAILED"
    ) + (
        f": {p.arch} on {len(devices)} device(s) ({spread} used for data parallelism, {backend}), {policy}, "
        f"{faces_per_second:,.0f} faces/s, loss {losses[0]:.3f} -> {losses[-1]:.3f} in {len(losses)} epochs"
    )
    result = {
        "verdict": verdict,
        "devices": [str(d) for d in devices],
        "data_parallel_devices": spread,
        "dtype_policy": policy,
        "arch": p.arch,
        "faces": len(images),
        "epoch_seconds": [round(s, 2) for s in seconds],
        "faces_per_second_after_the_first_epoch": round(faces_per_second, 1),
        "loss": losses,
        "environment": environment_info(),
    }
    print(json.dumps({k: v for k, v in result.items() if k != "environment"}, indent=1))
    print(verdict)
    if args.out:
        write_json(args.out, result, sort_keys=False)
    return 0 if verdict.startswith(("passed", "not a GPU")) else 1


if __name__ == "__main__":
    raise SystemExit(main())
