"""Average several trained models into one: an ensemble that is itself a .keras model.

    # how much the average gains, on the validation split (choose here, never on test)
    python -m ferflow.pipeline.ensemble evaluate --split val RUN_A/models/model.keras RUN_B/models/model.keras
    # one model file that outputs the mean of its members' probabilities
    python -m ferflow.pipeline.ensemble build --out models/ensemble.keras \
        RUN_A/models/model.keras RUN_B/models/model.keras
    # a trained model as the next member of a shipped ensemble: a copy beside its card, listed in it
    python -m ferflow.pipeline.ensemble add RUN/models/model.keras --card models/pretrained/fer2013_ensemble.json
    # its figures into its model card, from the measurements' own files (nothing typed by hand)
    python -m ferflow.pipeline.ensemble card models/ensemble.keras --validation val.json \
        --test test.json --robustness robustness_test.json --note "how the training cost was counted"

The ensemble takes the same 48x48 grey faces as its members and has a sidecar like theirs, so
`fer predict --model`, `fer serve --model`, `fer export` and the evaluation code use it as
they use any model. It costs the sum of its members' time per face. Members must name the
same classes in the same order and take the same crop (ten-crop uses it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ferflow import paths
from ferflow.io import sha256_file, write_json
from ferflow.model.sidecar import INPUT_SPEC, read_sidecar


class EnsembleError(ValueError):
    """The members cannot be averaged: too few, or they disagree on classes or crop."""


def check_members(paths: list[Path], class_names: list[tuple[str, ...]], crop_sizes: list[int]) -> None:
    """Raise EnsembleError unless there are 2+ distinct members that agree on classes and crop."""
    if len(paths) < 2:
        raise EnsembleError(f"an ensemble needs at least two models; got {len(paths)}")
    if len({p.resolve() for p in paths}) < len(paths):
        raise EnsembleError("the same model file is given twice; averaging a model with itself gains nothing")
    for path, names, crop in zip(paths[1:], class_names[1:], crop_sizes[1:]):
        if names != class_names[0]:
            raise EnsembleError(
                f"'{path}' names the classes {list(names)}, but '{paths[0]}' names "
                f"{list(class_names[0])}; members must be trained on the same classes"
            )
        if crop != crop_sizes[0]:
            raise EnsembleError(
                f"'{path}' takes {crop} px crops, but '{paths[0]}' takes {crop_sizes[0]} px; "
                "members must share train.crop_size"
            )


def average_models(models: list) -> Any:
    """One Keras model whose output is the mean of the members' outputs (the members are copied)."""
    import keras

    members = []
    for index, model in enumerate(models):
        # Keras needs unique names inside a model; trained models of one arch share theirs.
        config = model.get_config()
        config["name"] = f"member_{index}"
        member = model.__class__.from_config(config)
        member.set_weights(model.get_weights())
        members.append(member)
    face = keras.Input(shape=models[0].input_shape[1:], name="face")
    mean = keras.layers.Average(name="mean_probabilities")([member(face) for member in members])
    return keras.Model(face, mean, name="ensemble")


def member_record(path: Path, info: dict[str, Any]) -> dict[str, Any]:
    """What the ensemble's sidecar says about one member."""
    return {
        "file": path.name,
        "sha256": sha256_file(path),
        "arch": info.get("arch"),
        "params": info.get("params", {}),
        "training_seconds": info.get("training_seconds"),
        "test_metrics": info.get("test_metrics"),
    }


def ensemble_sidecar(paths: list[Path], infos: list[dict[str, Any]]) -> dict[str, Any]:
    seconds = [info.get("training_seconds") for info in infos]
    return {
        "class_names": list(infos[0]["class_names"]),
        "input": INPUT_SPEC,
        "arch": "ensemble",
        "params": {"crop_size": infos[0].get("params", {}).get("crop_size", 0)},
        "members": [member_record(p, info) for p, info in zip(paths, infos)],
        "training_seconds": sum(seconds) if all(s is not None for s in seconds) else None,
    }


def load_members(paths: list[Path]) -> list:
    """Each member as a checked Classifier (model + sidecar), or EnsembleError/ModelFileError."""
    from ferflow.model.classifier import load_classifier

    classifiers = [load_classifier(path) for path in paths]
    check_members(paths, [c.class_names for c in classifiers], [c.crop_size for c in classifiers])
    return classifiers


