"""The `fer` command: `fer predict` on photos and videos, `fer export` for serving, `fer serve`
for a local web page and HTTP API.

Exit codes of `fer predict`:
  0  every input gave at least one face
  1  some inputs had a problem (missing, unreadable, no face); the others were classified
  2  bad usage, the model cannot be used (missing, not matching its sidecar), or an output
     cannot be written
  3  no face was classified at all
  130  stopped with Ctrl-C; the faces found until then are written
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
from pathlib import Path

from ferflow.apps.defaults import (
    DEFAULT_MAX_CLIP_MB,
    DEFAULT_MAX_CLIP_SECONDS,
    DEFAULT_MAX_UPLOAD_MB,
    DEFAULT_PORT,
    MAX_CLIP_SECONDS,
    MAX_UPLOAD_MB,
)
from ferflow.apps.output import check_outputs, displayable, model_description, print_table, write_records

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_NOTHING = 0, 1, 2, 3
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report it


def _model_arguments(p) -> None:
    """--quality, --model and --threads, shared by predict and serve."""
    from ferflow.faces.predict import DEFAULT_QUALITY, QUALITIES

    p.add_argument(
        "--quality",
        choices=list(QUALITIES),
        default=DEFAULT_QUALITY,
        help="fast: the shipped single model (65.6%% of FER-2013's test faces right; about 26 ms a "
        "640x480 photo on 2 CPU cores); best: three models averaged over ten crops of each face "
        "(68.7%%; about 42 ms a photo), and tilted or covered faces searched harder (--find-turned, "
        f"--second-look) (default: {DEFAULT_QUALITY})",
    )
    p.add_argument(
        "--model",
        type=Path,
        help="use this model instead: an .onnx model (ONNX Runtime) or a .keras "
        "model (needs Keras), with its .json sidecar beside it",
    )
    p.add_argument(
        "--threads",
        type=int,
        help="threads for each model call (default: FERFLOW_THREADS, or the cores this process may use)",
    )


def _predict_parser(sub) -> None:
    from ferflow.faces.detectors import DEFAULT_DETECTOR, DETECTORS
    from ferflow.faces.predict import PredictOptions

    p = sub.add_parser(
        "predict",
        help="classify the emotion of every face in images, folders or videos",
        description="Find faces (MTCNN unless --detector says otherwise) and classify their emotion.",
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", help="image files, folders (searched recursively) or videos")
    _model_arguments(p)
    p.add_argument("--no-detect", action="store_true", help="the images are face crops already; classify them whole")
    p.add_argument(
        "--tta", action="store_true", help="average over flipped (and ten-crop) views (on with --quality best)"
    )
    p.add_argument("--json", help="write one record per face to this JSON file ('-': standard output)")
    p.add_argument("--csv", help="write one row per face to this CSV file ('-': standard output)")
    p.add_argument("--annotate", type=Path, metavar="DIR", help="write copies with boxes and labels here")
    p.add_argument("--video-stride", type=int, metavar="N", help="also read videos, classifying every N-th frame")
    p.add_argument(
        "--smooth",
        type=float,
        default=PredictOptions.smoothing,
        metavar="SECONDS",
        help="time constant of each video face's moving average, for emotion_smoothed; 0: none "
        f"(default: {PredictOptions.smoothing:g})",
    )
    p.add_argument(
        "--detect-every",
        type=int,
        default=1,
        metavar="N",
        help="in videos, search every N-th sampled frame for faces; the frames between reuse its boxes "
        "(faster; a face that moves is cropped off-centre, a new one is found up to N-1 frames late)",
    )
    p.add_argument(
        "--timeline", metavar="FILE", help="write a PNG chart of each video face's smoothed emotions over time"
    )
    p.add_argument(
        "--margin",
        type=float,
        default=PredictOptions.margin,
        help=f"widen each face box by this share per side, negative to tighten (default: {PredictOptions.margin})",
    )
    p.add_argument(
        "--square",
        action=argparse.BooleanOptionalAction,
        default=PredictOptions.square,
        help="grow each face box to a square before the margin (default: %(default)s)",
    )
    p.add_argument("--min-face", type=int, default=30, help="smallest face side in pixels to detect")
    p.add_argument(
        "--detect-size",
        type=int,
        default=None,
        help="detect on a copy of larger photos this many pixels on its long side; raise it for "
        "small faces in large photos (default: the detector's, 320 for mtcnn, 640 for the others)",
    )
    p.add_argument(
        "--detector",
        choices=list(DETECTORS),
        default=DEFAULT_DETECTOR,
        help=f"face detector (default: {DEFAULT_DETECTOR}; see docs/face-detection.md)",
    )
    p.add_argument(
        "--find-turned",
        action="store_true",
        help="where a photo or frame shows no upright face, also search copies turned by 30 degrees "
        "either way, for tilted heads (mtcnn only; such photos take about 3x as long to search; "
        "on with --quality best)",
    )
    p.add_argument(
        "--second-look",
        action="store_true",
        help="take a second look at the faces MTCNN's last stage doubts, which finds more faces "
        "half covered by a hand or sunglasses (mtcnn only; on with --quality best)",
    )
    ray = p.add_argument_group("many photos", "score on a Ray cluster (pip install 'ferflow[ray]'; docs/photos.md)")
    ray.add_argument(
        "--engine",
        choices=ENGINES,
        default="local",
        help="local: this process; ray: Ray Data actors, on a local Ray or the cluster at --ray-address "
        "(default: local)",
    )
    ray.add_argument("--ray-address", metavar="HOST:PORT", help="join this Ray cluster (default: start a local Ray)")
    ray.add_argument(
        "--ray-workers", type=int, metavar="N", help="scoring actors, --threads CPUs each (default: one per CPU)"
    )
    ray.add_argument(
        "--parquet",
        type=Path,
        metavar="DIR",
        help="write one row per face as Parquet files into this folder, from the workers",
    )


ENGINES = ["local", "ray"]


def _export_parser(sub) -> None:
    from ferflow.faces.predict import PRETRAINED_KERAS
    from ferflow.model.export import FORMATS

    p = sub.add_parser(
        "export",
        help="export a model to ONNX, SavedModel or TFLite",
        description="Export a Keras model for serving (needs Keras on the TensorFlow backend).",
    )
    p.add_argument("--format", required=True, choices=sorted(FORMATS))
    p.add_argument(
        "--model",
        type=Path,
        default=PRETRAINED_KERAS,
        help=f"a .keras model with its sidecar (default: {PRETRAINED_KERAS}, in the project folder)",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="output file (a folder for saved_model), or an existing folder to "
        "write into; only a previous export of the same format is replaced "
        "(default: exported/<name>.<format> beside the model)",
    )


def _serve_parser(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="a local web page and HTTP API for the model",
        description="Serve the model on this machine: a web page at / and the API (see /api).",
    )
    _model_arguments(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT})")
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests for this host name (the Host header); by default only 127.0.0.1, "
        "localhost, ::1 and the --host address are answered, against DNS rebinding",
    )
    p.add_argument(
        "--max-upload-mb",
        type=float,
        default=DEFAULT_MAX_UPLOAD_MB,
        help=f"largest upload accepted, in MB (default: {DEFAULT_MAX_UPLOAD_MB:g})",
    )
    p.add_argument(
        "--max-clip-seconds",
        type=float,
        default=DEFAULT_MAX_CLIP_SECONDS,
        help=f"longest clip accepted on /predict/video, in seconds (default: {DEFAULT_MAX_CLIP_SECONDS:g})",
    )
    p.add_argument(
        "--max-clip-mb",
        type=float,
        default=DEFAULT_MAX_CLIP_MB,
        help=f"largest clip accepted, in MB (default: {DEFAULT_MAX_CLIP_MB:g})",
    )


def load_or_report(model_path: Path, threads: int | None = None):
    """The classifier, or None after printing why the model cannot be used."""
    from ferflow.model.classifier import load_classifier
    from ferflow.model.sidecar import ModelFileError
    from ferflow.runtime import configure_determinism

    configure_determinism()
    try:
        return load_classifier(model_path, threads)
    except (ModelFileError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
    except ImportError as missing:
        print(f"error: fer needs {missing.name}: pip install 'ferflow[predict]'", file=sys.stderr)
    return None


def chosen_model(args) -> tuple[Path, bool]:
    """The model file and whether to use test-time views, from --quality, --model and --tta."""
    from ferflow.faces.predict import QUALITIES

    model, tta = QUALITIES[args.quality]
    return (args.model or model), tta or getattr(args, "tta", False)


def run_predict(args) -> int:
    from ferflow.faces.detectors import face_detector
    from ferflow.faces.predict import PredictOptions, expand_paths
    from ferflow.io import OutputError, exclusive_output
    from ferflow.model.onnx_runtime import threads_problem

    problem = threads_problem(args.threads)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    model_path, tta = chosen_model(args)
    try:  # the options check their own values (margin, sizes, stride) before any work
        options = PredictOptions(
            detect=not args.no_detect,
            tta=tta,
            margin=args.margin,
            square=args.square,
            min_face=args.min_face,
            detect_size=args.detect_size,
            video_stride=args.video_stride,
            smoothing=args.smooth,
            detect_every=args.detect_every,
            annotate_dir=args.annotate,
            detector=args.detector,
            find_turned=args.find_turned or args.quality == "best",
            second_look=args.second_look or args.quality == "best",
            progress=args.json is None,
        )  # scripts that ask for JSON get no progress bar
    except ValueError as problem:
        print(f"error: --{problem}", file=sys.stderr)
        return EXIT_USAGE
    inputs, _ = expand_paths(args.paths, include_videos=True)
    try:  # checked before the model loads or any photo is read
        json_target, csv_target, _ = check_outputs(args.json, args.csv, args.annotate, [*inputs, *args.paths])
        parquet_target = check_ray_options(args, inputs)
        timeline_target = check_timeline(args.timeline, [*inputs, *args.paths])
        check_annotated_videos(args, inputs)
    except ValueError as problem:  # an OutputError, or a --engine ray option that cannot be used
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if args.video_stride is not None:
        from ferflow.faces.photo import require_opencv

        try:
            require_opencv("reading videos")
        except RuntimeError as error:
            print(f"error: --video-stride: {error}", file=sys.stderr)
            return EXIT_USAGE
    if not args.no_detect:
        try:  # built once here and shared (face_detector caches it), before the model loads
            face_detector(options.detector, options.second_look)
        except (RuntimeError, ValueError) as error:
            print(f"error: --detector {args.detector}: {error}", file=sys.stderr)
            return EXIT_USAGE
    with contextlib.ExitStack() as held:
        try:  # a second run writing the same file is refused now, not silently overwritten later
            for target in (json_target, csv_target, parquet_target, timeline_target):
                if target is not None:
                    held.enter_context(exclusive_output(*target))
        except OutputError as problem:
            print(f"error: {problem}", file=sys.stderr)
            return EXIT_USAGE
        classifier = load_or_report(model_path, args.threads)
        if classifier is None:
            return EXIT_USAGE
        if args.engine == "ray" and inputs and not join_ray(args):  # no files: nothing to send
            return EXIT_USAGE
        return classify_and_write(args, classifier, options, json_target, csv_target, tta, timeline_target)


def check_annotated_videos(args, inputs: list[Path]) -> None:
    """Refuse, before any work, an --annotate folder where a video's annotated copy would replace
    one of the inputs (the clip itself, in its own folder). Raises OutputError."""
    from ferflow.faces.photo import is_video
    from ferflow.faces.predict import annotated_video_path
    from ferflow.io import OutputError

    if args.annotate is None or args.video_stride is None:
        return
    resolved = {path.resolve() for path in inputs}
    for path in inputs:
        if is_video(path):
            target = annotated_video_path(path, args.annotate, args.paths)
            if target.resolve() in resolved:
                message = f"the annotated video '{target}' would replace the input '{path}'; choose another folder"
                raise OutputError(f"--annotate: {message}")


def check_timeline(path: str | None, inputs: list) -> tuple[Path, str] | None:
    """The --timeline target, checked before any work, or None. Raises OutputError."""
    from ferflow.io import OutputError, file_target

    if path is None:
        return None
    if Path(path).suffix.lower() != ".png":
        raise OutputError(f"--timeline: '{path}' must be a .png file")
    try:
        return file_target(path, inputs), path
    except OutputError as problem:
        raise OutputError(f"--timeline: {problem}") from None


def check_ray_options(args, inputs: list[Path]) -> tuple[Path, str] | None:
    """Check --engine ray's options before any work; the --parquet target (folder, as given) or
    None. Raises ValueError naming the flag (OutputError for the --parquet folder)."""
    from ferflow.io import OutputError, folder_target

    ray_only = {"--ray-address": args.ray_address, "--ray-workers": args.ray_workers, "--parquet": args.parquet}
    if args.engine != "ray":
        given = [flag for flag, value in ray_only.items() if value is not None]
        if given:
            raise ValueError(f"{given[0]} needs --engine ray")
        return None
    from ferflow.faces.ray_engine import address_problem, parquet_problem, require_ray

    if args.ray_address is not None and address_problem(args.ray_address):
        raise ValueError(address_problem(args.ray_address))
    try:
        require_ray(args.ray_address)
    except RuntimeError as missing:
        raise ValueError(str(missing)) from None
    if args.annotate is not None:
        raise ValueError("--annotate is not available with --engine ray; use the local engine for annotated copies")
    if args.ray_workers is not None and args.ray_workers < 1:
        raise ValueError(f"--ray-workers must be 1 or more, got {args.ray_workers}")
    if args.parquet is None:
        return None
    try:
        folder = folder_target(args.parquet, inputs)
    except OutputError as problem:
        raise OutputError(f"--parquet: {problem}") from None
    problem = parquet_problem(folder)
    if problem:
        raise OutputError(f"--parquet: {problem}")
    return folder, str(args.parquet)


def join_ray(args) -> bool:
    """Join the cluster at --ray-address or start a local Ray; False after printing why not."""
    from ferflow.faces.photo import first_line
    from ferflow.faces.ray_engine import connect

    try:
        connect(args.ray_address)
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = f"the Ray cluster at '{args.ray_address}'" if args.ray_address else "a local Ray"
        print(f"error: could not start or join {where}: {first_line(error)}", file=sys.stderr)
        return False
    return True


def score(args, classifier, options):
    """The prediction and the count of faces, from the engine that --engine names."""
    from ferflow.faces.predict import predict_paths

    if args.engine == "local":
        result = predict_paths(args.paths, classifier, options)
        return result, len(result.faces)
    from ferflow.faces.ray_engine import predict_paths_ray

    return predict_paths_ray(
        args.paths,
        classifier.path,
        classifier.class_names,
        options,
        workers=args.ray_workers,
        threads=args.threads or 1,
        parquet_dir=args.parquet,
        collect_faces=args.parquet is None or args.json is not None or args.csv is not None,
    )


def classify_and_write(args, classifier, options, json_target, csv_target, tta: bool, timeline_target=None) -> int:
    """The run itself: classify, show, write. Ctrl-C stops it with what was found so far written."""
    from ferflow.faces.predict import EngineError
    from ferflow.io import STDOUT, OutputError

    try:
        result, face_count = score(args, classifier, options)
    except EngineError as error:  # the local engine reports per file; a cluster can fail as a whole
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if STDOUT not in (args.json, args.csv) and args.parquet is None:  # the records go elsewhere
        print_table(result.faces)
    for problem in result.problems:
        print(f"{problem.kind}: {displayable(problem.message)}", file=sys.stderr)
    try:
        write_records(
            result.faces,
            json_target,
            csv_target,
            classifier.class_names,
            None if args.no_detect else args.detector,
            model_description(classifier, args.quality, tta),
        )
    except OutputError as problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if timeline_target is not None:
        from ferflow.faces.predict import Problem
        from ferflow.faces.video import write_timeline

        try:
            write_timeline(result.faces, classifier.class_names, timeline_target[0])
        except (OSError, ValueError) as error:
            result.problems.append(Problem(args.timeline, "unwritable", f"--timeline '{args.timeline}': {error}"))
            print(f"unwritable: --timeline '{displayable(args.timeline)}': {error}", file=sys.stderr)
    print(f"{face_count} face(s) in {result.files_seen} file(s); {len(result.problems)} problem(s)", file=sys.stderr)
    if result.interrupted:
        print(f"interrupted after {result.files_seen} file(s): the faces found so far are written", file=sys.stderr)
        return EXIT_INTERRUPTED
    if not face_count:
        return EXIT_NOTHING
    return EXIT_PARTIAL if result.problems else EXIT_OK


def run_export(args) -> int:
    from ferflow.model.export import ExportError, export_model, resolve_output

    if args.model.suffix.lower() == ".onnx":
        print(
            f"error: --model '{args.model}' is an ONNX model already; fer export takes a .keras model", file=sys.stderr
        )
        return EXIT_USAGE

    try:  # before the model loads: a target that cannot be used is one line, and nothing is touched
        out = resolve_output(args.out, args.model, args.format)
    except ExportError as problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    classifier = load_or_report(args.model)
    if classifier is None:
        return EXIT_USAGE
    try:
        out = export_model(classifier.model, args.format, out, args.model, sidecar=classifier.sidecar)
    except (ExportError, OSError) as problem:
        print(f"error: export to '{out}' failed: {problem}", file=sys.stderr)
        return EXIT_USAGE
    print(
        f"wrote {out} ({args.format}); inputs: raw grey 48x48x1 pixels 0..255; "
        f"outputs: probabilities of {list(classifier.class_names)}"
    )
    return EXIT_OK


def run_serve(args) -> int:
    try:
        from ferflow.apps.serve import serve
    except ImportError as missing:
        print(f"error: fer serve needs {missing.name}: pip install 'ferflow[serve]'", file=sys.stderr)
        return EXIT_USAGE
    from ferflow.model.onnx_runtime import threads_problem

    problem = threads_problem(args.threads)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if not 1 <= args.port <= 65535:
        print(f"error: --port must be 1..65535, got {args.port}", file=sys.stderr)
        return EXIT_USAGE
    limits = {"--max-upload-mb": MAX_UPLOAD_MB, "--max-clip-seconds": MAX_CLIP_SECONDS, "--max-clip-mb": MAX_UPLOAD_MB}
    for flag, high in limits.items():
        value = getattr(args, flag[2:].replace("-", "_"))
        if not (math.isfinite(value) and 0 < value <= high):
            print(f"error: {flag} must be above 0 and at most {high:g}, got {value:g}", file=sys.stderr)
            return EXIT_USAGE
    model_path, tta = chosen_model(args)
    classifier = load_or_report(model_path, args.threads)
    if classifier is None:
        return EXIT_USAGE
    try:
        serve(
            classifier,
            args.host,
            args.port,
            args.max_upload_mb,
            model_description(classifier, args.quality, tta),
            tuple(args.allow_host),
            args.max_clip_seconds,
            args.max_clip_mb,
        )
    except OSError as problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fer", description="Facial-emotion recognition on FER-2013.")
    sub = parser.add_subparsers(dest="command", required=True)
    try:
        _predict_parser(sub)
        _export_parser(sub)
        _serve_parser(sub)
    except ImportError as missing:  # installed without the photo tool's extra
        print(f"error: fer needs {missing.name}: pip install 'ferflow[predict]'", file=sys.stderr)
        return EXIT_USAGE
    args = parser.parse_args(argv)
    return {"predict": run_predict, "export": run_export, "serve": run_serve}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
