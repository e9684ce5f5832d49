"""How to frame a detected face before classifying it: margin and squareness, on photo-like grids.

    # choose on faces the model never trained on: the run's validation split
    python benchmarks/crop_framing.py --model models/pretrained/fer2013.keras \
        --faces RUN/data/processed/dataset.npz:val --out benchmarks/results/crop_framing_val.csv
    # then report the chosen framing once on the test folder
    python benchmarks/crop_framing.py --model models/pretrained/fer2013.keras \
        --faces /path/to/fer2013/test --margins 0.1 --shapes square --out benchmarks/results/crop_framing_test.csv

Each grid (see grids.py) is detected once with the default detector. Every face found is then
cut out with each framing (ferflow.faces.photo.crop_face), classified (centre crop, no TTA) and
scored against its label. The same faces, given as the 48x48 crops they came from, are the
reference: detection should cost at most 2 points against it.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
from grids import FACES, draw, grid, load_faces, match, write_csv

from ferflow.faces.detectors import DEFAULT_DETECTOR, detect_faces, face_detector
from ferflow.faces.photo import crop_face, to_grey
from ferflow.faces.predict import classify_faces, load_classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/pretrained/fer2013.keras"))
    parser.add_argument("--faces", required=True, help="a folder of <emotion>/*.jpg faces or dataset.npz:val")
    parser.add_argument("--detector", default=DEFAULT_DETECTOR)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--sizes", type=int, nargs="+", default=[48, 96, 160, 320])
    parser.add_argument("--margins", type=float, nargs="+", default=[-0.1, 0.0, 0.1, 0.2, 0.3])
    parser.add_argument("--shapes", nargs="+", default=["box", "square"], choices=["box", "square"])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    classifier = load_classifier(args.model)
    faces, labels, _ = load_faces(args.faces, list(classifier.class_names))
    detector = face_detector(args.detector)
    framings = list(itertools.product(args.margins, args.shapes))
    crops = {framing: [] for framing in framings}
    found_faces, found_labels, placed_count = [], [], 0
    for size, seed in itertools.product(args.sizes, args.seeds):
        chosen = draw(FACES, seed, len(faces))
        image, placed = grid([faces[i] for i in chosen], size)
        matched, _ = match(detect_faces(image, detector, min_size=24), placed)
        grey = to_grey(image)
        placed_count += len(placed)
        for index, box in zip(chosen, matched):
            if box is None:
                continue
            found_faces.append(faces[index])
            found_labels.append(labels[index])
            for margin, shape in framings:
                crops[(margin, shape)].append(crop_face(grey, box, margin, square=shape == "square"))
    found_labels = np.array(found_labels)

    def accuracy(batch: list[np.ndarray]) -> float:
        predicted = classify_faces(classifier, np.stack(batch), tta=False).argmax(axis=1)
        return float((predicted == found_labels).mean())

    reference = accuracy(found_faces)
    rows = [
        {
            "margin": margin,
            "shape": shape,
            "faces_placed": placed_count,
            "faces_found": len(found_labels),
            "grid_accuracy": round(accuracy(crops[(margin, shape)]), 4),
            "same_faces_as_crops_accuracy": round(reference, 4),
        }
        for margin, shape in framings
    ]
    for row in rows:
        print(row, flush=True)
    if args.out:
        write_csv(
            args.out,
            f"{Path(__file__).name}: {args.faces}, detector {args.detector}, model {args.model}, "
            f"seeds {args.seeds}, sizes {args.sizes} px",
            rows,
        )


if __name__ == "__main__":
    main()
