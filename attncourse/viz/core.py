"""Pictures for the notebooks: image grids, training curves, attention overlays, result bars.

Every function returns a matplotlib ``Figure`` (Jupyter shows it; call ``plt.close(fig)`` in scripts).
"""
from __future__ import annotations

import html
import math

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["show_images", "plot_history", "overlay_attention", "plot_results", "results_table", "table",
           "plot_channel_weights", "plot_cost"]


def _to_numpy_images(x) -> np.ndarray:
    """[N, C, H, W] (uint8 or float) → float array [N, H, W] (C=1) or [N, H, W, 3] (C≥3: first three)."""
    x = torch.as_tensor(x).detach().cpu()
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    if x.dim() == 3:
        x = x[:, None]
    if x.dim() != 4:
        raise ValueError(f"expected images [N, C, H, W], got shape {tuple(x.shape)}")
    if x.shape[1] == 1:
        return x[:, 0].numpy()
    if x.shape[1] >= 3:
        return x[:, :3].permute(0, 2, 3, 1).clamp(0, 1).numpy()
    return x.mean(1).numpy()  # 2 channels: their mean


def _grid(n: int, ncols: int, cell: float = 1.4, extra_h: float = 0.0):
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell * ncols, cell * nrows + extra_h), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    return fig, axes


def _finish(fig, title: str | None = None):
    """A figure's common last step: its title, then a tight layout."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def show_images(x, labels=None, ncols: int = 8, title: str | None = None, cmap: str = "gray", cell: float = 1.4):
    """A grid of images ``[N, C, H, W]`` with optional labels under each. Multi-channel inputs with
    C ∉ {1, 3} are shown one channel per column for the first image when N == 1, else as the mean."""
    imgs = _to_numpy_images(x)
    n = len(imgs)
    aspect = imgs.shape[2] / imgs.shape[1]
    fig, axes = _grid(n, ncols, cell)
    fig.set_size_inches(cell * min(n, ncols) * max(1.0, aspect), fig.get_size_inches()[1])
    for i, ax in enumerate(axes.flat[:n]):
        ax.imshow(imgs[i], cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        if labels is not None:
            ax.set_title(str(labels[i]), fontsize=9)
    return _finish(fig, title)


def _series(h, key):
    if hasattr(h, key):
        return getattr(h, key)
    return h.get(key, []) if isinstance(h, dict) else []


def plot_history(histories: dict, metrics=("train_loss", "test_acc"), title: str | None = None):
    """Training curves of several runs, one panel per metric (``History`` objects or their dicts)."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for name, h in histories.items():
            ys = _series(h, metric)
            xs = _series(h, "epoch") or list(range(1, len(ys) + 1))
            ax.plot(xs, ys, marker="o", ms=3, label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric.replace("_", " "))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    return _finish(fig, title)


#: a results file's ``metric`` → its name in labels
_METRIC_UNITS = {"accuracy": "accuracy", "miou": "mIoU", "map": "mAP"}


def plot_recorded_curves(results: dict, arms=None, metrics=("train_acc", "test_acc"), title: str | None = None):
    """The recorded training curves of ``arms`` (default: every arm), every seed: thin lines per seed, the mean
    over seeds thick, one colour per arm, one panel per metric — what the full-profile runs did epoch by epoch."""
    arms = list(results["arms"]) if arms is None else list(arms)
    if missing := [a for a in arms if a not in results["arms"]]:
        raise ValueError(f"plot_recorded_curves: {results.get('experiment')!r} has no arm(s) {missing}; "
                         f"arms: {list(results['arms'])}")
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.4 * len(metrics), 3.3), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, metric in zip(axes[0], metrics):
        for k, arm in enumerate(arms):
            color = colors[k % len(colors)]
            curves = [r["history"].get(metric) or [] for r in results["arms"][arm]["runs"] if r.get("history")]
            curves = [c for c in curves if c]
            if not curves:
                continue
            n = min(len(c) for c in curves)
            xs = np.arange(1, n + 1)
            for c in curves:
                ax.plot(xs, c[:n], color=color, lw=0.8, alpha=0.35)
            ax.plot(xs, np.mean([c[:n] for c in curves], axis=0), color=color, lw=2,
                    label=f"{arm} ({len(curves)} seeds)")
        ax.set_xlabel("epoch")
        unit = _METRIC_UNITS.get(results.get("metric", "accuracy"), "accuracy")
        ax.set_ylabel(f"test {unit}" if metric == "test_acc" else metric.replace("_", " ").replace("acc", "accuracy"))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title or f"{results['experiment']}: recorded {results['profile']}-profile runs, {results['device']}",
                 fontsize=9)
    fig.tight_layout()
    return fig


