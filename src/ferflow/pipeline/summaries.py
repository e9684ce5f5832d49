"""The one-paragraph summary at the top of each stage report, built from the stage's results.

Each notebook ends with a cell tagged `summary` that displays one of these; the stage runner
moves that cell's output under the report's title, so a reader gets the key numbers first.
"""

from __future__ import annotations


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def explore_summary(results: dict) -> str:
    counts = results["class_counts"]
    rarest, commonest = min(counts, key=counts.get), max(counts, key=counts.get)
    duplicates = results["duplicates"]
    return (
        f"**Summary.** {results['faces']:,} faces in {len(counts)} emotions. The classes are unbalanced: "
        f"{commonest} has {counts[commonest]:,} faces, {rarest} {counts[rarest]:,} "
        f"(ratio {results['imbalance_ratio']:.1f}). {duplicates['duplicate_groups']:,} groups of "
        f"pixel-identical faces ({duplicates['conflicting_groups']:,} of them with different labels, "
        f"{duplicates['cross_split_groups']:,} across splits) and {results['blank_faces']:,} blank faces "
        f"are found here and handled by the preprocess stage."
    )


def preprocess_summary(results: dict, class_weights: dict[str, float]) -> str:
    removed = results["removed"]
    sizes = results["split_sizes"]
    heaviest = max(class_weights, key=class_weights.get)
    return (
        f"**Summary.** {removed['kept']:,} unique faces kept of {results['faces_converted']:,} "
        f"({removed['duplicates_removed']:,} duplicates, {removed['conflicting_removed']:,} faces with "
        f"conflicting labels and {removed.get('blank_removed', 0):,} blank faces removed), split "
        f"`{results['split_strategy']}` into {sizes['train']:,} training, {sizes['val']:,} validation and "
        f"{sizes['test']:,} test faces. The rarest emotion, {heaviest}, gets a balanced class weight of "
        f"{class_weights[heaviest]:.1f}."
    )


def train_summary(arch: str, results: dict, seconds: float, resumed_after: int) -> str:
    resumed = f", resumed after epoch {resumed_after}" if resumed_after else ""
    return (
        f"**Summary.** `{arch}` trained for {results['epochs_run']} epochs in {seconds / 60:.1f} min"
        f"{resumed}. The kept weights (epoch {results['kept_epoch']}) reach {_percent(results['val_accuracy'])} "
        f"on the validation split and {_percent(results['train_accuracy'])} on the augmented training faces."
    )


def evaluate_summary(results: dict) -> str:
    per_class = results["per_class"]
    best = max(per_class, key=lambda name: per_class[name]["f1"])
    worst = min(per_class, key=lambda name: per_class[name]["f1"])
    text = (
        f"**Summary.** On {results['n_samples']:,} test faces the model is right {_percent(results['accuracy'])} "
        f"of the time ({_percent(results['tta']['accuracy'])} with {results['tta']['mode']} test-time "
        f"augmentation), with a macro F1 of {results['macro']['f1']:.3f} and a calibration error (ECE) of "
        f"{results['calibration']['ece']:.3f}. It recognises {best} best (F1 {per_class[best]['f1']:.2f}) "
        f"and {worst} worst (F1 {per_class[worst]['f1']:.2f})."
    )
    if results.get("top_confusions"):
        top = results["top_confusions"][0]
        text += (
            f" Its most frequent mistake: {top['true']} taken for {top['predicted']} "
            f"({_percent(top['share_of_true'])} of the {top['true']} faces)."
        )
    return text


def robustness_summary(results: dict) -> str:
    hardest = min(results["per_corruption"], key=lambda name: min(results["per_corruption"][name].values()))
    hardest_accuracy = min(results["per_corruption"][hardest].values())
    sensitivity = results["per_class_sensitivity"]
    fragile = max(sensitivity, key=sensitivity.get) if sensitivity else None
    text = (
        f"**Summary.** Clean test accuracy {_percent(results['clean_accuracy'])}; averaged over every "
        f"corruption and severity, {_percent(results['mean_corruption_accuracy'])}."
    )
    noise = results.get("gaussian_noise", {}).get("sigma_0.1")
    if noise:
        text += f" Gaussian noise of σ 0.1 costs {100 * noise['drop']:.1f} points."
    text += f" The hardest corruption is {hardest.replace('_', ' ')} ({_percent(hardest_accuracy)} at its worst)"
    if fragile:
        text += f", and {fragile} is the emotion that suffers most"
    return text + "."
