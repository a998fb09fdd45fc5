"""Experiments of module 04 (Non-local, GCNet, CCNet) on the long-range pairs task.

``nonlocal_pairs``: two digits at opposite ends of a 24×96 canvas, label "same class?". The baseline's
receptive field (25 px) never covers both digits, and "same?" cannot be read linearly from the globally
pooled sum of their features, so a local CNN with a linear classifier should stay near chance; a block that
relates distant positions *inside* the network can do better — and the ``baseline_mlp`` control measures how much
a non-linear read-out of the pooled features recovers without any attention.

Every arm is :class:`~attncourse.models.AttnResNet` (widths 16/32/64, one basic block per stage):

* ``baseline`` — no attention;
* ``nonlocal`` — :class:`~attncourse.blocks.nonlocal_.NonLocal2d` (embedded Gaussian, d = C/2) after
  stages 2 and 3 (maps 12×48 and 6×24), as the paper adds whole blocks between residual blocks;
* ``gc`` — :class:`~attncourse.blocks.nonlocal_.GlobalContext` on the residual branch of every basic
  block, with reduction r = 4 (``GC_REDUCTION``): the paper's r = 16 would leave 1, 2 and 4 units
  for widths 16/32/64;
* ``cc`` — :class:`~attncourse.blocks.nonlocal_.CrissCrossAttention` (R = 2) after stages 2 and 3;
* ``baseline_mlp`` — the control: no attention, but an MLP head (``MLP_HIDDEN`` hidden units) on the pooled
  features instead of a linear one. If it matches the non-local arm, the baseline lost for its linear read-out
  of the pooled vector, not for lack of non-local interaction inside the network.

Record it with ``python -m attncourse run-all --only nonlocal_pairs --profile full`` (resumable; on a 2-core
CPU as well as on a GPU).
"""
from __future__ import annotations

from ..models import AttnResNet
from .core import BackboneArm, Experiment, NetArm, register_experiment

GC_REDUCTION = 4
MLP_HIDDEN = 64

#: arm name → (registered block, its keyword arguments)
ARMS = {
    "baseline": ("none", {}),
    "nonlocal": ("nonlocal", {}),
    "gc": ("gc", {"reduction": GC_REDUCTION}),
    "cc": ("cc", {}),
}


def nonlocal_net(task, attention: str = "nonlocal", **attention_kwargs) -> AttnResNet:
    """The backbone of this module's experiments: ``AttnResNet`` with ``attention`` placed as its paper places it."""
    return BackboneArm(attention, attention_kwargs)(task)


register_experiment(Experiment(
    name="nonlocal_pairs",
    description=("Long-range pairs (two digits at opposite ends of a 24×96 canvas; label: same class?): AttnResNet "
                 "baseline vs + Non-local (embedded Gaussian, after stages 2 and 3) vs + GCNet (every residual block, "
                 f"r={GC_REDUCTION}) vs + CCNet (criss-cross, R=2, after stages 2 and 3), and a control: the baseline with "
                 f"an MLP head ({MLP_HIDDEN} hidden units) on the pooled features."),
    task="long_range_pairs",
    arms={**{arm: BackboneArm(block, kw) for arm, (block, kw) in ARMS.items()},
          "baseline_mlp": NetArm(AttnResNet, {"head_hidden": MLP_HIDDEN})},
    module="04_nonlocal",
))


# --------------------------------------------------------------------------- what the pictures of module 04 claim
def ink_cells(images, size, threshold: float = 0.3):
    """Which cells of a coarser ``size = (h, w)`` grid hold ink: ``images [B, 1, H, W]`` (floats in [0, 1]) →
    bool ``[B, h·w]``, a cell holding ink when any of its pixels exceeds ``threshold`` (max pooling)."""
    import torch.nn.functional as F

    if images.dim() != 4 or images.shape[1] != 1:
        raise ValueError(f"ink_cells: images must be [B, 1, H, W], got {tuple(images.shape)}")
    return (F.adaptive_max_pool2d((images > threshold).float(), tuple(size)) > 0).flatten(1)


def other_digit_share(attention, images, query_size, key_size, threshold: float = 0.3) -> dict:
    """Per image, how much of the attention of the left digit's positions falls on the right digit, against chance.

    ``attention [B, N, M]`` a non-local block's attention (rows over ``M`` keys) for queries on a ``query_size``
    grid (``N = h·w``) and keys on a ``key_size`` grid; ``images [B, 1, H, W]`` in [0, 1], one digit in each half.
    The queries are the cells of the left half holding ink (:func:`ink_cells`); each query's weight is summed over
    the right half's ink cells (``other_digit``), the left half's ink cells (``own_digit``) and the whole right half
    (``right_half``). Returns 1-D tensors ``[B]``, each averaged over the image's queries, and beside each its
    ``<name>_chance``: the share of key cells it covers, what a uniform attention would give. An image with no ink
    cell on the left is ``nan``.
    """
    import torch

    b, n, m = attention.shape
    (qh, qw), (kh, kw) = query_size, key_size
    if attention.dim() != 3 or n != qh * qw or m != kh * kw or len(images) != b:
        raise ValueError(f"other_digit_share: attention {tuple(attention.shape)} does not fit queries {query_size}, "
                         f"keys {key_size} and images {tuple(images.shape)}")
    q_cols = torch.arange(n, device=attention.device) % qw
    k_cols = torch.arange(m, device=attention.device) % kw
    queries = (ink_cells(images, query_size, threshold) & (q_cols < qw // 2)).float()     # [B, N]
    right = (k_cols >= kw - kw // 2).expand(b, m)
    ink = ink_cells(images, key_size, threshold)
    n_queries = queries.sum(1)
    out = {}
    for name, keys in [("other_digit", ink & right), ("own_digit", ink & ~right), ("right_half", right)]:
        per_query = (attention.float() @ keys.float()[:, :, None])[..., 0]                     # [B, N]
        out[name] = (per_query * queries).sum(1) / n_queries                                   # nan: no query
        out[f"{name}_chance"] = torch.where(n_queries > 0, keys.float().mean(1), torch.full_like(n_queries, float("nan")))
    return out


def nonlocal_statistics(model, block, task, batch_size: int = 250) -> dict:
    """:func:`other_digit_share` of ``block`` (a non-local block inside ``model``) over the whole test split of
    ``task``, plus ``label`` (1: the two digits are the same class). Features entering the block are captured with a
    forward hook, batch by batch. Returns 1-D tensors, one entry per test image."""
    import torch

    captured = {}
    hook = block.register_forward_pre_hook(lambda mod, inp: captured.__setitem__("x", inp[0].detach()))
    parts = []
    try:
        with torch.no_grad():
            for start in range(0, len(task.x_test), batch_size):
                imgs = task.float_images(task.x_test[start:start + batch_size])
                model(imgs)
                x = captured["x"]
                attn = block.attention_maps(x)["attention"]
                h, w = x.shape[-2:]
                parts.append(other_digit_share(attn, imgs, (h, w), block.key_size(h, w)))
    finally:
        hook.remove()
    out = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    out["label"] = task.y_test.long().clone()
    return out
