"""`fer predict` speed on CPU: one photo end to end, and batched throughput on face crops.

    python benchmarks/predict_latency.py --model models/pretrained/fer2013.keras --repeats 50

End to end = read the file, detect faces (the default detector), crop, classify: what one call of
`ferflow.predict.predict_paths` costs per photo once the model is loaded (model loading is
timed separately). The photo is scikit-image's astronaut portrait (512x512, one face).
Throughput = classification alone on 48x48 crops from data/sample in batches.
One seed project reports 6.8 ms per face; compare with `single_photo_ms_p50`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()

    import cv2
    from skimage import data as skimage_data

    from ferflow.predict import DEFAULT_MODEL, PredictOptions, face_detector, load_classifier, predict_paths
    from ferflow.runtime import environment_info

    start = time.perf_counter()
    classifier = load_classifier(args.model or DEFAULT_MODEL)
    load_seconds = time.perf_counter() - start
    results: dict = {"model": str(classifier.path), "model_load_s": round(load_seconds, 3)}
    with tempfile.TemporaryDirectory() as folder:
        photo = Path(folder) / "astronaut.png"
        cv2.imwrite(str(photo), cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR))
        for tta in (False, True):
            options = PredictOptions(tta=tta)
            predict_paths([photo], classifier, options)  # warm-up: compiles the predict step
            timings = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                result = predict_paths([photo], classifier, options)
                timings.append((time.perf_counter() - start) * 1000)
            assert len(result.faces) == 1, "the astronaut photo should give one face"
            key = "single_photo_tta_ms" if tta else "single_photo_ms"
            results[f"{key}_p50"] = round(float(np.percentile(timings, 50)), 2)
            results[f"{key}_p95"] = round(float(np.percentile(timings, 95)), 2)
        grey = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2GRAY)
        detector = face_detector()
        start = time.perf_counter()
        for _ in range(args.repeats):
            detector.detectMultiScale(cv2.equalizeHist(grey), scaleFactor=1.1, minNeighbors=5, minSize=(30, 30))
        results["detection_only_ms"] = round((time.perf_counter() - start) * 1000 / args.repeats, 2)
    sample = Path(__file__).resolve().parents[1] / "data" / "sample"
    faces = np.stack([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted(sample.rglob("*.jpg"))[:args.batch_size]])
    x = faces[..., None].astype("float32")
    classifier.model.predict_on_batch(x)  # compile for this shape
    start = time.perf_counter()
    rounds = 5
    for _ in range(rounds):
        classifier.model.predict_on_batch(x)
    seconds = time.perf_counter() - start
    results["batched_faces_per_s"] = round(rounds * len(x) / seconds, 1)
    results["batched_ms_per_face"] = round(seconds * 1000 / (rounds * len(x)), 3)
    results["batch_size"] = len(x)
    environment = environment_info()
    results["machine"] = f"{environment['platform']}, {environment['cpu_count']} CPUs, " \
                         f"Keras {environment['keras']} on {environment['keras_backend']}"
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
