"""Training throughput (faces/s): the bare model step against the real training input.

    PYTHONPATH=src python benchmarks/throughput.py --archs vgg_half resnet_half \\
        --out benchmarks/results/throughput_cpu.json
    python benchmarks/throughput.py --archs vgg_half --cpu-bfloat16   # bfloat16 on a CPU with AMX

For each architecture, on random faces:
- `bare`: `train_on_batch` on in-memory arrays, after warm-up steps (the model step alone);
- `pipeline`: `model.fit` over the training `TrainingBatches` with the augmentation of the
  CPU recipe (random 44 px crops, flips, erasing 0.3, noise on half the faces), as the
  train stage runs it, timed from the end of the 3rd batch to the end of the last (steady
  state: the start-up of each `fit` call is left out, as it is once per epoch in training);
- `geometric`: the same, plus the rotation and zoom layers (`train.geometric_augment`).

The input pipeline's cost is 1 - pipeline / bare. Run it alone: two jobs on 2 cores halve
each other's speed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ferflow.runtime import environment_info, start_backend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["vgg_half"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--crop-size", type=int, default=44)
    parser.add_argument(
        "--cpu-bfloat16",
        action="store_true",
        help="train.cpu_bfloat16: bfloat16 compute where the CPU has AMX (TensorFlow)",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    start_backend()
    import keras
    import numpy as np

    from ferflow.pipeline.params import check, read_section
    from ferflow.runtime import use_mixed_precision
    from ferflow.training.recipe import build_training
    from ferflow.training.train import one_hot

    dtype_policy = use_mixed_precision(False, args.cpu_bfloat16)

    rng = np.random.default_rng(0)
    faces = args.batch_size * args.steps
    x = rng.integers(0, 256, size=(faces, 48, 48)).astype(np.uint8)
    y = np.arange(faces) % 7
    # The cpu preset's augmentation and optimizer, built as the train stage builds them.
    recipe = {"crop_size": args.crop_size, "batch_size": args.batch_size, "seed": 0, "weights": "none"}
    recipe |= {"flip": True, "random_erasing": 0.3, "noise_augment": 0.5, "noise_max_sigma": 0.15, "mixup_alpha": 0.0}
    recipe |= {"optimizer": "sgd", "learning_rate": 0.01, "weight_decay": 5e-4, "label_smoothing": 0.1}
    base = {**read_section("train"), **recipe}

    def training_for(arch: str, geometric: bool):
        return build_training(check("train", {**base, "arch": arch, "geometric_augment": geometric}), x, y, 7)

    augmentation = training_for(args.archs[0], False).augmentation
    batch = x[: args.batch_size, ..., None].astype("float32")
    start = time.perf_counter()
    for _ in range(args.steps):
        augmentation(batch, rng)
    augment_ms = (time.perf_counter() - start) / args.steps * 1000
    results = {
        "environment": {k: str(v) for k, v in environment_info().items()},
        "batch_size": args.batch_size,
        "crop_size": args.crop_size,
        "dtype_policy": dtype_policy,
        "augmentation_ms_per_batch": round(augment_ms, 2),
        "faces_per_second": {},
    }
    print(f"augmentation alone: {augment_ms:.1f} ms per batch of {args.batch_size}", flush=True)

    class BatchEnds(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.times: list[float] = []

        def on_train_batch_end(self, batch, logs=None) -> None:
            self.times.append(time.perf_counter())

    for arch in args.archs:
        model = training_for(arch, False).model
        labels = one_hot(y[: args.batch_size], 7)
        for _ in range(3):
            model.train_on_batch(batch, labels)
        start = time.perf_counter()
        for _ in range(args.steps):
            model.train_on_batch(batch, labels)
        bare = args.steps * args.batch_size / (time.perf_counter() - start)
        row = {"bare": round(bare, 1)}
        for name, geometric in (("pipeline", False), ("geometric", True)):
            training = training_for(arch, geometric)
            model, batches = training.model, training.batches
            model.fit(batches, epochs=1, steps_per_epoch=3, verbose=0)  # warm-up and compilation
            ends = BatchEnds()
            model.fit(batches, epochs=1, verbose=0, callbacks=[ends])
            steady = ends.times[2:]
            row[name] = round((len(steady) - 1) * args.batch_size / (steady[-1] - steady[0]), 1)
        row["input_pipeline_cost"] = round(1 - row["pipeline"] / row["bare"], 3)
        results["faces_per_second"][arch] = row
        print(arch, row, flush=True)
    text = json.dumps(results, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
