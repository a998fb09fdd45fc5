"""Pictures and tables for video re-identification (module 08, STA).

* :func:`show_tracklets` — tracklets as rows of frames, occluded rows outlined;
* :func:`plot_sta_attention` — one tracklet's frames, each frame's STA spatial map, and the T×K score matrix;
* :func:`plot_ranking` — a query tracklet and its top-k gallery tracklets, correct matches marked;
* :func:`reid_summary` / :func:`reid_results_table` — mAP and rank-1 (mean ± std over seeds) from recorded results.
"""
from __future__ import annotations

import statistics

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from .core import table

__all__ = ["show_tracklets", "plot_sta_attention", "plot_ranking", "reid_summary", "reid_results_table"]


def _frames(x) -> np.ndarray:
    """``[T, C, H, W]`` (uint8 or float) → ``[T, H, W]`` float in [0, 1] (first channel)."""
    x = torch.as_tensor(x).detach().cpu()
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    return x[:, 0].numpy()


def _mark_occlusion(ax, rows, width: int) -> None:
    rows = np.flatnonzero(np.asarray(rows))
    if len(rows):
        ax.add_patch(plt.Rectangle((-0.5, rows[0] - 0.5), width, len(rows), fill=False, edgecolor="#ff9f1c", lw=1.5))


