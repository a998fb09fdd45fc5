"""Re-identification metrics: CMC rank-k and mean average precision (mAP), written once.

The protocol of Market-1501 and MARS (Zheng et al., ICCV 2015; ECCV 2016): every query tracklet is ranked
against the gallery by distance. Gallery entries of the **same identity seen by the same camera** as the
query are removed from its ranking (they would be trivial matches, not re-identification across cameras);
everything else stays. A query whose identity has no remaining gallery entry is skipped (it has no answer
to find) and is not counted.

For one query, with the remaining gallery sorted by increasing distance:

* its CMC curve is 1 from the position of the first correct match on, 0 before it; rank-k is the mean of
  the curves at position k over the counted queries (the fraction whose first match is in the top k);
* its average precision is the mean, over its correct matches, of the precision at each match's position
  (matches at positions p₁ < p₂ < … give ``mean_i  i / p_i``, positions counted from 1).

Ties: equal distances are ranked in gallery order (a stable sort), so the result is deterministic and equal
to what a brute-force loop over the gallery in order computes. With real-valued embeddings ties are rare.
"""
from __future__ import annotations

import torch

__all__ = ["pairwise_distances", "reid_metrics", "cmc_map"]


def pairwise_distances(query: torch.Tensor, gallery: torch.Tensor, metric: str = "euclidean") -> torch.Tensor:
    """``[Q, D]``, ``[G, D]`` → ``[Q, G]`` distances in float32: ``"euclidean"`` or ``"cosine"`` (1 − cos)."""
    if query.dim() != 2 or gallery.dim() != 2 or query.shape[1] != gallery.shape[1]:
        raise ValueError(f"pairwise_distances: expected [Q, D] and [G, D] with the same D, got shapes "
                         f"{tuple(query.shape)} and {tuple(gallery.shape)}")
    q, g = query.float(), gallery.float()
    if metric == "euclidean":
        return torch.cdist(q, g).clamp_min_(0)
    if metric == "cosine":
        q = torch.nn.functional.normalize(q, dim=1)
        g = torch.nn.functional.normalize(g, dim=1)
        return (1 - q @ g.T).clamp_min_(0)
    raise ValueError(f"pairwise_distances: metric must be 'euclidean' or 'cosine', got {metric!r}")


def _as_1d(name: str, t, n: int) -> torch.Tensor:
    t = torch.as_tensor(t)
    if t.dim() != 1 or len(t) != n:
        raise ValueError(f"reid_metrics: {name} must be a 1-D tensor of length {n}, got shape {tuple(t.shape)}")
    return t


def reid_metrics(dist: torch.Tensor, query_ids, gallery_ids, query_cams, gallery_cams, ranks=(1, 5, 10),
                 chunk: int = 1024, per_query: bool = False) -> dict:
    """CMC rank-k and mAP from a ``[Q, G]`` distance matrix (smaller = more similar).

    Returns ``{"rank1": …, "rank5": …, "rank10": …, "map": …, "n_queries": counted queries}`` (fractions in
    [0, 1]; ``nan`` when no query has a valid match). Same-identity same-camera gallery entries are removed
    per query; ties are ranked in gallery order (see the module docstring). Queries are processed ``chunk``
    at a time, so memory stays ``O(chunk · G)``. ``per_query=True`` adds ``"ap"`` and ``"first_hit"`` (float64
    ``[counted]``: each counted query's AP and the 1-based rank of its first correct match), the per-item outcomes
    that an interval over test queries needs.
    """
    if not isinstance(dist, torch.Tensor) or dist.dim() != 2:
        raise ValueError(f"reid_metrics: dist must be a [Q, G] tensor, got "
                         f"{tuple(dist.shape) if isinstance(dist, torch.Tensor) else type(dist).__name__}")
    nq, ng = dist.shape
    qi, gi = _as_1d("query_ids", query_ids, nq), _as_1d("gallery_ids", gallery_ids, ng)
    qc, gc = _as_1d("query_cams", query_cams, nq), _as_1d("gallery_cams", gallery_cams, ng)
    ranks = tuple(int(r) for r in ranks)
    if any(r < 1 for r in ranks):
        raise ValueError(f"reid_metrics: ranks must be >= 1, got {ranks}")
    device = dist.device
    gi, gc = gi.to(device), gc.to(device)
    hits = {r: 0.0 for r in ranks}
    ap_sum, counted = 0.0, 0
    aps, firsts = [], []
    for s in range(0, nq, chunk):
        d = dist[s:s + chunk].float()
        order = torch.sort(d, dim=1, stable=True).indices                     # [q, G]
        same_id = qi[s:s + chunk].to(device)[:, None] == gi[order]
        same_cam = qc[s:s + chunk].to(device)[:, None] == gc[order]
        keep = ~(same_id & same_cam)                                         # removed: same identity, same camera
        match = same_id & keep
        position = keep.long().cumsum(1)                                     # 1-based position among kept entries
        n_match = match.sum(1)
        valid = n_match > 0
        if not valid.any():
            continue
        found = match.long().cumsum(1)
        precision = torch.where(match, found.double() / position.clamp_min(1).double(), torch.zeros((), dtype=torch.double,
                                                                                                      device=device))
        ap = precision.sum(1) / n_match.clamp_min(1).double()
        big = torch.iinfo(torch.long).max
        first = torch.where(match, position, torch.full_like(position, big)).min(1).values  # 1-based
        ap_sum += ap[valid].sum().item()
        if per_query:
            aps.append(ap[valid].cpu())
            firsts.append(first[valid].double().cpu())
        counted += int(valid.sum().item())
        for r in ranks:
            hits[r] += (first[valid] <= r).sum().item()
    out = {f"rank{r}": (hits[r] / counted if counted else float("nan")) for r in ranks}
    out["map"] = ap_sum / counted if counted else float("nan")
    out["n_queries"] = counted
    if per_query:
        out["ap"] = torch.cat(aps) if aps else torch.empty(0, dtype=torch.float64)
        out["first_hit"] = torch.cat(firsts) if firsts else torch.empty(0, dtype=torch.float64)
    return out


def cmc_map(query: torch.Tensor, gallery: torch.Tensor, query_ids, gallery_ids, query_cams, gallery_cams,
            metric: str = "euclidean", ranks=(1, 5, 10)) -> dict:
    """:func:`reid_metrics` of embeddings: distances by ``metric`` between ``[Q, D]`` queries and ``[G, D]`` gallery."""
    return reid_metrics(pairwise_distances(query, gallery, metric), query_ids, gallery_ids, query_cams, gallery_cams,
                        ranks)
