"""Backbones for module 07 (branch attention): a ResNet whose 3×3 conv is *replaced* by a branch conv, and the
deep stack of the Highway demonstration.

:class:`BranchResNet` is :class:`attncourse.models.AttnResNet`'s skeleton (stem, three stages of basic blocks,
widths 16/32/64, GAP, linear) with the second 3×3 conv of every basic block built by name::

    x → conv3×3 (stride) → BN → ReLU → CONV (C → C, "plain" | "sk" | "condconv" | "dynamic_conv" | "split_attn")
      → BN → (+ shortcut(x)) → ReLU

so the arms of the experiment differ only in that conv, at (nearly) the same FLOPs; nothing is added.

:class:`DeepStack` is the Highway papers' deep fully connected network (``flatten → FC → depth × layer → linear``)
with either highway layers or the same layers without gates (``y = ReLU(W x + b)``), and no normalisation.
"""
from __future__ import annotations

import torch
from torch import nn

from ..blocks import create_block
from ..blocks._common import check_batch_one_training, check_input, positive_int
from ..blocks.branch import Highway, SKAttention, SplitAttention
from .resnet import conv_bn, init_backbone

__all__ = ["BRANCH_CONVS", "BranchBasicBlock", "BranchResNet", "DeepStack", "branch_weights", "weight_by_size",
           "size_trend"]

#: the convs a :class:`BranchResNet` can use in place of its 3×3 conv (``"plain"`` is ``nn.Conv2d``)
BRANCH_CONVS = ("plain", "sk", "condconv", "dynamic_conv", "split_attn")


def _make_conv(conv: str, channels: int, kwargs: dict) -> nn.Module:
    if conv not in BRANCH_CONVS:
        raise ValueError(f"BranchResNet: conv must be one of {BRANCH_CONVS}, got {conv!r}")
    if conv == "plain":
        if kwargs:
            raise ValueError(f"BranchResNet: the plain conv takes no conv_kwargs, got {kwargs}")
        return nn.Conv2d(channels, channels, 3, padding=1, bias=False)
    return create_block(conv, channels, **kwargs)


class BranchBasicBlock(nn.Module):
    """A basic block whose second 3×3 conv is ``conv`` (a branch conv or the plain one), followed by BN."""

    def __init__(self, cin: int, cout: int, stride: int = 1, conv: str = "plain", conv_kwargs: dict | None = None):
        super().__init__()
        self.conv1 = conv_bn(cin, cout, 3, stride)
        self.conv2 = _make_conv(conv, cout, dict(conv_kwargs or {}))
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else conv_bn(cin, cout, 1, stride)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.conv1(x))
        return self.act(self.bn2(self.conv2(out)) + self.shortcut(x))


class BranchResNet(nn.Module):
    """:class:`~attncourse.models.AttnResNet`'s skeleton with the 3×3 conv of every block chosen by name.

    Args:
        in_channels, num_classes, widths, depths: as ``AttnResNet``.
        conv: one of :data:`BRANCH_CONVS`.
        conv_kwargs: keyword arguments of that conv (e.g. ``{"groups": 2}`` for SK at the plain conv's cost).

    ``[N, Cin, H, W] → [N, 16, H, W] → [N, 32, H/2, W/2] → [N, 64, H/4, W/4] → GAP → [N, classes]``.
    """

    arm_spec_name = "attncourse.branch_models.BranchResNet"  # the name in arm specs and job ids: NetArm

    def __init__(self, in_channels: int = 1, num_classes: int = 10, widths=(16, 32, 64), depths=(1, 1, 1),
                 conv: str = "plain", conv_kwargs: dict | None = None):
        super().__init__()
        if len(widths) != len(depths) or not widths:
            raise ValueError(f"BranchResNet: widths {widths} and depths {depths} must be non-empty and the same length")
        self.conv_name = conv
        self.stem = nn.Sequential(conv_bn(in_channels, widths[0], 3, 1), nn.ReLU(inplace=True))
        stages, cin = [], widths[0]
        for i, (w, d) in enumerate(zip(widths, depths), start=1):
            stages.append(nn.Sequential(*[
                BranchBasicBlock(cin if j == 0 else w, w, 1 if i == 1 or j > 0 else 2, conv, conv_kwargs)
                for j in range(d)]))
            cin = w
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal (fan-out) for the backbone's convs, as ``AttnResNet``; branch convs their own init."""
        init_backbone(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.stem[0][0].in_channels)
        check_batch_one_training(self, x)
        return self.stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@torch.no_grad()
