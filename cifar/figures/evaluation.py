"""The figures that say where a model fails and whether to trust its scores: reliability diagram,
per-class accuracy, its most confident mistakes, Grad-CAM heatmaps, accuracy under corruptions."""

import numpy as np

from cifar.figures import plt
from cifar.figures.grids import image_grid, prediction_titles


def reliability_figure(bins, ece):
    """Accuracy against confidence per bin, with the diagonal a calibrated model follows, and the counts."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 7), height_ratios=[3, 1], sharex=True)
    width = bins[0][1] - bins[0][0]
    lower = np.array([b[0] for b in bins])
    accuracy = np.array([np.nan if b[3] is None else b[3] for b in bins])
    top.bar(lower, accuracy, width=width, align="edge", edgecolor="black", label="accuracy")
    top.plot([0, 1], [0, 1], "--", color="grey", label="calibrated")
    top.set_ylabel("accuracy")
    top.set_title(f"Reliability diagram (ECE {ece:.4f}, {len(bins)} bins)")
    top.legend(loc="upper left")
    bottom.bar(lower, [b[2] for b in bins], width=width, align="edge", color="tab:gray")
    bottom.set_yscale("log")
    bottom.set_xlabel("confidence (top class probability)")
    bottom.set_ylabel("images")
    fig.tight_layout()
    return fig


def per_class_accuracy_figure(accuracy, classes):
    height = max(3.0, 0.22 * len(classes))
    fig, ax = plt.subplots(figsize=(7, height))
    order = np.arange(len(classes))[::-1]
    ax.barh(order, accuracy, color="tab:blue")
    ax.set_yticks(order, classes, fontsize=max(4, min(9, 500 / len(classes))))
    ax.set_xlim(0, 1)
    ax.set_xlabel("accuracy (recall) on the test set")
    ax.set_title("Accuracy per class")
    fig.tight_layout()
    return fig


def mistakes_figure(images, true_labels, predicted, scores, classes):
    titles = prediction_titles(true_labels, predicted, scores, classes)
    return image_grid(images, titles, tile_height=3) if len(images) else _empty("No mistakes on the test set")


def gradcam_figure(images, heatmaps, titles):
    """Each image with its Grad-CAM heatmap over it."""
    if not len(images):
        return _empty("No images")
    cols = 8
    rows = int(np.ceil(len(images) / cols))
    fig = plt.figure(figsize=(2 * cols - 1, (3 + 0.5 * max(title.count("\n") for title in titles)) * rows))
    for i, (image, heatmap, title) in enumerate(zip(images, heatmaps, titles)):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.axis("off")
        ax.imshow(image)
        ax.imshow(heatmap, cmap="jet", alpha=0.45, vmin=0, vmax=1, interpolation="bilinear")
        ax.set_title(title, fontsize=9)
    fig.suptitle("Grad-CAM: where the evidence for the class lies (red: most)")
    fig.tight_layout()
    return fig


def robustness_figure(severities, accuracy, clean_accuracy, panels=None):
    """Accuracy against severity, a line per corruption, the clean accuracy as reference: a panel per
    group of corruptions ({title: names}), by default one of them all."""
    panels = panels or {"Accuracy under common corruptions": list(accuracy)}
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.5), squeeze=False)
    for ax, (title, names) in zip(axes[0], panels.items()):
        many = len(names) > 10  # tab20's colours, and the legend below the panel
        for index, name in enumerate(names):
            colour = plt.get_cmap("tab20").colors[index] if many else None
            ax.plot(severities, accuracy[name], marker="o", color=colour, label=name.replace("_", " "))
        ax.axhline(clean_accuracy, color="black", linestyle="--", label="no corruption")
        ax.set_xticks(severities)
        ax.set_xlabel("severity")
        ax.set_ylabel("test accuracy")
        ax.set_ylim(0, 1)
        ax.set_title(title)
        if many:
            ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.17))
        else:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _empty(text):
    fig, ax = plt.subplots(figsize=(4, 1))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center")
    return fig
