"""Attentional feature fusion: MS-CAM, AFF and iAFF.

Paper: **Attentional Feature Fusion** — Dai, Gieseke, Oehmcke, Wu, Barnard, arXiv:2009.14082 (WACV 2021).

Shape flow for inputs ``x``, ``y`` of the same shape ``[N, C, H, W]`` (``C' = C // r``, ``r = 4`` by default)::

    MSCAM   local   L(z) = BN(conv1×1(ReLU(BN(conv1×1(z)))))      [N, C, H, W] → [N, C', H, W] → [N, C, H, W]
            global  G(z) = the same on GAP(z)                      [N, C, 1, 1] → [N, C', 1, 1] → [N, C, 1, 1]
            weights M(z) = σ(L(z) + G(z))                          broadcast → [N, C, H, W]
            as a one-input block: z · M(z)
    AFF     w = M(x + y);   out = 2·x·w + 2·y·(1 − w)              [N, C, H, W]
    iAFF    w₁ = M₁(x + y);  z = x·w₁ + y·(1 − w₁)                 first round, no factor 2
            w₂ = M₂(z);      out = x·w₂ + y·(1 − w₂)                second round: its own local *and* global branch

AFF and iAFF are the course's two-input blocks (registered with ``inputs=2``): ``forward(x, y)``, where ``x``
is the feature to be weighted by ``w`` (in the authors' ResNet, the residual branch's output) and ``y`` the
other one (the identity). Swapping them swaps ``w`` and ``1 − w``.

Facts taken from the paper and the authors' code (MXNet; the code here is written from them):

* every 1×1 conv has a bias; each branch is conv–BN–ReLU–conv–BN; the two branches are summed before the
  sigmoid;
* AFF's output carries a factor 2 (``2·x·w + 2·y·(1 − w)``): at ``w = 0.5`` it is ``x + y``, the plain
  addition it replaces. iAFF has no factor 2 in either round;
* iAFF's second round has its own global branch (``global_att2``); a community PyTorch port reuses the first
  round's global branch in the second round — here ``first`` and ``second`` are separate :class:`MSCAM`\\ s;
* the global branch's BN sees ``[N, C', 1, 1]``: in training mode a batch of one cannot be normalised, whatever
  the map size — a ``ValueError`` naming the block here;
* the authors' CIFAR training initialises the network with MXNet's ``Xavier()`` initializer (uniform, average
  of fan-in and fan-out, magnitude 3 — torch's ``xavier_uniform_``) and biases with zeros; BN with 1 and 0
  (:meth:`MSCAM.reset_parameters`).
"""
from __future__ import annotations

import torch
from torch import nn

from . import register_block
from ._common import check_input, picture_helper, reduced_width

__all__ = ["MSCAM", "AFF", "iAFF", "check_pair"]

AFF_PAPER = "Attentional Feature Fusion (arXiv:2009.14082)"


def _branch(channels: int, inner: int, pooled: bool) -> nn.Sequential:
    layers = [nn.AdaptiveAvgPool2d(1)] if pooled else []
    layers += [nn.Conv2d(channels, inner, 1, bias=True), nn.BatchNorm2d(inner), nn.ReLU(inplace=True),
               nn.Conv2d(inner, channels, 1, bias=True), nn.BatchNorm2d(channels)]
    return nn.Sequential(*layers)


def check_pair(block: nn.Module, x, y, channels: int) -> None:
    """``ValueError`` naming ``block`` and both shapes unless ``x`` and ``y`` each keep the contract and match."""
    name = type(block).__name__
    check_input(block, x, channels, name=f"{name} (input x)")
    check_input(block, y, channels, name=f"{name} (input y)")
    if x.shape != y.shape:
        raise ValueError(f"{name}: x and y must have the same shape, got shape {tuple(x.shape)} and "
                         f"shape {tuple(y.shape)}")
    if x.dtype != y.dtype:
        raise ValueError(f"{name}: x and y must have the same dtype, got {x.dtype} (shape {tuple(x.shape)}) "
                         f"and {y.dtype} (shape {tuple(y.shape)})")


