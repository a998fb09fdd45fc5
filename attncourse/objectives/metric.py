"""Metric learning for re-identification (task kind ``"metric"``): P×K batches, identity cross-entropy plus a
batch-hard triplet loss, and CMC / mAP on a query set against a gallery.

The model's convention (as in the re-ID models of :mod:`attncourse.models.reid`):

* in **training** mode ``model(x)`` returns ``(logits, embedding)`` — ``logits [N, identities]`` for the
  identity classifier, ``embedding [N, D]`` for the triplet loss;
* in **eval** mode it returns the ``embedding [N, D]`` alone: test identities are new people, so there is
  nothing to classify, only distances to rank.

Distances are Euclidean between the embeddings, in the triplet loss and in evaluation alike (``normalize=True``
measures them between L2-normalised embeddings instead).

Batches (Hermans, Beyer & Leibe, "In Defense of the Triplet Loss for Person Re-Identification", 2017,
arXiv:1703.07737): each step takes ``P`` identities and ``K`` tracklets of each (``K = 4``; an identity with
fewer tracklets is sampled with replacement). The profile's ``batch_size`` counts frames, like the task's
``n_train``: ``P = batch_size // (frames · K)`` (at least 2, at most the number of identities). Each epoch
visits every identity once, in a random order (the last incomplete group is dropped).

Batch-hard triplet loss: for every anchor, its farthest positive (same identity) and its nearest negative,
``max(0, d(a, p) − d(a, n) + margin)``, averaged over anchors that have both.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..metrics.effect import encode_array, mean_items
from ..metrics.reid import reid_metrics
from . import Objective, iter_outputs, register_objective

__all__ = ["MetricLearning", "batch_hard_triplet", "pk_groups", "embed", "reid_evaluate"]

K_PER_IDENTITY = 4
MARGIN = 0.3


def pk_groups(labels: torch.Tensor, p: int, k: int, generator: torch.Generator) -> list[torch.Tensor]:
    """One epoch of P×K index batches over ``labels`` (CPU int64): every identity once, ``k`` samples each."""
    labels = labels.cpu()
    ids = labels.unique()
    p = max(1, min(p, len(ids)))
    members = {int(i): torch.nonzero(labels == i).flatten() for i in ids}
    order = ids[torch.randperm(len(ids), generator=generator)]
    out = []
    for s in range(0, len(order) - p + 1, p):
        idx = []
        for i in order[s:s + p].tolist():
            m = members[i]
            if len(m) >= k:
                pick = m[torch.randperm(len(m), generator=generator)[:k]]
            else:
                pick = m[torch.randint(len(m), (k,), generator=generator)]
            idx.append(pick)
        out.append(torch.cat(idx))
    return out


def _distances(emb: torch.Tensor, other: torch.Tensor | None = None, normalize: bool = False) -> torch.Tensor:
    a = emb.float()
    b = a if other is None else other.float()
    if normalize:
        a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    sq = (a.square().sum(1, keepdim=True) + b.square().sum(1)[None, :] - 2 * a @ b.T).clamp_min(1e-12)
    return sq.sqrt()  # the floor keeps sqrt differentiable where two embeddings coincide


def batch_hard_triplet(emb: torch.Tensor, y: torch.Tensor, margin: float = MARGIN, normalize: bool = False) -> torch.Tensor:
    """Batch-hard triplet loss on ``emb [N, D]`` (Euclidean; ``normalize``: between L2-normalised embeddings) with
    identities ``y [N]`` (0 when no anchor has both a positive and a negative)."""
    d = _distances(emb, normalize=normalize)
    same = y[:, None] == y[None, :]
    eye = torch.eye(len(y), dtype=torch.bool, device=y.device)
    pos = same & ~eye
    neg = ~same
    valid = pos.any(1) & neg.any(1)
    if not valid.any():
        return emb.float().sum() * 0.0
    hardest_pos = torch.where(pos, d, torch.zeros_like(d)).amax(1)
    hardest_neg = torch.where(neg, d, torch.full_like(d, float("inf"))).amin(1)
    return F.relu(hardest_pos - hardest_neg + margin)[valid].mean()


def _split_output(out):
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise ValueError("metric objective: in training the model must return (logits, embedding), got "
                         f"{type(out).__name__}; see attncourse.objectives.metric")
    return out


@torch.no_grad()
def embed(model: nn.Module, x: torch.Tensor, batch_size: int = 256, *, amp: bool | None = None,
          channels_last: bool | None = None) -> torch.Tensor:
    """Eval-mode embeddings ``[N, D]`` (float32, CPU) of tracklets ``x`` (uint8 or float ``[N, T, C, H, W]``)."""
    parts = [out.float().cpu() for _, out in iter_outputs(model, x, batch_size, amp=amp, channels_last=channels_last)]
    return torch.cat(parts) if parts else torch.empty(0)


def reid_evaluate(model: nn.Module, task, x_test: torch.Tensor | None = None, *, batch_size: int = 256,
                  amp: bool | None = None, channels_last: bool | None = None, margin: float = MARGIN,
                  normalize: bool = False, per_query: bool = False) -> dict:
    """Query/gallery evaluation: ``{"loss", "map", "rank1", "rank5", "rank10", "n_queries"}``.

    ``x_test`` replaces the task's test tracklets (same identities, cameras and query roles — e.g. the same
    tracklets generated without occlusion). ``loss`` is the batch-hard triplet loss of each query against
    the gallery (its farthest valid positive, its nearest negative). ``per_query``: also each query's ``ap`` and
    ``first_hit`` (see :func:`~attncourse.metrics.reid.reid_metrics`).
    """
    x = task.x_test if x_test is None else x_test
    emb = embed(model, x, batch_size, amp=amp, channels_last=channels_last)
    q = task.query_test.cpu()
    y, cam = task.y_test.cpu(), task.cam_test.cpu()
    if not q.any() or q.all():
        return {"loss": float("nan"), "map": float("nan"), "rank1": float("nan"), "rank5": float("nan"),
                "rank10": float("nan"), "n_queries": 0}
    d = _distances(emb[q], emb[~q], normalize)
    out = reid_metrics(d, y[q], y[~q], cam[q], cam[~q], per_query=per_query)
    same = y[q][:, None] == y[~q][None, :]
    valid_pos = same & ~(cam[q][:, None] == cam[~q][None, :])
    has = valid_pos.any(1) & (~same).any(1)
    if has.any():
        hp = torch.where(valid_pos, d, torch.zeros_like(d)).amax(1)
        hn = torch.where(~same, d, torch.full_like(d, float("inf"))).amin(1)
        loss = F.relu(hp - hn + margin)[has].mean().item()
    else:
        loss = float("nan")
    return {"loss": loss, **out}


class MetricLearning(Objective):
    """Identity cross-entropy + batch-hard triplet loss on P×K batches; test metric mAP (also rank-1/5/10)."""

    kind = "metric"
    metric = "map"

    def __init__(self, k: int = K_PER_IDENTITY, margin: float = MARGIN, triplet_weight: float = 1.0,
                 normalize: bool = False):
        self.k, self.margin, self.triplet_weight, self.normalize = k, margin, triplet_weight, normalize

    def identities_per_batch(self, task, batch_size: int) -> int:
        frames = task.x_train.shape[1]
        n_ids = len(task.y_train.unique())
        return max(1, min(n_ids, max(2, batch_size // (frames * self.k))))

    def steps_per_epoch(self, task, batch_size):
        n_ids = len(task.y_train.unique())
        return max(1, n_ids // self.identities_per_batch(task, batch_size))

    def batches(self, task, batch_size, generator):
        p = self.identities_per_batch(task, batch_size)
        for idx in pk_groups(task.y_train, p, self.k, generator):
            yield idx.to(task.x_train.device)

    def loss(self, out, y):
        logits, emb = _split_output(out)
        return F.cross_entropy(logits.float(), y) + self.triplet_weight * batch_hard_triplet(emb, y, self.margin,
                                                                                            self.normalize)

    def train_hits(self, out, y):
        logits, _ = _split_output(out)
        return (logits.detach().argmax(1) == y).sum(), y.numel()

    def evaluate(self, model, task, *, batch_size=512, amp=None, channels_last=None):
        return reid_evaluate(model, task, batch_size=batch_size, amp=amp, channels_last=channels_last,
                             margin=self.margin, normalize=self.normalize)

    def item_outcomes(self, model, task, *, batch_size=512, amp=None, channels_last=None):
        """Each counted query's AP (mAP is their mean) and whether its first match is at rank 1."""
        out = reid_evaluate(model, task, batch_size=batch_size, amp=amp, channels_last=channels_last,
                            margin=self.margin, normalize=self.normalize, per_query=True)
        if "ap" not in out:  # no query/gallery split in this task
            return None
        return {**mean_items(out["ap"].numpy(), kind="ap"),
                "rank1": encode_array(np.packbits((out["first_hit"] == 1).numpy()))}


register_objective(MetricLearning())
