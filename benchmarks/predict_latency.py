"""`fer predict` speed on CPU: one photo end to end, and batched throughput on face crops.

    python benchmarks/predict_latency.py --model models/pretrained/fer2013.keras --repeats 50

End to end = read the file (PNG, and JPEG), detect faces (the default detector at its
default size), crop, classify: what one call of `ferflow.faces.predict.predict_paths` costs per photo once the model is
loaded (model loading is timed separately). The photo is scikit-image's astronaut portrait
resized to 640x480 (one face), the size the photo-tool targets are stated for; detection
alone is timed on the same photo. Throughput = `classify_faces` alone on 48x48 crops from
data/sample, batched as `fer predict` batches the faces of a folder, timed after a warm-up
run of the same call (the first call at a new batch shape compiles the predict step).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=256, help="faces per model call")
    parser.add_argument("--faces", type=int, default=2048, help="sample crops classified per round")
    args = parser.parse_args()

    import cv2
    from skimage import data as skimage_data

    from ferflow.faces.detectors import DEFAULT_DETECTOR, detect_faces
    from ferflow.faces.predict import (
        DEFAULT_MODEL,
        PredictOptions,
        classify_faces,
        face_detector,
        load_classifier,
        predict_paths,
    )
    from ferflow.runtime import environment_info

    start = time.perf_counter()
    classifier = load_classifier(args.model or DEFAULT_MODEL)
    load_seconds = time.perf_counter() - start
    results: dict = {
        "model": str(classifier.path),
        "model_load_s": round(load_seconds, 3),
        "detector": DEFAULT_DETECTOR,
        "detect_size": face_detector().detect_size,
        "photo": "astronaut 640x480",
    }
    photo_rgb = cv2.resize(skimage_data.astronaut(), (640, 480), interpolation=cv2.INTER_AREA)
    with tempfile.TemporaryDirectory() as folder:
        # PNG (lossless, the figure reported so far) and JPEG at OpenCV's default quality 95,
        # what most photos are: PNG takes about 3 ms longer to decode at this size.
        for suffix, tta, key in (
            (".png", False, "single_photo_ms"),
            (".png", True, "single_photo_tta_ms"),
            (".jpg", False, "single_photo_jpeg_ms"),
        ):
            photo = Path(folder) / f"astronaut{suffix}"
            cv2.imwrite(str(photo), cv2.cvtColor(photo_rgb, cv2.COLOR_RGB2BGR))
            options = PredictOptions(tta=tta)
            predict_paths([photo], classifier, options)  # warm-up: compiles the predict step
            timings = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                result = predict_paths([photo], classifier, options)
                timings.append((time.perf_counter() - start) * 1000)
            assert len(result.faces) == 1, "the astronaut photo should give one face"
            results[f"{key}_p50"] = round(float(np.percentile(timings, 50)), 2)
            results[f"{key}_p95"] = round(float(np.percentile(timings, 95)), 2)
    detector = face_detector()
    detect_faces(photo_rgb, detector)  # warm-up
    timings = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        detect_faces(photo_rgb, detector)
        timings.append((time.perf_counter() - start) * 1000)
    results["detection_only_ms_p50"] = round(float(np.percentile(timings, 50)), 2)
    sample = Path(__file__).resolve().parents[1] / "data" / "sample"
    paths = sorted(sample.rglob("*.jpg"))[: args.faces]
    faces = np.stack([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in paths])
    classify_faces(classifier, faces, tta=False, batch_size=args.batch_size)  # warm-up: the same shapes
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        classify_faces(classifier, faces, tta=False, batch_size=args.batch_size)
        rounds.append(time.perf_counter() - start)
    seconds = statistics.median(rounds)
    results["batched_faces_per_s"] = round(len(faces) / seconds, 1)
    results["batched_ms_per_face"] = round(seconds * 1000 / len(faces), 3)
    results["batch_size"] = args.batch_size
    results["faces"] = len(faces)
    environment = environment_info()
    results["machine"] = (
        f"{environment['platform']}, {environment['cpu_count']} CPUs, "
        f"Keras {environment['keras']} on {environment['keras_backend']}"
    )
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
