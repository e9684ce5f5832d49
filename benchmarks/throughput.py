"""Training throughput (images/s) of registered architectures on this machine's Keras backend.

    PYTHONPATH=src python benchmarks/throughput.py --archs seed_cnn vgg --batch-size 64 --steps 20

Times `train_on_batch` on random faces after two warm-up steps (compilation); the figure is
the steady-state speed of forward, backward and update, without the input pipeline.
"""

from __future__ import annotations

import argparse
import json
import time

from ferflow.runtime import environment_info, seed_everything, start_backend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["seed_cnn"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--crop-size", type=int, default=0)
    parser.add_argument("--mixed-precision", action="store_true")
    args = parser.parse_args()
    start_backend()
    import numpy as np

    from ferflow.models import build_model, make_augmentation
    from ferflow.runtime import use_mixed_precision
    from ferflow.train import compile_model, one_hot

    mixed = use_mixed_precision(args.mixed_precision)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(args.batch_size, 48, 48, 1)).astype("float32")
    y = one_hot(np.arange(args.batch_size) % 7, 7)
    results = {"environment": {k: str(v) for k, v in environment_info().items()}, "mixed_precision": mixed,
               "batch_size": args.batch_size, "images_per_second": {}}
    for arch in args.archs:
        seed_everything(0)
        model = build_model(arch, 7, make_augmentation(0, crop_size=args.crop_size), crop_size=args.crop_size)
        compile_model(model, 1e-3)
        for _ in range(2):
            model.train_on_batch(x, y)
        start = time.perf_counter()
        for _ in range(args.steps):
            model.train_on_batch(x, y)
        seconds = time.perf_counter() - start
        results["images_per_second"][arch] = round(args.steps * args.batch_size / seconds, 1)
        print(arch, results["images_per_second"][arch], "images/s", flush=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