@register_block("mscam", family="fusion", paper=AFF_PAPER + "; MS-CAM as a one-input attention block")
class MSCAM(nn.Module):
    """Multi-scale channel attention: ``M(z) = σ(L(z) + G(z))``, a local (per-pixel) and a global (GAP) branch.

    Args:
        channels: ``C`` of the input ``[N, C, H, W]``.
        reduction: ``r``; both branches' hidden width is ``C // r`` (the authors: 4; 16 in their ImageNet ResNet-50).
        reduced_channels: explicit hidden width (overrides ``reduction``).

    ``forward(z)`` is the one-input block ``z · M(z)`` (``[N, C, H, W] → [N, C, H, W]``); :meth:`weights` is
    ``M(z)`` itself, which :class:`AFF` and :class:`iAFF` use to weigh two inputs.
    """

    def __init__(self, channels: int, reduction: float = 4, reduced_channels: int | None = None):
        super().__init__()
        name = type(self).__name__
        self.reduced_channels = reduced_width(name, channels, reduction, reduced_channels)
        self.channels = channels
        self.local_att = _branch(channels, self.reduced_channels, pooled=False)
        self.global_att = _branch(channels, self.reduced_channels, pooled=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The authors' init: conv weights ``xavier_uniform_`` (MXNet ``Xavier()``), biases 0; BN weight 1, bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_parameters()

    def _check_global_batch(self, z: torch.Tensor, name: str | None = None) -> None:
        if self.training and z.shape[0] == 1:
            raise ValueError(f"{name or type(self).__name__}: in training mode the global branch's BatchNorm sees "
                             f"one value per channel for a batch of one, got shape {tuple(z.shape)}; use a batch "
                             f"of two or more, or eval()")

    def weights(self, z: torch.Tensor, *, name: str | None = None) -> torch.Tensor:
        """``M(z) = σ(L(z) + G(z))``, shape ``[N, C, H, W]``, values in (0, 1); ``name`` names the caller in errors."""
        check_input(self, z, self.channels, name=name)
        self._check_global_batch(z, name)
        return torch.sigmoid(self.local_att(z) + self.global_att(z))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.weights(z)

    @picture_helper
    def attention_maps(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"weights": M(z) [N, C, H, W]}`` (eval mode, no grad)."""
        return {"weights": self.weights(z)}

    def extra_repr(self) -> str:
        return f"channels={self.channels}, reduced_channels={self.reduced_channels}"


@register_block("aff", family="fusion", paper=AFF_PAPER, inputs=2)
class AFF(nn.Module):
    """Attentional feature fusion: ``out = 2·x·w + 2·y·(1 − w)`` with ``w = M(x + y)`` (one :class:`MSCAM`).

    Args: ``channels``, ``reduction``, ``reduced_channels`` of the :class:`MSCAM` (``r = 4``).

    ``forward(x, y)``: two inputs of the same shape ``[N, C, H, W]`` → ``[N, C, H, W]``.
    """

    def __init__(self, channels: int, reduction: float = 4, reduced_channels: int | None = None):
        super().__init__()
        self.channels = channels
        self.attention = MSCAM(channels, reduction, reduced_channels)

    def reset_parameters(self) -> None:
        self.attention.reset_parameters()

    def fusion_weights(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``w = M(x + y)``, shape ``[N, C, H, W]``: the share of ``x`` in the output."""
        check_pair(self, x, y, self.channels)
        return self.attention.weights(x + y, name=type(self).__name__)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        w = self.fusion_weights(x, y)
        return 2 * x * w + 2 * y * (1 - w)

    @picture_helper
    def attention_maps(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"weights": w [N, C, H, W]}`` (eval mode, no grad)."""
        return {"weights": self.fusion_weights(x, y)}

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


@register_block("iaff", family="fusion", paper=AFF_PAPER + "; iterative AFF", inputs=2)
class iAFF(nn.Module):  # noqa: N801 — the paper's name
    """Iterative attentional feature fusion: two rounds, each with its own :class:`MSCAM` (``first``, ``second``).

    ``w₁ = first(x + y)``, ``z = x·w₁ + y·(1 − w₁)``, ``w₂ = second(z)``, ``out = x·w₂ + y·(1 − w₂)`` — no factor 2.

    ``forward(x, y)``: two inputs of the same shape ``[N, C, H, W]`` → ``[N, C, H, W]``.
    """

    def __init__(self, channels: int, reduction: float = 4, reduced_channels: int | None = None):
        super().__init__()
        self.channels = channels
        self.first = MSCAM(channels, reduction, reduced_channels)
        self.second = MSCAM(channels, reduction, reduced_channels)

    def reset_parameters(self) -> None:
        self.first.reset_parameters()
        self.second.reset_parameters()

    def _rounds(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_pair(self, x, y, self.channels)
        name = type(self).__name__
        w1 = self.first.weights(x + y, name=name)
        z = x * w1 + y * (1 - w1)
        return w1, self.second.weights(z, name=name)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        _, w2 = self._rounds(x, y)
        return x * w2 + y * (1 - w2)

    @picture_helper
    def attention_maps(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"first": w₁, "second": w₂}``, each ``[N, C, H, W]`` (eval mode, no grad)."""
        w1, w2 = self._rounds(x, y)
        return {"first": w1, "second": w2}

    def extra_repr(self) -> str:
        return f"channels={self.channels}"
