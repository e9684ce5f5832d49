"""Clean accuracy against robustness: the same recipe trained with and without noise/blur augmentation.

    PYTHONPATH=src python benchmarks/corruption_tradeoff.py data/processed/dataset.npz \
        --arch seed_cnn_compact --epochs 6 --probabilities 0 0.5 --out benchmarks/results/corruption_tradeoff.csv

Trains one model per `train.corruption_augment` probability with the pipeline's own training
code (Adam 1e-3, batch 64, geometric augmentation, the validation split picks the best epoch),
then measures test accuracy clean and under Gaussian noise and blur at every severity of the
robustness suite. The CSV starts with '# ' lines that say the data, recipe and machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from ferflow.runtime import start_backend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path, help="the preprocess stage's dataset.npz")
    parser.add_argument("--arch", default="seed_cnn_compact")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--probabilities", type=float, nargs="+", default=[0.0, 0.5])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/corruption_tradeoff.csv"))
    args = parser.parse_args()
    start_backend()
    import numpy as np
    import pandas as pd

    from ferflow.evaluate import predict_proba
    from ferflow.io import sha256_file, write_text
    from ferflow.models import build_model, make_augmentation
    from ferflow.preprocess import load_processed
    from ferflow.robustness import corrupt
    from ferflow.runtime import environment_info, seed_everything
    from ferflow.train import TrainingBatches, compile_model, fit_resumable, training_callbacks

    data = load_processed(args.dataset)
    x_test, y_test = data.x["test"], data.y["test"]
    rows = []
    for probability in args.probabilities:
        seed_everything(args.seed)
        model = build_model(args.arch, len(data.class_names), make_augmentation(args.seed))
        compile_model(model, 1e-3)
        batches = TrainingBatches(data.x["train"], data.y["train"], len(data.class_names), args.batch_size,
                                  args.seed, corruption_probability=probability)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as checkpoints:
            model, _, _ = fit_resumable(model, batches, data.x["val"], data.y["val"], args.epochs, checkpoints,
                                        f"tradeoff-{probability}", "val_accuracy",
                                        training_callbacks("val_accuracy", args.epochs, "plateau", 2, 0.5))
        row = {"corruption_augment": probability, "train_seconds": round(time.perf_counter() - start, 1)}
        accuracy = lambda images: float((predict_proba(model, images).argmax(axis=1) == y_test).mean())  # noqa: E731
        row["clean"] = accuracy(x_test)
        for name in ("gaussian_noise", "gaussian_blur"):
            for severity in (1, 2, 3):
                row[f"{name}_{severity}"] = accuracy(corrupt(x_test, name, severity, args.seed))
        print(row, flush=True)
        rows.append(row)
    environment = environment_info()
    header = (f"# data: {args.dataset} (sha256 {sha256_file(args.dataset)[:12]}), "
              f"{len(data.y['train'])} train / {len(y_test)} test faces\n"
              f"# recipe: {args.arch}, Adam 1e-3, batch {args.batch_size}, {args.epochs} epochs, seed {args.seed}; "
              f"columns <corruption>_<severity>: noise sigma 0.05/0.1/0.2, blur sigma 0.5/1/1.5 px\n"
              f"# machine: {environment['platform']}, {environment['cpu_count']} CPUs, "
              f"Keras {environment['keras']} on {environment['keras_backend']}\n")
    write_text(args.out, header + pd.DataFrame(rows).to_csv(index=False))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
