"""Recipe study: validation accuracy per epoch for candidate CPU recipes on the full data.

    PYTHONPATH=src python benchmarks/recipe_study.py --source /path/to/fer2013 --epochs 10 \
        --candidates vgg_half vgg_half_noise resnet_half_noise vgg_half_adamw_noise

Each candidate trains on the source's train split minus a stratified validation share
(`--val-fraction`, carved with the pipeline's own dedup and split code, `split.strategy:
official`), with a cosine schedule over `--epochs`. The source's test split is never loaded
into a model here: choices are made on validation accuracy alone. After every epoch a row
(candidate, epoch, val accuracy, val loss, train loss, seconds) is appended to
`<out>/curves.csv`; at the end, validation accuracy with ten-crop and under Gaussian noise
sigma 0.1 goes to `<out>/summary.csv`. Candidates are resumable (checkpoints under `<out>/`),
so a killed study carries on where it stopped. Wall-clock seconds are noisy on shared
machines: CPU minutes are reported from a separate quiet throughput measurement.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

# A candidate is the study's base recipe with a few train params changed, and a note; it is
# built by the train stage's own `build_training` from the checked params.
BASE_RECIPE = {
    "optimizer": "sgd",
    "learning_rate": 0.05,
    "weight_decay": 5e-4,
    "batch_size": 128,
    "label_smoothing": 0.1,
    "warmup_epochs": 1,
    "schedule": "cosine",
    "crop_size": 44,
    "flip": True,
    "random_erasing": 0.3,
    "noise_augment": 0.0,
    "noise_max_sigma": 0.15,
    "mixup_alpha": 0.0,
    "geometric_augment": False,  # Keras rotation/shift/zoom layers inside the model
    "weights": "none",
}
CANDIDATES: dict[str, tuple[dict, str]] = {
    "vgg_half": ({"arch": "vgg_half"}, "the calibration recipe: SGD-Nesterov, crops, flip, erasing"),
    "vgg_half_noise": ({"arch": "vgg_half", "noise_augment": 0.5}, "+ Gaussian noise on half the faces"),
    "resnet_half_noise": ({"arch": "resnet_half", "noise_augment": 0.5}, "residual network, same recipe"),
    "vgg_half_deep_noise": ({"arch": "vgg_half_deep", "noise_augment": 0.5}, "a third conv in stages 3-4"),
    "vgg_half_adamw_noise": (
        {"arch": "vgg_half", "optimizer": "adamw", "learning_rate": 2e-3, "weight_decay": 0.05, "noise_augment": 0.5},
        "AdamW instead of SGD",
    ),
    "vgg_half_geometric_noise": (
        {"arch": "vgg_half", "noise_augment": 0.5, "geometric_augment": True},
        "+ rotation 15 deg and zoom 10% as Keras layers",
    ),
    "vgg_half_mixup_noise": ({"arch": "vgg_half", "noise_augment": 0.5, "mixup_alpha": 0.2}, "+ mixup 0.2"),
}


def candidate_params(name: str, epochs: int, seed: int):
    """The checked train params of a candidate: params.yaml's train section, the base recipe, its changes."""
    from ferflow.pipeline.params import check, read_section

    changes, _ = CANDIDATES[name]
    return check("train", {**read_section("train"), **BASE_RECIPE, **changes, "epochs": epochs, "seed": seed})


def append_row(path: Path, row: dict) -> None:
    new = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True)
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/recipe_study"))
    args = parser.parse_args()

    from ferflow.runtime import start_backend

    start_backend()
    import keras
    import numpy as np

    from ferflow.data.folders import load_dataset
    from ferflow.data.preprocess import prepare
    from ferflow.evaluation.corruptions import gaussian_noise
    from ferflow.evaluation.evaluate import predict_proba, predict_tta
    from ferflow.training.recipe import build_training
    from ferflow.training.train import fit_resumable

    args.out.mkdir(parents=True, exist_ok=True)
    dataset = load_dataset(args.source)
    fractions = {"train": 1 - args.val_fraction, "val": args.val_fraction, "test": 0.0}
    data, _ = prepare(dataset, fractions, args.seed, strategy="official", blank_threshold=5.0)
    x_train, y_train = data.x["train"], data.y["train"]
    x_val, y_val = data.x["val"], data.y["val"]
    print(f"train {len(y_train)} faces, validation {len(y_val)} faces (test split not used)", flush=True)
    num_classes = len(data.class_names)
    done = set()
    summary_path = args.out / "summary.csv"
    if summary_path.exists():
        with summary_path.open() as handle:
            done = {row["candidate"] for row in csv.DictReader(handle) if int(row["epochs"]) == args.epochs}

    for name in args.candidates:
        if name in done:
            print(f"{name}: already in {summary_path}", flush=True)
            continue
        p = candidate_params(name, args.epochs, args.seed)
        training = build_training(p, x_train, y_train, num_classes)
        model, batches = training.model, training.batches
        curves = args.out / "curves.csv"

        class Rows(keras.callbacks.Callback):
            # Bound now: the callback runs while this candidate trains, not after the loop moved on.
            def __init__(self, candidate: str = name, path: Path = curves):
                super().__init__()
                self.candidate, self.path = candidate, path

            def on_epoch_begin(self, epoch, logs=None):
                self.start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                append_row(
                    self.path,
                    {
                        "candidate": self.candidate,
                        "epochs": args.epochs,
                        "epoch": epoch + 1,
                        "val_accuracy": round(float(logs["val_accuracy"]), 4),
                        "val_loss": round(float(logs["val_loss"]), 4),
                        "train_loss": round(float(logs["loss"]), 4),
                        "seconds": round(time.perf_counter() - self.start, 1),
                    },
                )

        start = time.perf_counter()
        model, history, _ = fit_resumable(
            model,
            batches,
            x_val,
            y_val,
            args.epochs,
            args.out / "checkpoints" / name,
            f"{name}-{args.epochs}",
            "val_accuracy",
            [],
            [Rows()],
            restore_best=False,
        )
        # The last epoch, as the cosine schedule intends, not the best one on validation.
        last = len(history["val_accuracy"]) - 1
        noisy = gaussian_noise(x_val[..., None], 0.1, np.random.default_rng(0))
        row = {
            "candidate": name,
            "epochs": args.epochs,
            "arch": p.arch,
            "params": model.count_params(),
            "val_accuracy_last": round(history["val_accuracy"][last], 4),
            "val_accuracy_best": round(max(history["val_accuracy"]), 4),
            "val_accuracy_tencrop": round(
                float(np.mean(predict_tta(model, x_val, "tencrop", p.crop_size).argmax(1) == y_val)), 4
            ),
            "val_accuracy_noise_0.1": round(float(np.mean(predict_proba(model, noisy).argmax(1) == y_val)), 4),
            "wall_seconds": round(time.perf_counter() - start, 1),
            "notes": CANDIDATES[name][1],
        }
        append_row(summary_path, row)
        print(row, flush=True)


if __name__ == "__main__":
    main()
