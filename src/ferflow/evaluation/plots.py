"""Figures for the reports. Each function returns a matplotlib Figure; callers save it."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator


def class_distribution(counts: pd.DataFrame, title: str) -> plt.Figure:
    """Bar chart of images per class; `counts` has one column per split, one row per class."""
    fig, ax = plt.subplots(figsize=(8, 4))
    counts.plot.bar(ax=ax, rot=0)
    ax.set_title(title)
    ax.set_xlabel("emotion")
    ax.set_ylabel("images")
    ax.legend(title="split")
    fig.tight_layout()
    return fig


def face_grid(
    images: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...], per_class: int, seed: int, title: str
) -> plt.Figure:
    """A row of randomly chosen faces per class."""
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(
        len(class_names), per_class, figsize=(per_class * 1.1, len(class_names) * 1.2), squeeze=False
    )
    for row, name in enumerate(class_names):
        members = np.flatnonzero(labels == row)
        chosen = rng.choice(members, size=min(per_class, len(members)), replace=False)
        for col in range(per_class):
            ax = axes[row, col]
            ax.axis("off")
            if col < len(chosen):
                ax.imshow(images[chosen[col]], cmap="gray", vmin=0, vmax=255)
        axes[row, 0].set_title(name, loc="left", fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def intensity_histograms(
    images: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...], title: str
) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(8, 4))
    bins = np.arange(0, 257, 8)
    for i, name in enumerate(class_names):
        values = images[labels == i].ravel()
        ax.hist(values, bins=bins, density=True, histtype="step", label=name)
    ax.set_title(title)
    ax.set_xlabel("grey value (0 = black, 255 = white)")
    ax.set_ylabel("density")
    ax.legend(ncol=2, fontsize=8)
    fig.tight_layout()
    return fig


def training_curves(history: pd.DataFrame) -> plt.Figure:
    """Loss and accuracy per epoch, train against validation."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    marker = "o" if len(history) <= 30 else None
    for ax, metric in zip(axes, ("loss", "accuracy")):
        ax.plot(history["epoch"], history[metric], marker=marker, label="train")
        ax.plot(history["epoch"], history[f"val_{metric}"], marker=marker, label="validation")
        ax.set_title(f"{metric} per epoch")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        # Fixed scales, so that the figures of two runs compare side by side (dvc plots diff).
        top = 1.0 if metric == "accuracy" else max(2.5, float(history[[metric, f"val_{metric}"]].max().max()) * 1.05)
        ax.set_ylim(0, top)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def confusion_matrix(
    counts: np.ndarray, class_names: tuple[str, ...], title: str, normalise: bool = False
) -> plt.Figure:
    """Heat map of true (rows) against predicted (columns) classes."""
    values = counts.astype(float)
    if normalise:
        values = values / np.maximum(values.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7, 6))
    image = ax.imshow(values, cmap="Blues")
    fig.colorbar(image, ax=ax, label="fraction of true class" if normalise else "images")
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    threshold = values.max() / 2 if values.size else 0
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            text = f"{values[i, j]:.2f}" if normalise else f"{int(values[i, j])}"
            ax.text(
                j, i, text, ha="center", va="center", fontsize=8, color="white" if values[i, j] > threshold else "black"
            )
    fig.tight_layout()
    return fig