def branch_weights(model: nn.Module, x: torch.Tensor, branch: int = -1) -> dict[str, torch.Tensor]:
    """Per sample, the mean attention weight on branch ``branch`` (default: the last, the largest receptive
    field) of every SK unit / split-attention conv in ``model``, keyed by the unit's module name.

    Returns ``{name: [N]}`` (averaged over channels). Runs in eval mode through forward hooks and restores the
    model's mode: a picture of the trained model, no statistics move.
    """
    captured: dict[str, torch.Tensor] = {}
    handles = []
    for name, m in model.named_modules():
        if isinstance(m, SKAttention):  # its output is the weights [N, M, C, 1, 1]
            handles.append(m.register_forward_hook(
                lambda mod, inp, out, key=name.removesuffix(".attn"): captured.__setitem__(key, out.flatten(2))))
        elif isinstance(m, SplitAttention):  # fc2's output → the radix softmax → [N, R, C]
            handles.append(m.fc2.register_forward_hook(
                lambda mod, inp, out, key=name, sa=m: captured.__setitem__(
                    key, sa.rsoftmax(out).reshape(out.shape[0], sa.radix, sa.out_channels))))
    if not handles:
        raise ValueError(f"branch_weights: {type(model).__name__} has no SK unit or split-attention conv")
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return {name: w[:, branch].float().mean(1) for name, w in captured.items()}


def _ranks(v: torch.Tensor) -> torch.Tensor:
    """Average ranks (ties share the mean of their positions), float64, 0-based."""
    v = v.double()
    order = torch.argsort(v, stable=True)
    ranks = torch.empty_like(v)
    ranks[order] = torch.arange(len(v), dtype=torch.float64)
    uniq, inverse = torch.unique(v, return_inverse=True)
    total = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inverse, ranks)
    count = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inverse, torch.ones_like(ranks))
    return (total / count)[inverse]