def overlay_attention(images, maps, titles=None, ncols: int = 8, title: str | None = None, alpha: float = 0.5,
                      cmap: str = "jet", cell: float = 1.6):
    """Each image with its attention map (``[N, h, w]``, resized to the image, min-max scaled) on top."""
    imgs = _to_numpy_images(images)
    maps = torch.as_tensor(maps).detach().float().cpu()
    if maps.dim() == 4:
        maps = maps[:, 0]
    if maps.dim() != 3 or len(maps) != len(imgs):
        raise ValueError(f"overlay_attention: maps must be [N, h, w] with N={len(imgs)}, got {tuple(maps.shape)}")
    h, w = imgs.shape[1:3]
    up = F.interpolate(maps[:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
    lo = up.flatten(1).min(1).values[:, None, None]
    hi = up.flatten(1).max(1).values[:, None, None]
    up = ((up - lo) / (hi - lo).clamp_min(1e-8)).numpy()
    fig, axes = _grid(len(imgs), ncols, cell)
    for i, ax in enumerate(axes.flat[: len(imgs)]):
        ax.imshow(imgs[i], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.imshow(up[i], cmap=cmap, alpha=alpha, vmin=0, vmax=1)
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=9)
    return _finish(fig, title)


def plot_results(results: dict, metric: str = "final_test_acc", title: str | None = None):
    """Per arm, each seed's value as a dot and the mean over seeds with its 95 % interval (Student t over seeds) as
    a whisker, from a ``results/*.json`` dict. The axis spans the data, not 0 to the top: differences of a point show.

    The whisker is the arm's own mean's interval; the interval of a *difference* between two arms (paired seeds and
    test items) is :func:`attncourse.effects`'.
    """
    from ..metrics.effect import _t_quantile

    arms = list(results["arms"])
    vals = [[100 * r[metric] for r in results["arms"][a]["runs"]] for a in arms]
    means = [float(np.mean(v)) for v in vals]
    half = [_t_quantile(0.975, len(v) - 1) * float(np.std(v, ddof=1)) / len(v) ** 0.5 if len(v) > 1 else 0.0
            for v in vals]
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(arms), 3.2))
    for i, v in enumerate(vals):
        ax.scatter([i + 0.12] * len(v), v, color="0.45", s=12, zorder=3)
    ax.errorbar(range(len(arms)), means, yerr=half, fmt="o", color="#2b5d8a", ms=6, capsize=5, lw=1.6, zorder=4)
    lows = [m - h for m, h in zip(means, half)] + [x for v in vals for x in v]
    highs = [m + h for m, h in zip(means, half)] + [x for v in vals for x in v]
    pad = max(0.5, 0.08 * (max(highs) - min(lows)))
    ax.set_ylim(min(lows) - pad, max(highs) + pad)
    ax.set_xlim(-0.5, len(arms) - 0.5)
    ax.set_xticks(range(len(arms)), arms, rotation=20, ha="right")
    unit = {"miou": "mIoU", "map": "mAP"}.get(results.get("metric", "accuracy"), "accuracy")
    ax.set_ylabel(f"test {unit} (%)" if metric == "final_test_acc" else metric.replace("_", " "))
    ax.set_title(title or f"{results['experiment']} — {results['profile']} profile, {len(results['seeds'])} seed(s), "
                 f"{results['device']}\nmean and 95 % interval over seeds; grey: each seed", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


class _HTMLTable:
    def __init__(self, header, rows, caption=""):
        self.header, self.rows, self.caption = header, rows, caption

    def _repr_html_(self):
        esc = lambda v: html.escape(str(v))
        cap = f"<caption style='caption-side:bottom'>{esc(self.caption)}</caption>" if self.caption else ""
        th = "".join(f"<th>{esc(h)}</th>" for h in self.header)
        body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in self.rows)
        return f"<table>{cap}<thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"

    def __repr__(self):
        widths = [max(len(str(r[i])) for r in [self.header, *self.rows]) for i in range(len(self.header))]
        fmt = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths))
        return "\n".join([fmt(self.header), *map(fmt, self.rows)] + ([self.caption] if self.caption else []))