def face_strip(images: np.ndarray, titles: list[str], title: str, per_row: int = 8) -> plt.Figure:
    """Faces in rows, each with a short caption (for blanks, duplicates, errors)."""
    count = max(len(images), 1)
    rows = (count + per_row - 1) // per_row
    fig, axes = plt.subplots(rows, per_row, figsize=(per_row * 1.3, rows * 1.6), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, caption in zip(axes.ravel(), images, titles):
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        ax.set_title(caption, fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def mean_faces(images: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...], title: str) -> plt.Figure:
    """The pixel-wise mean face of each class."""
    fig, axes = plt.subplots(1, len(class_names), figsize=(len(class_names) * 1.5, 2.0), squeeze=False)
    for i, (ax, name) in enumerate(zip(axes[0], class_names)):
        members = images[labels == i]
        ax.imshow(members.mean(axis=0), cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"{name}\n(n={len(members)})", fontsize=8)
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def per_class_f1(per_class: dict[str, dict[str, float]], title: str) -> plt.Figure:
    """Bar chart of F1 per emotion, with its support in the tick label."""
    names = list(per_class)
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar(range(len(names)), [per_class[n]["f1"] for n in names], color="tab:blue")
    ax.set_xticks(range(len(names)), [f"{n}\n(n={per_class[n]['support']})" for n in names])
    ax.set_ylim(0, 1)
    ax.set_xlabel("emotion (test faces)")
    ax.set_ylabel("F1")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def reliability_diagram(bins: pd.DataFrame, ece: float, title: str) -> plt.Figure:
    """Accuracy against confidence per bin; the diagonal is perfect calibration."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    filled = bins[bins["count"] > 0]
    width = float(bins["bin_high"].iloc[0] - bins["bin_low"].iloc[0])
    ax.bar(
        filled["bin_low"],
        filled["accuracy"],
        width=width,
        align="edge",
        edgecolor="black",
        color="tab:blue",
        alpha=0.8,
        label="accuracy in bin",
    )
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    ax.plot(
        filled["confidence"],
        filled["accuracy"],
        marker="o",
        color="tab:orange",
        label="accuracy at the bin's mean confidence",
    )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence of the predicted class")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title}\nECE = {ece:.3f}")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def occlusion_maps(faces: list[np.ndarray], maps: list[np.ndarray], captions: list[str], title: str) -> plt.Figure:
    """Each face beside its occlusion map (red: covering this region lowers the class's probability)."""
    count = len(faces)
    fig, axes = plt.subplots(2, max(count, 1), figsize=(max(count, 1) * 2.0, 4.6), squeeze=False)
    image = None
    for i, (face, heat, caption) in enumerate(zip(faces, maps, captions)):
        axes[0, i].imshow(np.squeeze(face), cmap="gray", vmin=0, vmax=255)
        axes[0, i].set_title(caption, fontsize=8)
        # Each map on its own scale: one confident face would otherwise wash out all the others.
        limit = float(np.abs(heat).max()) or 1.0
        axes[1, i].imshow(np.squeeze(face), cmap="gray", vmin=0, vmax=255)
        image = axes[1, i].imshow(
            heat / limit,
            cmap="RdBu_r",
            vmin=-1,
            vmax=1,
            alpha=0.75,
            extent=(-0.5, face.shape[1] - 0.5, face.shape[0] - 0.5, -0.5),
            interpolation="bilinear",
        )
        axes[1, i].set_title(f"largest drop {limit:.2f}", fontsize=7)
        for ax in axes[:, i]:
            ax.axis("off")
    if image is not None:
        fig.colorbar(
            image, ax=axes[1, :].tolist(), shrink=0.8, label="drop in class probability\n(share of each face's largest)"
        )
    fig.suptitle(title)
    return fig


def corruption_heatmap(table: pd.DataFrame, title: str) -> plt.Figure:
    """Accuracy for each corruption (rows) and severity (columns)."""
    grid = table[table["severity"] > 0].pivot(index="corruption", columns="severity", values="accuracy")
    grid = grid.loc[list(dict.fromkeys(table["corruption"]))]
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(grid) + 1.5))
    # The scale spans the data (to whole tenths), so differences between cells show.
    low, high = np.floor(grid.values.min() * 10) / 10, np.ceil(grid.values.max() * 10) / 10
    image = ax.imshow(grid.values, cmap="viridis", vmin=low, vmax=max(high, low + 0.1), aspect="auto")
    fig.colorbar(image, ax=ax, label="test accuracy")
    ax.set_xticks(range(grid.shape[1]), [f"severity {c}" for c in grid.columns])
    ax.set_yticks(range(grid.shape[0]), grid.index)
    ax.set_xlabel("severity")
    ax.set_ylabel("corruption")
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            ax.text(
                j,
                i,
                f"{grid.values[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if grid.values[i, j] < (low + high) / 2 else "black",
            )
    ax.set_title(title)
    fig.tight_layout()
    return fig


def corruption_curves(table: pd.DataFrame, title: str) -> plt.Figure:
    """Accuracy against severity (0 = clean), one line per corruption."""
    fig, ax = plt.subplots(figsize=(8, 5))
    colours = plt.get_cmap("tab20").colors
    for index, (name, group) in enumerate(table.groupby("corruption", sort=False)):
        # 20 distinct colours, and a second line style, so no two of up to 20 lines look alike
        ax.plot(
            group["severity"],
            group["accuracy"],
            marker="os^Dv<>p"[index % 8],
            label=name,
            color=colours[(2 * index) % 20 + (index >= 10)],
            linestyle="-" if index < 10 else "--",
        )
    ax.set_xticks(sorted(table["severity"].unique()))
    ax.set_xlabel("severity (0 = clean)")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)  # fixed, so that the figures of two runs compare side by side (dvc plots diff)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def corruption_grid(examples: dict[str, list[np.ndarray]], title: str) -> plt.Figure:
    """One face under each corruption: a row per corruption, a column per severity (0 = clean)."""
    columns = max(len(views) for views in examples.values())
    fig, axes = plt.subplots(len(examples), columns, figsize=(1.5 * columns, 1.5 * len(examples)), squeeze=False)
    for row, (name, views) in enumerate(examples.items()):
        for severity in range(columns):
            ax = axes[row, severity]
            ax.axis("off")
            if severity < len(views):
                ax.imshow(np.squeeze(views[severity]), cmap="gray", vmin=0, vmax=255)
                ax.set_title(f"{name}\nseverity {severity}" if severity else f"{name}\nclean", fontsize=7)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / fig.get_figheight()))  # room for the title above the first row
    return fig


def class_sensitivity(sensitivity: pd.Series, title: str) -> plt.Figure:
    """Bar chart of recall lost under corruption, per class."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(sensitivity.index, sensitivity.values, color="tab:red")
    ax.set_xlabel("emotion")
    ax.set_ylabel("clean recall − mean corrupted recall")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig
