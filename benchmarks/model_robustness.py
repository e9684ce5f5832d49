"""The robustness stage's measurement for any model file, e.g. an ensemble built outside the pipeline.

    PYTHONPATH=src python benchmarks/model_robustness.py src/ferflow/assets/fer2013_ensemble.json \
        --data RUN/data/processed/dataset.npz --split test --out benchmarks/results/ensemble/robustness_test.json

Same corruptions, severities and seed as the `robustness` section of params.yaml, same code
(`ferflow.evaluation.robustness`), same summary as `results/robustness.json`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from ferflow.pipeline.ensemble import recorded_path
from ferflow.runtime import start_backend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a model with its .json sidecar, or an ensemble's ONNX card")
    parser.add_argument("--data", type=Path, required=True, help="the preprocess stage's dataset.npz")
    parser.add_argument("--split", default="test")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="read for its robustness section")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    start_backend()

    from ferflow.data.processed import load_processed
    from ferflow.evaluation.evaluate import predict_proba
    from ferflow.evaluation.robustness import robustness_table, summarise
    from ferflow.faces.predict import load_classifier
    from ferflow.io import write_json
    from ferflow.pipeline.params import check

    settings = check("robustness", yaml.safe_load(args.params.read_text(encoding="utf-8"))["robustness"])
    classifier = load_classifier(args.model)
    data = load_processed(args.data)
    if data.class_names != classifier.class_names:
        raise SystemExit(
            f"error: '{args.data}' names {list(data.class_names)}, the model {list(classifier.class_names)}"
        )
    images, labels = data.x[args.split], data.y[args.split]
    table = robustness_table(
        lambda faces: predict_proba(classifier.model, faces).argmax(axis=1),
        images,
        labels,
        list(settings.corruptions),
        settings.seed,
    )
    summary = summarise(table, data.class_names)
    summary.update(model=recorded_path(args.model), split=args.split, n_samples=int(len(labels)))
    write_json(args.out, summary)
    print(
        f"{args.split}: clean {summary['clean_accuracy']:.4f}, "
        f"mean corruption {summary['mean_corruption_accuracy']:.4f}, "
        + ", ".join(
            f"noise {k} {v['accuracy']:.4f} (drop {v['drop']:.4f})"
            for k, v in summary.get("gaussian_noise", {}).items()
        )
    )


if __name__ == "__main__":
    main()