def table(header, rows, caption: str = ""):
    """A table for a notebook: HTML in Jupyter, Colab and on the website, aligned text in a console.

    Use it instead of ``display(Markdown("| a | b |..."))``: the website renders a ``text/markdown`` output as
    CommonMark, which has no tables, so such a table shows there as one paragraph of pipes.
    """
    rows = [list(r) for r in rows]
    header = list(header)
    if any(len(r) != len(header) for r in rows):
        raise ValueError(f"table: every row needs {len(header)} cells, like the header {header}")
    return _HTMLTable(header, rows, caption)


def results_table(results: dict):
    """Per-arm test metric (mean ± std over seeds; accuracy, mIoU or mAP as the results name it), params and FLOPs
    from a ``results/*.json`` dict."""
    unit = _METRIC_UNITS.get(results.get("metric", "accuracy"), results.get("metric", "accuracy"))
    rows = []
    for arm, a in results["arms"].items():
        rows.append([arm, f"{100 * a['mean_test_acc']:.1f} ± {100 * a['std_test_acc']:.1f}", len(a["runs"]),
                     f"{a['params']:,}", f"{a['flops'] / 1e6:.1f}M"])
    caption = (f"{results['experiment']}: test {unit} (%) after {results['epochs']} epochs, profile "
               f"{results['profile']}, device {results['device']}, commit {results['git_commit'][:10]}")
    header = "test acc (%)" if unit == "accuracy" else f"test {unit} (%)"
    return _HTMLTable(["arm", header, "seeds", "params", "FLOPs"], rows, caption)


def plot_channel_weights(weights, labels=None, title: str | None = None):
    """Heat map of channel weights ``[K, C]`` (e.g. mean SE excitation per class)."""
    w = torch.as_tensor(weights).detach().float().cpu().numpy()
    fig, ax = plt.subplots(figsize=(min(12, 2 + 0.18 * w.shape[1]), 0.6 + 0.35 * w.shape[0]))
    im = ax.imshow(w, aspect="auto", cmap="viridis")
    ax.set_xlabel("channel")
    if labels is not None:
        ax.set_yticks(range(len(labels)), [str(l) for l in labels])
    fig.colorbar(im, ax=ax, fraction=0.03)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_cost(table, keys=("params", "flops", "latency_ms")):
    """Bar charts of a :class:`~attncourse.cost.CostTable` (one panel per cost)."""
    names = list(table.rows)
    keys = [k for k in keys if all(k in r for r in table.rows.values())]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.4 * len(keys), 3.0), squeeze=False)
    for ax, k in zip(axes[0], keys):
        ax.bar(range(len(names)), [table.rows[n][k] for n in names], color="#c9a0dc")
        ax.set_xticks(range(len(names)), names, rotation=25, ha="right")
        ax.set_title(k)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig
