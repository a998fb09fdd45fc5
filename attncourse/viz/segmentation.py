"""Pictures for segmentation (module 06): image | ground truth | prediction, PAM and CAM attention.

Every function returns a matplotlib ``Figure`` (Jupyter shows it; call ``plt.close(fig)`` in scripts).
Label maps are drawn with one fixed colour per class (background black) and the ignore index in white, so
the truth and the prediction columns can be compared pixel by pixel.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import ListedColormap

__all__ = ["label_colors", "show_segmentation", "show_pam_attention", "show_channel_affinity"]


def label_colors(num_classes: int = 11) -> ListedColormap:
    """A colour map for label maps: class 0 (background) black, classes 1.. from ``tab10``, then white (ignore)."""
    tab = plt.get_cmap("tab10")
    colors = [(0, 0, 0, 1)] + [tab(i % 10) for i in range(num_classes - 1)] + [(1, 1, 1, 1)]
    return ListedColormap(colors)


def _labels_for_display(y, num_classes: int, ignore_index: int) -> np.ndarray:
    y = torch.as_tensor(y).long().clone()
    y[y == ignore_index] = num_classes  # the last colour: white
    return y.numpy()


def show_segmentation(images, truth, pred=None, classes=None, ignore_index: int = 255, title: str | None = None,
                      cell: float = 1.8):
    """One row per sample: the image, its ground-truth labels and (when given) the predicted labels.

    ``images`` ``[N, 1, H, W]`` (uint8 or float), ``truth`` / ``pred`` ``[N, H, W]`` integer label maps.
    """
    images = torch.as_tensor(images)
    n = len(images)
    k = len(classes) if classes is not None else 11
    cmap = label_colors(k)
    cols = 3 if pred is not None else 2
    fig, axes = plt.subplots(n, cols, figsize=(cols * cell, n * cell + 0.4), squeeze=False)
    x = images.float() / (255.0 if images.dtype == torch.uint8 else 1.0)
    for i in range(n):
        panels = [("image", x[i, 0].numpy(), "gray", 0, 1), ("truth", _labels_for_display(truth[i], k, ignore_index), cmap, 0, k)]
        if pred is not None:
            panels.append(("prediction", _labels_for_display(pred[i], k, ignore_index), cmap, 0, k))
        for ax, (name, img, cm, lo, hi) in zip(axes[i], panels):
            ax.imshow(img, cmap=cm, vmin=lo - (0 if name == "image" else 0.5), vmax=hi + (0 if name == "image" else 0.5),
                      interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=9)
    if classes is not None:
        handles = [plt.Rectangle((0, 0), 1, 1, facecolor=cmap(c), edgecolor="0.5") for c in range(k + 1)]
        fig.legend(handles, [*classes, "ignore"], loc="lower center", ncol=min(k + 1, 6), fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.08 if classes is not None else 0, 1, 1))
    return fig


def show_pam_attention(image, attention, queries, feature_size, title: str | None = None, cell: float = 2.0):
    """Where chosen query pixels look: PAM's attention row of each query, upsampled over the image.

    ``image`` ``[1, H, W]``; ``attention`` ``[N, N]`` (one sample's ``S`` from
    ``PositionAttention.attention_maps``) on a feature map of ``feature_size = (h, w)``; ``queries`` a list of
    ``(row, col)`` positions on that feature map. Each panel marks its query with a red cross.
    """
    h, w = feature_size
    img = torch.as_tensor(image).float()
    img = (img / 255.0 if torch.as_tensor(image).dtype == torch.uint8 else img)[0].numpy()
    H, W = img.shape
    fig, axes = plt.subplots(1, len(queries), figsize=(len(queries) * cell, cell + 0.4), squeeze=False)
    for ax, (r, c) in zip(axes[0], queries):
        row = torch.as_tensor(attention)[r * w + c].reshape(1, 1, h, w).float()
        up = torch.nn.functional.interpolate(row, size=(H, W), mode="nearest")[0, 0].numpy()
        ax.imshow(img, cmap="gray")
        ax.imshow(up, cmap="magma", alpha=0.6)
        ax.plot((c + 0.5) * W / w - 0.5, (r + 0.5) * H / h - 0.5, "x", color="red", ms=9, mew=2)
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(f"query ({r}, {c})", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def show_channel_affinity(attention, title: str | None = None, cell: float = 3.2):
    """CAM's ``C × C`` attention ``S`` (row ``c``: how channel ``c`` mixes the others) as a heat map."""
    s = torch.as_tensor(attention).float().numpy()
    fig, ax = plt.subplots(figsize=(cell + 0.8, cell))
    im = ax.imshow(s, cmap="viridis")
    ax.set_xlabel("channel j (mixed in)")
    ax.set_ylabel("channel i (output)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
