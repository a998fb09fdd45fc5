"""Statistics of attention maps over a test set: what a picture of one map claims, measured on every sample.

A single attention map is an anecdote. Each function here turns the claim a picture's caption makes into a
number over a whole split, so the notebooks can print it beside the picture:

* :func:`attention_share` — the share of each query's attention that falls on a set of keys (e.g. the pixels of
  the same digit, or of the other digit), next to the share a uniform attention would give (*chance*);
* :func:`mean_by_region` — the mean of a map over labelled regions (e.g. digit, occluder, background);
* :func:`mean_by_group` — the mean of per-sample vectors by group (e.g. SE's channel weights by marked channel);
* :func:`explained_share` — how much of the variation of per-sample vectors a grouping explains (η²);
* :func:`median_index` — the sample whose score is the median: the example to draw, neither the best nor the worst.
"""
from __future__ import annotations

import torch

__all__ = ["attention_share", "mean_by_region", "mean_by_group", "explained_share", "median_index", "cell_labels"]


def attention_share(attention: torch.Tensor, keys: torch.Tensor, queries: torch.Tensor | None = None):
    """Per query, the attention weight on the chosen keys, and the share of keys chosen (chance).

    ``attention [B, Q, N]``: each row a distribution over ``N`` keys (rows sum to 1, e.g. a softmax);
    ``keys`` bool ``[B, Q, N]`` (the keys that count for each query) or ``[B, N]`` (the same keys for every query of
    a sample); ``queries`` bool ``[B, Q]`` (the queries to keep; default all).
    Returns ``(share, chance)``, two 1-D float tensors with one entry per kept query: ``share = Σ_j a_ij·keys_ij``
    and ``chance = mean_j keys_ij``, what a uniform attention over the ``N`` keys would put on them. A share above
    chance means the queries look at those keys more than a uniform attention would.
    """
    if attention.dim() != 3:
        raise ValueError(f"attention_share: attention must be [B, Q, N], got shape {tuple(attention.shape)}")
    b, q, n = attention.shape
    if keys.dim() == 2:
        if tuple(keys.shape) != (b, n):
            raise ValueError(f"attention_share: keys [B, N] must be {(b, n)}, got {tuple(keys.shape)}")
        keys = keys[:, None, :].expand(b, q, n)
    if tuple(keys.shape) != (b, q, n):
        raise ValueError(f"attention_share: keys must be [B, Q, N] = {(b, q, n)} or [B, N], got {tuple(keys.shape)}")
    if queries is None:
        queries = torch.ones(b, q, dtype=torch.bool, device=attention.device)
    if tuple(queries.shape) != (b, q):
        raise ValueError(f"attention_share: queries must be [B, Q] = {(b, q)}, got {tuple(queries.shape)}")
    k = keys.to(attention.dtype)
    share = (attention * k).sum(-1)          # [B, Q]
    chance = k.mean(-1)                      # [B, Q]
    keep = queries.bool()
    return share[keep].float(), chance[keep].float()


def mean_by_region(maps: torch.Tensor, regions: torch.Tensor, names: dict[int, str]) -> dict[str, float]:
    """The mean of ``maps`` over the pixels of each region, pooled over all samples.

    ``maps [B, H, W]`` float; ``regions [B, H, W]`` integer region ids; ``names`` maps ids to names. Returns
    ``{name: mean}`` (``nan`` for a region with no pixel). Ids not in ``names`` are left out.
    """
    if maps.shape != regions.shape or maps.dim() != 3:
        raise ValueError(f"mean_by_region: maps and regions must both be [B, H, W], got {tuple(maps.shape)} and "
                         f"{tuple(regions.shape)}")
    out = {}
    for rid, name in names.items():
        mask = regions == rid
        out[name] = float(maps[mask].double().mean()) if mask.any() else float("nan")
    return out


def mean_by_group(values: torch.Tensor, groups: torch.Tensor, num_groups: int) -> torch.Tensor:
    """``values [N, C]`` averaged over the samples of each group: ``[G, C]``, row ``g`` the mean of the samples
    with ``groups == g`` (``nan`` for an empty group). ``groups [N]`` integers in ``[0, G)``."""
    if values.dim() != 2 or groups.dim() != 1 or len(groups) != len(values):
        raise ValueError(f"mean_by_group: values must be [N, C] and groups [N], got {tuple(values.shape)} and "
                         f"{tuple(groups.shape)}")
    if len(groups) and (groups.min() < 0 or groups.max() >= num_groups):
        raise ValueError(f"mean_by_group: groups must lie in [0, {num_groups}), got {int(groups.min())}.."
                         f"{int(groups.max())}")
    out = torch.full((num_groups, values.shape[1]), float("nan"), dtype=torch.float64)
    for g in range(num_groups):
        mask = groups == g
        if mask.any():
            out[g] = values[mask].double().mean(0)
    return out


def median_index(scores: torch.Tensor) -> int:
    """The index of the sample whose score is the median (the lower median for an even count): the example to
    draw, neither the best nor the worst. ``scores [N]``; ``nan`` scores are never chosen."""
    scores = torch.as_tensor(scores).flatten().double()
    ok = torch.nonzero(~scores.isnan()).flatten()
    if len(ok) == 0:
        raise ValueError("median_index: no finite score")
    order = ok[torch.argsort(scores[ok], stable=True)]
    return int(order[(len(order) - 1) // 2])


def cell_labels(labels: torch.Tensor, size, num_classes: int, ignore_index: int = 255,
                majority: float = 0.5) -> torch.Tensor:
    """The label of each cell of a coarser feature map: ``labels [B, H, W]`` → ``[B, h, w]``.

    A cell takes the class that covers more than ``majority`` of its pixels (average pooling of the one-hot
    labels, ignored pixels counting for no class); a cell with no such class is ``-1``.
    """
    if labels.dim() != 3:
        raise ValueError(f"cell_labels: labels must be [B, H, W], got {tuple(labels.shape)}")
    y = labels.long()
    valid = y != ignore_index
    onehot = torch.nn.functional.one_hot(torch.where(valid, y, torch.zeros_like(y)), num_classes).float()
    onehot = onehot * valid[..., None]
    pooled = torch.nn.functional.adaptive_avg_pool2d(onehot.permute(0, 3, 1, 2), tuple(size))   # [B, K, h, w]
    best, cls = pooled.max(1)
    return torch.where(best > majority, cls, torch.full_like(cls, -1))


def explained_share(values: torch.Tensor, groups: torch.Tensor, num_groups: int) -> float:
    """The share of the variance of ``values [N, C]`` across samples that the groups explain (η², the between-group
    sum of squares over the total), pooled over the ``C`` columns: 0 when every group has the same mean, 1 when the
    samples of a group are all alike. ``groups [N]`` integers in ``[0, G)``. Shuffled groups give the chance level
    (about ``(G − 1) / (N − 1)``)."""
    table = mean_by_group(values, groups, num_groups)                    # [G, C]
    v = values.double()
    grand = v.mean(0)
    counts = torch.bincount(groups, minlength=num_groups).double()
    present = counts > 0
    between = (counts[present, None] * (table[present] - grand) ** 2).sum()
    total = ((v - grand) ** 2).sum()
    return float(between / total) if total > 0 else float("nan")
