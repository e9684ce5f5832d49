"""Has a pretrained backbone seen FER-2013's faces? A linear probe on its frozen features.

    python benchmarks/contamination_probe.py --data RUN/data/processed/dataset.npz \
        --out benchmarks/results/pretrained_run/contamination_probe.json

The backbone (`face_resnet` with dlib's weights, untrained head) turns each face's centre crop into
its 256 pooled features. A logistic regression fitted on some training faces is scored on other
training faces, on validation and on test/. A backbone that had been trained on test/ faces would
make them easier than the other two; similar scores mean no sign of that. Only the untouched
backbone is used, so nothing here is chosen by looking at test/.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ferflow.pipeline.ensemble import recorded_path
from ferflow.runtime import environment_info, start_backend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the preprocess stage's dataset.npz")
    parser.add_argument("--fit", type=int, default=5000, help="training faces the probe is fitted on")
    parser.add_argument("--held-out", type=int, default=2500, help="other training faces it is scored on")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    start_backend()
    import keras
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from ferflow.data.processed import load_processed
    from ferflow.io import write_json
    from ferflow.model.registry import build_model

    data = load_processed(args.data)
    model = build_model("face_resnet", len(data.class_names), crop_size=44, weights="dlib")
    backbone = keras.Model(model.input, model.get_layer("pool").output)

    def features(x):
        return backbone.predict(x[..., None].astype("float32"), batch_size=128, verbose=0)

    order = np.random.default_rng(0).permutation(len(data.y["train"]))
    fit, held = order[: args.fit], order[args.fit : args.fit + args.held_out]
    scaler = StandardScaler().fit(features_fit := features(data.x["train"][fit]))
    probe = LogisticRegression(max_iter=2000, C=0.1).fit(scaler.transform(features_fit), data.y["train"][fit])

    def accuracy(x, y) -> float:
        return round(float((probe.predict(scaler.transform(features(x))) == y).mean()), 4)

    scores = {
        "train_fitted": accuracy(data.x["train"][fit], data.y["train"][fit]),
        "train_held_out": accuracy(data.x["train"][held], data.y["train"][held]),
        "val": accuracy(data.x["val"], data.y["val"]),
        "test": accuracy(data.x["test"], data.y["test"]),
    }
    print(scores)
    if args.out:
        write_json(
            args.out,
            {
                "environment": {k: str(v) for k, v in environment_info().items()},
                "data": recorded_path(args.data),
                "backbone": "face_resnet, weights=dlib (face_recognition_models 0.3.0), frozen",
                "probe": "logistic regression, C=0.1, on standardised 256 pooled features of the centre 44 px crop",
                "faces": {
                    "fit": len(fit),
                    "train_held_out": len(held),
                    "val": len(data.y["val"]),
                    "test": len(data.y["test"]),
                },
                "accuracy": scores,
            },
        )


if __name__ == "__main__":
    main()