def _pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of ``a [N]`` with each row of ``b [..., N]`` (0 where either is constant)."""
    a = a - a.mean()
    b = b - b.mean(-1, keepdim=True)
    den = a.norm() * b.norm(dim=-1)
    return torch.where(den > 0, (b * a).sum(-1) / den.clamp_min(1e-300), torch.zeros_like(den))


def size_trend(weights: torch.Tensor, sizes, n_permutations: int = 2000, seed: int = 0) -> dict:
    """Does ``weights [N]`` grow with ``sizes [N]``? Spearman's rank correlation and a permutation test.

    Returns ``{"rho": ρ, "p_value": p, "n": N}``: ``p`` is the two-sided permutation p-value — the share of
    ``n_permutations`` random pairings of the same values whose |ρ| is at least the observed one (counting the observed
    pairing, so ``p ≥ 1 / (n_permutations + 1)``). Exact for ties (average ranks), seeded, no SciPy needed.
    """
    w = torch.as_tensor(weights).detach().double().flatten().cpu()
    s = torch.as_tensor(sizes).detach().double().flatten().cpu()
    if w.shape != s.shape or len(w) < 3:
        raise ValueError(f"size_trend: weights and sizes need the same length >= 3, got shapes {tuple(w.shape)} and "
                         f"{tuple(s.shape)}")
    rw, rs = _ranks(w), _ranks(s)
    rho = float(_pearson(rs, rw[None])[0])
    gen = torch.Generator().manual_seed(seed)
    perms = torch.stack([rw[torch.randperm(len(rw), generator=gen)] for _ in range(n_permutations)])
    null = _pearson(rs, perms).abs()
    p = (1 + int((null >= abs(rho) - 1e-12).sum())) / (n_permutations + 1)
    return {"rho": rho, "p_value": p, "n": len(w)}


def weight_by_size(weights: torch.Tensor, sizes, edges) -> dict:
    """Mean (and standard error) of ``weights [N]`` per bin of ``sizes [N]``; bins ``[edges[i], edges[i+1])``.

    Returns ``{"centers", "mean", "sem", "count"}`` (lists, one entry per non-empty bin; ``sem`` is 0 for a bin of
    one sample). The last bin includes its right edge.
    """
    w = torch.as_tensor(weights).detach().double().flatten().cpu()
    s = torch.as_tensor(sizes).detach().double().flatten().cpu()
    if w.shape != s.shape:
        raise ValueError(f"weight_by_size: weights {tuple(w.shape)} and sizes {tuple(s.shape)} must have the same length")
    edges = [float(e) for e in edges]
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"weight_by_size: edges must be increasing, at least two, got {edges}")
    out = {"centers": [], "mean": [], "sem": [], "count": []}
    for i, (lo, hi) in enumerate(zip(edges, edges[1:])):
        last = i == len(edges) - 2
        sel = w[(s >= lo) & ((s <= hi) if last else (s < hi))]
        if len(sel) == 0:
            continue
        out["centers"].append((lo + hi) / 2)
        out["mean"].append(float(sel.mean()))
        out["sem"].append(float(sel.std() / len(sel) ** 0.5) if len(sel) > 1 else 0.0)
        out["count"].append(len(sel))
    return out


class _PlainLayer(nn.Module):
    """``y = ReLU(conv(x) + b)`` — a highway layer's transform without the gate (same init as ``Highway``)."""

    def __init__(self, channels: int, kernel_size: int = 1):
        super().__init__()
        self.channels = channels
        self.transform = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_normal_(self.transform.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(self.transform.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.transform(x))


class DeepStack(nn.Module):
    """The Highway papers' deep fully connected network: ``flatten → FC to width → ReLU → depth × layer → linear``,
    every layer a highway layer (``gated``) or the same layer without its gate, no normalisation anywhere.

    The FC layers are 1×1 convs on a ``[N, width, 1, 1]`` map, so the highway layers are the registered
    :class:`~attncourse.blocks.branch.Highway` block with ``kernel_size=1``.
    ``[N, Cin, H, W] → [N, Cin·H·W, 1, 1] → [N, width, 1, 1] → … → [N, classes]``.
    """

    arm_spec_name = "attncourse.branch_models.DeepStack"  # the name in arm specs and job ids: NetArm

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32, depth: int = 40,
                 gated: bool = True, gate_bias: float = -3.0, image_size: tuple[int, int] = (24, 24)):
        super().__init__()
        positive_int("DeepStack", "depth", depth)
        positive_int("DeepStack", "width", width)
        self.gated, self.depth, self.in_channels = bool(gated), depth, in_channels
        self.image_size = tuple(image_size)
        n_in = in_channels * self.image_size[0] * self.image_size[1]
        self.stem = nn.Sequential(nn.Conv2d(n_in, width, 1), nn.ReLU(inplace=True))
        self.layers = nn.Sequential(*[Highway(width, kernel_size=1, gate_bias=gate_bias) if gated else _PlainLayer(width)
                                      for _ in range(depth)])
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.in_channels)
        if tuple(x.shape[-2:]) != self.image_size:
            raise ValueError(f"DeepStack: expected images of size {self.image_size}, got shape {tuple(x.shape)}")
        return self.head(self.layers(self.stem(x.reshape(x.shape[0], -1, 1, 1))))
