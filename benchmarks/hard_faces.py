"""Hard faces: how many faces the shipped MTCNN finds when they are rotated, covered, or of
extreme contrast, beside the plain grids of benchmarks/detectors.py.

    python benchmarks/hard_faces.py --faces /path/to/fer2013/test --seeds 0 1 2 \
        --sizes 48 96 160 320 --out benchmarks/results/hard_faces_cpu.csv

Each kind changes every 48x48 face before it is placed in the grids of grids.py (24 faces a
grid, drawn by seed, upscaled to `size` px in grey cells; found at IoU >= 0.3; every other box
is a false positive), detected as `fer predict` does (the photo shrunk to 320 px on its long
side, faces of at least 24 px):

- rotations of +-15, +-30 and +-45 degrees about the face's centre;
- a hand over the mouth (a skin-toned band over the lower third, its grey the face's cheeks'),
  sunglasses (a dark band over the eyes), a hand over half of the face (a skin-toned left half);
- extreme contrast (x2.5 about the mean), gamma 0.4 and 2.5, posterised to four greys;
- `missed`: the faces this detector misses in the plain grids of all of --faces at 96 px,
  placed again at each size.

Report, never tune: the thresholds of MTCNN are chosen on validation (docs/face-detection.md).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from detectors import FACE_FREE
from grids import FACES, draw, grid, load_faces, match, write_csv

from ferflow.faces.detectors import TURNED_ONET, detect_faces, detect_turned_faces, face_detector
from ferflow.faces.mtcnn import SECOND_LOOK_FILE, MtcnnDetector, load_second_look

MIN_FACE = 24
# Photos without faces, beside detectors.py's: scikit-image's own, none of them holding a face.
MORE_FACE_FREE = (
    "binary_blobs", "cell", "checkerboard", "clock", "colorwheel", "grass", "gravel", "horse",
    "moon", "page", "retina", "text",
)  # fmt: skip


def other_face_free_photos() -> list[np.ndarray]:
    """Six more grey pictures without faces, from data that nothing here trains on: matplotlib's
    two elevation maps and a sheet of scikit-learn's handwritten digits, each also on its side."""
    import sklearn.datasets
    from matplotlib import cbook

    def stretched(values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        return np.round(255 * (values - values.min()) / (values.max() - values.min())).astype(np.uint8)

    topography = stretched(cbook.get_sample_data("topobathy.npz")["topo"])
    elevation = stretched(cbook.get_sample_data("jacksboro_fault_dem.npz")["elevation"])
    digits = sklearn.datasets.load_digits().images[:600]  # 8x8, ink 0-16
    sheet = stretched(-np.vstack([np.hstack(list(digits[row * 30 : row * 30 + 30])) for row in range(20)]))
    photos = [
        cv2.resize(topography, (480, 364), interpolation=cv2.INTER_LINEAR),
        elevation,
        cv2.resize(sheet, (480, 320), interpolation=cv2.INTER_LINEAR),
    ]
    return photos + [np.rot90(photo) for photo in photos]


def rotated(degrees: float) -> Callable[[np.ndarray], np.ndarray]:
    def rotate(face: np.ndarray) -> np.ndarray:
        turn = cv2.getRotationMatrix2D((23.5, 23.5), degrees, 1.0)
        return cv2.warpAffine(face, turn, (48, 48), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    return rotate


def skin(face: np.ndarray) -> int:
    """The grey of the face's cheeks: a hand in the same light."""
    return int(np.median(np.concatenate([face[24:34, 6:14].ravel(), face[24:34, 34:42].ravel()])))


def covered(rows: slice, columns: slice, dark: bool) -> Callable[[np.ndarray], np.ndarray]:
    def cover(face: np.ndarray) -> np.ndarray:
        out = face.copy()
        out[rows, columns] = 20 if dark else skin(face)
        return out

    return cover


def contrast(face: np.ndarray) -> np.ndarray:
    mean = face.mean()
    return np.clip((face.astype(np.float32) - mean) * 2.5 + mean, 0, 255).astype(np.uint8)


def gamma(power: float) -> Callable[[np.ndarray], np.ndarray]:
    def adjust(face: np.ndarray) -> np.ndarray:
        return (255 * (face / 255.0) ** power).astype(np.uint8)

    return adjust


def posterised(face: np.ndarray) -> np.ndarray:
    return ((face // 64) * 85).astype(np.uint8)


KINDS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "plain": lambda face: face,
    **{f"rotated {d:+d}": rotated(d) for d in (-45, -30, -15, 15, 30, 45)},
    "hand over the mouth": covered(slice(31, 48), slice(6, 42), dark=False),
    "sunglasses": covered(slice(14, 24), slice(4, 44), dark=True),
    "hand over half the face": covered(slice(8, 48), slice(0, 24), dark=False),
    "contrast x2.5": contrast,
    "gamma 0.4": gamma(0.4),
    "gamma 2.5": gamma(2.5),
    "posterised, 4 greys": posterised,
}


class MmodDetector:
    """dlib's MMOD CNN face detector, read from `mmod_human_face_detector.dat` (in the
    face_recognition_models package, CC0): measured here as a second detector, not shipped."""

    name = "dlib_mmod"
    detect_size = 640

    def __init__(self, weights: Path) -> None:
        import dlib

        self.network = dlib.cnn_face_detection_model_v1(str(weights))

    def detect(self, pixels: np.ndarray, min_size: int) -> list[tuple[int, int, int, int]]:
        found = self.network(np.ascontiguousarray(pixels), 0)  # its 80-px window: no upsampling at 640 px
        boxes = [(r.rect.left(), r.rect.top(), r.rect.width(), r.rect.height()) for r in found]
        return [box for box in boxes if min(box[2], box[3]) >= min_size]


@dataclass(frozen=True)
class Search:
    """MTCNN's one search, and the levers measured on top of it: passes on copies turned by
    `rotations` degrees (`fer predict --find-turned`'s code; O-Net must reach `rotated_onet`),
    and a second detector. The extra boxes are kept where they overlap none of the first
    search's; with `only_where_none`, the extra searches run only on photos where the first
    finds no face (as in `fer predict`)."""

    detector: object
    rotations: tuple[float, ...] = ()
    rotated_onet: float = 0.0
    second_detector: object = None
    only_where_none: bool = False
    turned_second_look: object = None

    def __call__(self, image: np.ndarray) -> list[tuple[int, int, int, int]]:
        from grids import iou

        boxes = detect_faces(image, self.detector, min_size=MIN_FACE)
        if boxes and self.only_where_none:
            return boxes
        extra = []
        if self.rotations:
            extra += detect_turned_faces(
                image,
                self.detector,
                MIN_FACE,
                turns=self.rotations,
                onet=self.rotated_onet,
                second_look=self.turned_second_look,
            )
        if self.second_detector is not None:
            extra += detect_faces(image, self.second_detector, min_size=MIN_FACE)
        for box in extra:
            if all(iou(box, kept) < 0.3 for kept in boxes):
                boxes.append(box)
        return boxes


def found(search: Search, faces: list[np.ndarray], size: int, alone: bool = False) -> tuple[list[bool], int]:
    """Which of `faces` are found in their grid (or, `alone`, each in a photo of its own, as in a
    portrait), and the false positives."""
    hits, false = [], 0
    for group in [[face] for face in faces] if alone else [faces]:
        image, placed = grid(group, size)
        matched, false_here = match(search(image), placed)
        hits, false = hits + [box is not None for box in matched], false + false_here
    return hits, false


def missed_faces(detector, faces: np.ndarray, size: int) -> np.ndarray:
    """The faces that `detector`'s one search misses in plain grids of all of `faces`, 24 at a
    time, in order."""
    missed = []
    for start in range(0, len(faces), FACES):
        chunk = faces[start : start + FACES]
        hits, _ = found(Search(detector), list(chunk), size)
        missed += [face for face, hit in zip(chunk, hits) if not hit]
    return np.stack(missed)


def recall_rows(
    search: Search, faces: np.ndarray, kinds: dict, seeds: list[int], sizes: list[int], alone: bool = False
) -> list[dict]:
    rows = []
    for kind, change in kinds.items():
        row = {"kind": kind}
        hits = total = false = 0
        for size in sizes:
            size_hits = size_total = 0
            for seed in seeds:
                chosen = draw(min(FACES, len(faces)), seed, len(faces))
                found_here, false_here = found(search, [change(faces[i]) for i in chosen], size, alone)
                size_hits, size_total, false = (
                    size_hits + sum(found_here),
                    size_total + len(found_here),
                    false + false_here,
                )
            row[f"recall_{size}px"] = round(size_hits / size_total, 3)
            hits, total = hits + size_hits, total + size_total
        row["recall"] = round(hits / total, 3)
        row["false_positives_per_24_faces"] = round(false / total * FACES, 2)
        row["faces_placed"] = total
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", required=True, help="a Kaggle-layout folder: <emotion>/*.jpg")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sizes", type=int, nargs="+", default=[48, 96, 160, 320])
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--rotated-passes",
        type=float,
        nargs="*",
        default=[],
        metavar="DEGREES",
        help="a lever: also search copies of each grid turned by these angles (e.g. -30 30)",
    )
    parser.add_argument(
        "--rotated-onet",
        type=float,
        metavar="THRESHOLD",
        default=0.0,
        help="with --rotated-passes: the O-Net threshold a box found on a turned copy must pass "
        f"(default: the detector's own, {MtcnnDetector.THRESHOLDS[2]}; fer predict's: {TURNED_ONET})",
    )
    parser.add_argument(
        "--mmod",
        type=Path,
        metavar="DAT",
        help="a lever: dlib's MMOD CNN detector (mmod_human_face_detector.dat) as a second detector",
    )
    parser.add_argument(
        "--thresholds",
        type=float,
        nargs=3,
        metavar=("PNET", "RNET", "ONET"),
        help=f"a lever: MTCNN's stage thresholds (default: the shipped {MtcnnDetector.THRESHOLDS})",
    )
    parser.add_argument(
        "--second-look",
        type=float,
        metavar="THRESHOLD",
        help="a lever: MTCNN's second look at the candidates O-Net doubts, kept at this score",
    )
    parser.add_argument(
        "--turned-second-look",
        type=float,
        metavar="THRESHOLD",
        help="a lever: with --rotated-passes, the second look also on the turned copies, kept at this score",
    )
    parser.add_argument(
        "--second-look-file",
        type=Path,
        metavar="ONNX",
        help="with --second-look: the network's file (default: the package's)",
    )
    parser.add_argument(
        "--only-where-none",
        action="store_true",
        help="run the levers' extra searches only on photos where the first search finds no face",
    )
    parser.add_argument(
        "--alone",
        action="store_true",
        help="place each face alone in a photo of its own (a portrait), not 24 to a grid; also "
        "count the boxes found in face-free photos",
    )
    args = parser.parse_args()
    rotations = tuple(args.rotated_passes)
    faces, _, _ = load_faces(args.faces)
    detector = MtcnnDetector(thresholds=tuple(args.thresholds)) if args.thresholds else face_detector("mtcnn")
    if args.second_look is not None:  # on a detector of its own: the shared one finds the misses below
        detector = MtcnnDetector(thresholds=detector.thresholds)
        detector.second_look = load_second_look(args.second_look, args.second_look_file)
    second = MmodDetector(args.mmod) if args.mmod else None
    turned_look = (
        None if args.turned_second_look is None else load_second_look(args.turned_second_look, args.second_look_file)
    )
    search = Search(detector, rotations, args.rotated_onet, second, args.only_where_none, turned_look)
    rows = recall_rows(search, faces, KINDS, args.seeds, args.sizes, args.alone)
    missed = missed_faces(face_detector("mtcnn"), faces, 96)  # the shipped search's misses, whatever the levers
    missed_kind = {f"missed at 96 px ({len(missed)} faces)": KINDS["plain"]}
    rows += recall_rows(search, missed, missed_kind, args.seeds, args.sizes, args.alone)
    hard = [row for row in rows if row["kind"] != "plain"]
    placed = sum(row["faces_placed"] for row in hard)
    rows.append(
        {
            "kind": "all hard kinds",
            **{
                f"recall_{size}px": round(sum(r[f"recall_{size}px"] * r["faces_placed"] for r in hard) / placed, 3)
                for size in args.sizes
            },
            "recall": round(sum(r["recall"] * r["faces_placed"] for r in hard) / placed, 3),
            "false_positives_per_24_faces": round(
                sum(r["false_positives_per_24_faces"] * r["faces_placed"] for r in hard) / placed, 2
            ),
            "faces_placed": placed,
        }
    )
    face_free = ""
    if args.alone:
        from skimage import data as skimage_data

        photos = [getattr(skimage_data, name)() for name in FACE_FREE + MORE_FACE_FREE]
        photos += [np.rot90(photo) for photo in photos]  # and each on its side
        face_free = f", {sum(len(search(photo)) for photo in photos)} boxes in {len(photos)} face-free photos"
        others = other_face_free_photos()
        face_free += f", {sum(len(search(photo)) for photo in others)} boxes in {len(others)} other face-free photos"
    for row in rows:
        print(row)
    print(face_free)
    if args.out:
        passes = f" {'/'.join(map(str, args.thresholds))}" if args.thresholds else ""
        passes += f", rotated passes {list(rotations)}" if rotations else ""
        if rotations and args.rotated_onet:
            passes += f" (O-Net >= {args.rotated_onet})"
        if args.mmod:
            passes += ", dlib MMOD as a second detector at 640 px"
        if args.only_where_none:
            passes += " where the first search finds none"
        if args.turned_second_look is not None:
            passes += f", second look on the turned copies >= {args.turned_second_look}"
        if args.second_look is not None:
            passes += f", second look >= {args.second_look} ({Path(args.second_look_file or SECOND_LOOK_FILE).name})"
        placing = "each face alone in its photo" if args.alone else "24 faces a grid"
        about = (
            f"hard_faces.py: {Path(args.faces).name}/, seeds {args.seeds}, sizes {args.sizes} px, {placing}, "
            f"mtcnn{passes}{face_free}"
        )
        write_csv(args.out, about, rows)


if __name__ == "__main__":
    main()
