"""Figures for the reports. Each function returns a matplotlib Figure; callers save it."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


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


def face_grid(images: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...],
              per_class: int, seed: int, title: str) -> plt.Figure:
    """A row of randomly chosen faces per class."""
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(len(class_names), per_class,
                             figsize=(per_class * 1.1, len(class_names) * 1.2), squeeze=False)
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


def intensity_histograms(images: np.ndarray, labels: np.ndarray,
                         class_names: tuple[str, ...], title: str) -> plt.Figure:
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
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        ax.plot(history["epoch"], history[metric], marker="o", label="train")
        ax.plot(history["epoch"], history[f"val_{metric}"], marker="o", label="validation")
        ax.set_title(f"{metric} per epoch")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.legend()
    fig.tight_layout()
    return fig


def confusion_matrix(counts: np.ndarray, class_names: tuple[str, ...], title: str,
                     normalise: bool = False) -> plt.Figure:
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
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if values[i, j] > threshold else "black")
    fig.tight_layout()
    return fig


def noise_curve(results: pd.DataFrame, title: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(results["sigma"], results["accuracy"], marker="o")
    ax.set_title(title)
    ax.set_xlabel("Gaussian noise sigma (pixels on [0, 1])")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
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


def mean_faces(images: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...],
               title: str) -> plt.Figure:
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