def build(paths: list[Path], out: Path) -> dict[str, Any]:
    """Write the averaged model to `out` and its sidecar beside it; return the sidecar."""
    from ferflow.io import save_model
    from ferflow.model.card import write_card
    from ferflow.model.sidecar import sidecar_path

    classifiers = load_members(paths)
    model = average_models([c.model for c in classifiers])
    sidecar = ensemble_sidecar(paths, [read_sidecar(p) for p in paths])
    save_model(model, out)
    sidecar["model_sha256"] = sha256_file(out)
    write_card(sidecar_path(out), sidecar)
    return sidecar


MEMBER_FIELDS = ("arch", "class_names", "input", "params", "training_seconds")
STALE_FIGURES = ("validation_metrics", "test_metrics", "training_note")


def add_member(model_path: Path, card_path: Path) -> Path:
    """Copy a trained model beside an ensemble's card as its next member (`<first member>_member<N>
    .keras`, without optimizer state, with its own card) and list it in the ensemble's card, whose
    measured figures are dropped until `card` writes the new ones. Returns the member's path."""
    from ferflow.model.card import write_card
    from ferflow.model.sidecar import sidecar_path
    from ferflow.pipeline.ship import save_for_inference

    card = read_sidecar(card_path)
    members = card.get("members")
    if not isinstance(members, list) or not members:
        raise EnsembleError(f"'{card_path}' is not an ensemble's card (it lists no members)")
    info = read_sidecar(model_path)
    run_sha = sha256_file(model_path)
    folder = card_path.parent
    paths_now = [folder / member["file"] for member in members]
    if any(read_sidecar(path).get("run_model_sha256") == run_sha for path in paths_now):
        raise EnsembleError(f"'{model_path}' is already a member of '{card_path}'")
    crop_sizes = [member.get("params", {}).get("crop_size", 0) for member in members]
    check_members(
        [*paths_now, model_path],
        [tuple(card["class_names"])] * len(members) + [tuple(info["class_names"])],
        [*crop_sizes, info.get("params", {}).get("crop_size", 0)],
    )
    target = folder / f"{Path(members[0]['file']).stem}_member{len(members)}.keras"
    if target.exists():
        raise EnsembleError(f"'{target}' exists but '{card_path}' does not list it; move it away first")
    save_for_inference(model_path, target)
    member_card = {key: info[key] for key in MEMBER_FIELDS if key in info}
    member_card["run_model_sha256"] = run_sha
    member_card["model_sha256"] = sha256_file(target)
    write_card(sidecar_path(target), member_card)
    members.append(member_record(target, member_card))
    seconds = [member.get("training_seconds") for member in members]
    card["training_seconds"] = sum(seconds) if all(s is not None for s in seconds) else None
    write_card(card_path, {key: value for key, value in card.items() if key not in STALE_FIGURES})
    return target


def card_figures(
    validation: dict | None, test: dict | None, robustness: dict | None, note: str | None
) -> dict[str, Any]:
    """Model card fields from `evaluate`'s output on the validation and test splits, the robustness
    figures on the test split (benchmarks/model_robustness.py) and a note on the training cost."""
    fields: dict[str, Any] = {}
    if validation is not None:
        fields["validation_metrics"] = {
            **validation["ensemble"],
            "split": f"validation split ({validation['n_samples']:,} faces); the members were chosen on these",
        }
    if test is not None:
        fields["test_metrics"] = {
            **test["ensemble"],
            "split": f"test split ({test['n_samples']:,} faces), measured once after every choice",
        }
        if robustness is not None:
            fields["test_metrics"]["gaussian_noise"] = robustness["gaussian_noise"]
            fields["test_metrics"]["mean_corruption_accuracy"] = robustness["mean_corruption_accuracy"]
    if note:
        fields["training_note"] = note
    return fields


def summarise(
    y_true: np.ndarray, probabilities: np.ndarray, tta_probabilities: np.ndarray, class_names: tuple[str, ...]
) -> dict[str, float]:
    from ferflow.evaluation.evaluate import classification_metrics

    plain = classification_metrics(y_true, probabilities.argmax(axis=1), class_names)
    return {
        "accuracy": plain["accuracy"],
        "macro_f1": plain["macro"]["f1"],
        "tencrop_accuracy": float(np.mean(tta_probabilities.argmax(axis=1) == y_true)),
    }


def recorded_path(path: Path) -> str:
    """`path` as a record shows it: relative to the working folder, or else its name alone, so that
    records kept in the project name no folder of the machine they were measured on."""
    path = Path(path).absolute()
    try:
        return path.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return path.name