def show_tracklets(x, labels=None, cams=None, occluded=None, title: str | None = None, cell: float = 0.9):
    """Each tracklet of ``x [N, T, C, H, W]`` as one row of frames; ``occluded [N, T, H]`` outlines hidden rows."""
    n, t = x.shape[:2]
    h, w = x.shape[-2:]
    fig, axes = plt.subplots(n, t, figsize=(cell * t * w / h * 1.6 + 0.6, cell * n * 1.6 + 0.5), squeeze=False)
    for i in range(n):
        frames = _frames(x[i])
        for j in range(t):
            ax = axes[i, j]
            ax.imshow(frames[j], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            if occluded is not None:
                _mark_occlusion(ax, occluded[i, j].cpu(), w)
            ax.set_xticks([]), ax.set_yticks([])
            if j == 0:
                parts = [f"id {int(labels[i])}" if labels is not None else "", f"cam {int(cams[i])}" if cams is not None else ""]
                ax.set_ylabel(" ".join(p for p in parts if p), fontsize=7)
            if i == 0:
                ax.set_title(f"frame {j + 1}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_sta_attention(tracklet, spatial, scores, occluded=None, title: str | None = None):
    """One tracklet: its frames (top), each frame's spatial map ``g`` upsampled over it (middle), and the ``T×K``
    score matrix (right; the best frame of each region boxed). ``tracklet [T, C, H, W]``, ``spatial [T, h, w]``,
    ``scores [T, K]``; ``occluded [T, H]`` outlines the hidden rows."""
    frames = _frames(tracklet)
    t, h, w = frames.shape
    g = torch.as_tensor(spatial).float().cpu()
    up = F.interpolate(g[:, None], size=(h, w), mode="nearest")[:, 0]
    up = (up / up.amax((1, 2), keepdim=True).clamp_min(1e-12)).numpy()
    s = torch.as_tensor(scores).float().cpu().numpy()
    k = s.shape[1]
    fig = plt.figure(figsize=(1.0 * t + 2.8, 3.9))
    grid = fig.add_gridspec(2, t + 2, width_ratios=[1] * t + [0.25, 2.2])
    for j in range(t):
        top, bottom = fig.add_subplot(grid[0, j]), fig.add_subplot(grid[1, j])
        top.imshow(frames[j], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        bottom.imshow(frames[j], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        bottom.imshow(up[j], cmap="magma", alpha=0.6, vmin=0, vmax=1, interpolation="nearest")
        for r in range(1, k):  # region boundaries on the feature map, in image rows
            bottom.axhline(r * h / k - 0.5, color="w", lw=0.5, ls=":")
        if occluded is not None:
            _mark_occlusion(top, torch.as_tensor(occluded[j]).cpu(), w)
        top.set_title(f"frame {j + 1}", fontsize=7)
        for ax in (top, bottom):
            ax.set_xticks([]), ax.set_yticks([])
    top0 = fig.axes[0]
    top0.set_ylabel("frames", fontsize=7)
    fig.axes[1].set_ylabel("spatial map g", fontsize=7)
    ax = fig.add_subplot(grid[:, t + 1])
    ax.imshow(s.T, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    best = s.argmax(0)
    for r in range(k):
        for j in range(t):
            ax.text(j, r, f"{s[j, r]:.2f}", ha="center", va="center", fontsize=7,
                    color="k" if s[j, r] > 0.5 else "w")
        ax.add_patch(plt.Rectangle((best[r] - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="#ff3b30", lw=2))
    ax.set_xticks(range(t), [str(j + 1) for j in range(t)], fontsize=7)
    ax.set_yticks(range(k), [f"region {r + 1}" for r in range(k)], fontsize=7)
    ax.set_xlabel("frame", fontsize=7)
    ax.set_title("scores S", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_ranking(query, gallery, correct, distances=None, title: str | None = None, query_label: str = "query"):
    """A query tracklet ``[T, C, H, W]`` (first row) and its ranked gallery tracklets ``[k, T, C, H, W]`` (one row
    each), correct matches framed green and wrong ones red; ``distances [k]`` are printed beside them."""
    k, t = len(gallery), query.shape[0]
    fig, axes = plt.subplots(k + 1, t, figsize=(0.62 * t + 1.2, 1.05 * (k + 1) + 0.4), squeeze=False)
    rows = [(_frames(query), None, query_label)] + [
        (_frames(gallery[i]), bool(correct[i]),
         f"#{i + 1}" + (f"  d={float(distances[i]):.2f}" if distances is not None else "")) for i in range(k)]
    for r, (frames, ok, label) in enumerate(rows):
        for j in range(t):
            ax = axes[r, j]
            ax.imshow(frames[j], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if ok is not None:
                for side in ax.spines.values():
                    side.set_edgecolor("#2ca02c" if ok else "#d62728")
                    side.set_linewidth(2.5)
        axes[r, 0].set_ylabel(label + ("" if ok is None else (" ✓" if ok else " ✗")), fontsize=7, rotation=0,
                              ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def _mean_std(values):
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def reid_summary(results: dict) -> dict:
    """Per arm, from recorded re-ID results: ``{"map": (mean, std), "rank1": (mean, std), "n": seeds}``.

    mAP is the results' primary metric (``final_test_acc``); rank-1 is read from each run's last test metrics.
    """
    out = {}
    for arm, a in results["arms"].items():
        maps = [r["final_test_acc"] for r in a["runs"]]
        rank1 = [r["history"]["test_metrics"][-1]["rank1"] for r in a["runs"]]
        out[arm] = {"map": _mean_std(maps), "rank1": _mean_std(rank1), "n": len(maps), "params": a["params"],
                    "flops": a["flops"]}
    return out


def reid_results_table(results: dict):
    """mAP and rank-1 (%, mean ± std over seeds), parameters and FLOPs per arm, from recorded re-ID results."""
    rows = []
    for arm, s in reid_summary(results).items():
        rows.append([arm, f"{100 * s['map'][0]:.1f} ± {100 * s['map'][1]:.1f}",
                     f"{100 * s['rank1'][0]:.1f} ± {100 * s['rank1'][1]:.1f}", s["n"], f"{s['params']:,}",
                     f"{s['flops'] / 1e6:.1f}M"])
    caption = (f"{results['experiment']}: test mAP and rank-1 (%) after {results['epochs']} epochs, profile "
               f"{results['profile']}, device {results['device']}, commit {results['git_commit'][:10]}")
    return table(["arm", "mAP (%)", "rank-1 (%)", "seeds", "params", "FLOPs"], rows, caption)
