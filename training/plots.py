"""Figures people would rather look at than read: curves, confusion matrix, mistakes."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from hv.labels import OUTPUT_NAMES  # noqa: E402


def plot_history(history: dict[str, list[float]], phase_starts: list[int], path: Path) -> None:
    """Loss and accuracy per epoch (train and validation), phases marked."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for key, style in ((metric, "-"), (f"val_{metric}", "--")):
            if key in history and history[key]:
                values = history[key]
                ax.plot(range(1, len(values) + 1), values, style, marker="o", label=key)
        for start in phase_starts[1:]:
            ax.axvline(start + 0.5, color="grey", linewidth=0.8)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend()
    fig.suptitle("training curves (grey line: phase 2 starts)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(matrix: np.ndarray, path: Path, title: str) -> None:
    """Confusion matrix with counts and row-normalised colour (rows = true classes present, columns = outputs)."""
    present = [i for i in range(matrix.shape[0]) if matrix[i].sum()] or list(range(matrix.shape[0]))
    matrix = matrix[present]
    rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6, 1.2 + 0.9 * len(present)))
    ax.imshow(rows, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(matrix.shape[1]), OUTPUT_NAMES[: matrix.shape[1]], rotation=30, ha="right")
    ax.set_yticks(range(len(present)), [OUTPUT_NAMES[i] for i in present])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ax.text(j, i, f"{matrix[i, j]}\n{rows[i, j]:.0%}", ha="center", va="center",
                    color="white" if rows[i, j] > 0.5 else "black", fontsize=9)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_mistakes(crops: list[np.ndarray], captions: list[str], path: Path, columns: int = 6) -> None:
    """A grid of misclassified crops captioned 'true -> predicted (confidence)'."""
    if not crops:
        return
    rows = (len(crops) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, crop, caption in zip(axes.flat, crops, captions):
        ax.imshow(crop)
        ax.set_title(caption, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