def evaluate(paths: list[Path], dataset: Path, split: str, batch_size: int = 256) -> dict[str, Any]:
    """Accuracy, macro-F1 and ten-crop accuracy of each member and of their average on one split."""
    from ferflow.data.processed import load_processed

    classifiers = load_members(paths)
    data = load_processed(dataset)
    if split not in data.x or len(data.y[split]) == 0:
        raise EnsembleError(f"'{dataset}' has no faces in split '{split}'")
    if data.class_names != classifiers[0].class_names:
        raise EnsembleError(
            f"'{dataset}' names the classes {list(data.class_names)}, but the models name "
            f"{list(classifiers[0].class_names)}"
        )
    x, y, names = data.x[split], data.y[split], data.class_names
    plain, tencrop, members = [], [], []
    for path, classifier in zip(paths, classifiers):
        plain.append(classifier.probabilities(x, "none", batch_size))
        tencrop.append(classifier.probabilities(x, "tencrop", batch_size))
        members.append({"model": recorded_path(path), **summarise(y, plain[-1], tencrop[-1], names)})
    average = summarise(y, np.mean(plain, axis=0), np.mean(tencrop, axis=0), names)
    return {
        "dataset": recorded_path(dataset),
        "split": split,
        "n_samples": int(len(y)),
        "members": members,
        "ensemble": average,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Average trained models: measure the gain, or write one model file.")
    sub = parser.add_subparsers(dest="command", required=True)
    build_parser = sub.add_parser("build", help="write one .keras model that averages the members")
    build_parser.add_argument("--out", type=Path, required=True, help="the ensemble's .keras file")
    evaluate_parser = sub.add_parser("evaluate", help="accuracy of each member and of their average")
    evaluate_parser.add_argument(
        "--data",
        type=Path,
        default=Path(paths.PROCESSED_DATASET),
        help="the preprocess stage's output (default: %(default)s)",
    )
    evaluate_parser.add_argument("--split", default="val", help="which split to score (default: %(default)s)")
    evaluate_parser.add_argument("--out", type=Path, help="also write the results to this JSON file")
    for p in (build_parser, evaluate_parser):
        p.add_argument("models", type=Path, nargs="+", help=".keras files trained by this pipeline")
    add_parser = sub.add_parser("add", help="copy a trained model beside an ensemble's card as its next member")
    add_parser.add_argument("model", type=Path, help="a .keras file trained by this pipeline, its sidecar beside it")
    add_parser.add_argument(
        "--card",
        type=Path,
        default=Path(paths.PRETRAINED) / "fer2013_ensemble.json",
        help="the ensemble's card, its members beside it (default: %(default)s)",
    )
    card_parser = sub.add_parser("card", help="write measured figures into an ensemble's model card")
    card_parser.add_argument("ensemble", type=Path, help="the ensemble's .keras file (its card is beside it)")
    card_parser.add_argument("--validation", type=Path, help="`evaluate --split val --out` of its members")
    card_parser.add_argument("--test", type=Path, help="`evaluate --split test --out` of its members")
    card_parser.add_argument("--robustness", type=Path, help="benchmarks/model_robustness.py's output on test")
    card_parser.add_argument("--note", help="how the training cost was counted")
    args = parser.parse_args(argv)

    from ferflow.model.card import CardError
    from ferflow.model.sidecar import ModelFileError
    from ferflow.runtime import configure_determinism

    configure_determinism()
    try:
        if args.command == "card":
            from ferflow.io import read_json
            from ferflow.model.card import write_card
            from ferflow.model.sidecar import sidecar_path

            inputs = [read_json(p) if p else None for p in (args.validation, args.test, args.robustness)]
            card = read_sidecar(args.ensemble) | card_figures(*inputs, args.note)
            write_card(sidecar_path(args.ensemble), card)
            print(f"wrote {sidecar_path(args.ensemble)}")
            return 0
        if args.command == "add":
            target = add_member(args.model, args.card)
            print(f"wrote {target} and its card; '{args.card}' now lists it (its measured figures were dropped)")
            return 0
        if args.command == "build":
            if args.out.suffix != ".keras":
                raise EnsembleError(f"--out '{args.out}' must end in .keras")
            sidecar = build(args.models, args.out)
            print(
                f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB): the mean of "
                f"{len(sidecar['members'])} models"
            )
            return 0
        results = evaluate(args.models, args.data, args.split)
    except (EnsembleError, ModelFileError, CardError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.out:
        write_json(args.out, results)
    print(f"{results['split']} split, {results['n_samples']} faces: accuracy / macro-F1 / ten-crop")
    for row in [*results["members"], {"model": "mean of the models", **results["ensemble"]}]:
        print(f"  {row['accuracy']:.4f}  {row['macro_f1']:.4f}  {row['tencrop_accuracy']:.4f}  {row['model']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
