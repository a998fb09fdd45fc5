"""Gather-Excite: gather context over a spatial extent, then excite every position from it.

Paper: **Gather-Excite: Exploiting Feature Context in Convolutional Neural Networks** — Hu, Shen, Albanie,
Sun, Vedaldi, arXiv:1810.12348 (GENet).

SE gathers over the whole map (one value per channel). GE makes the extent ``e`` a choice: each channel is
gathered over windows about ``e`` pixels apart, then the small map is spread back to the input size.

Shapes for ``x: [N, C, H, W]`` and extent ``e`` (``e = 0``: global)::

    gather   GE-θ⁻ (no parameters): avg_pool2d(kernel 2e−1, stride e, padding e−1, count_include_pad=False)
             GE-θ  (parameters):    log2(e) depthwise 3×3 stride-2 convs (no bias), each with BN, ReLU between
                                    [N, C, H, W] -> [N, C, ⌈H/e⌉, ⌈W/e⌉]   (global: [N, C, 1, 1])
    (mlp)    optional SE-style 1×1 MLP C → C/r → C with bias (the paper's GE-θ⁺)
    excite   nearest upsampling to [H, W], sigmoid, multiply: y = x · σ(up(gather(x)))

Registered names: ``ge_global`` (GE-θ⁻, global extent), ``ge_e2`` / ``ge_e4`` / ``ge_e8`` (GE-θ⁻) and
``ge_theta_e2`` / ``ge_theta_e4`` / ``ge_theta_e8`` (GE-θ). The paper's global GE-θ uses one depthwise conv as
large as the feature map, which fixes the input size: it is :class:`GatherExcite` with ``extent=0,
extra_params=True, feat_size=(H, W)``, not registered (a registered block must accept any map size).

``timm.layers.GatherExcite`` computes the same parameter-free variants (``extra_params=False, use_mlp=False``);
``tests/test_blocks_second_order.py`` checks the equality.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import register_block
from ._common import GateBlock, check_input, positive_int, reduced_width

__all__ = ["GE_PAPER", "ge_gather", "GatherExcite"]

GE_PAPER = "Gather-Excite: Exploiting Feature Context in Convolutional Neural Networks (arXiv:1810.12348)"


def ge_gather(x: torch.Tensor, extent: int) -> torch.Tensor:
    """GE-θ⁻'s parameter-free gather: ``[N, C, H, W] → [N, C, ⌈H/e⌉, ⌈W/e⌉]`` (``extent = 0``: the global mean).

    A window of ``2e − 1`` pixels every ``e`` pixels, padding ``e − 1``; the padding is not counted in the mean.
    """
    if extent == 0:
        return x.mean((2, 3), keepdim=True)
    return F.avg_pool2d(x, kernel_size=2 * extent - 1, stride=extent, padding=extent - 1, count_include_pad=False)


def _check_extent(extent) -> int:
    if isinstance(extent, bool) or not isinstance(extent, int) or extent < 0 or (extent > 0 and extent & (extent - 1)) \
            or extent == 1:
        raise ValueError(f"GatherExcite: extent must be 0 (global) or a power of two >= 2 (GE-θ uses log2(extent) "
                         f"stride-2 convs), got {extent!r}")
    return extent


@register_block("ge_global", family="gather_excite", paper=GE_PAPER + "; GE-θ⁻, global extent")
@register_block("ge_e2", family="gather_excite", paper=GE_PAPER + "; GE-θ⁻, extent 2", extent=2)
@register_block("ge_e4", family="gather_excite", paper=GE_PAPER + "; GE-θ⁻, extent 4", extent=4)
@register_block("ge_e8", family="gather_excite", paper=GE_PAPER + "; GE-θ⁻, extent 8", extent=8)
@register_block("ge_theta_e2", family="gather_excite", paper=GE_PAPER + "; GE-θ, extent 2", extent=2, extra_params=True)
@register_block("ge_theta_e4", family="gather_excite", paper=GE_PAPER + "; GE-θ, extent 4", extent=4, extra_params=True)
@register_block("ge_theta_e8", family="gather_excite", paper=GE_PAPER + "; GE-θ, extent 8", extent=8, extra_params=True)
class GatherExcite(GateBlock):
    """Gather-Excite: ``y = x · σ(up(mlp(gather_e(x))))``.

    Args:
        channels: ``C`` of the input ``[N, C, H, W]``.
        extent: ``0`` for a global gather, else ``e ∈ {2, 4, 8, …}`` (a power of two).
        extra_params: ``False`` for GE-θ⁻ (average pooling), ``True`` for GE-θ (depthwise strided convs + BN).
        use_mlp: add the SE-style MLP after the gather (GE-θ⁺ when ``extra_params``); default off.
        reduction, reduced_channels: the MLP's bottleneck ``C // reduction`` (only with ``use_mlp``).
        feat_size: ``(H, W)`` of the input, needed only for the global GE-θ (``extent=0, extra_params=True``),
            whose depthwise conv covers the whole map; other sizes are then refused.

    Init: the depthwise convs Kaiming-normal (fan-out, ReLU) — the backbone's conv init — and BN ``γ = 1, β = 0``;
    the MLP PyTorch's default. The parameter-free variants start as ``σ(local mean)·x``.
    """

    map_name = "gather"

    def __init__(self, channels: int, extent: int = 0, extra_params: bool = False, use_mlp: bool = False,
                 reduction: float = 16, reduced_channels: int | None = None,
                 feat_size: Sequence[int] | None = None):
        super().__init__()
        name = type(self).__name__
        self.channels = positive_int(name, "channels", channels)
        self.extent = _check_extent(extent)
        self.extra_params, self.use_mlp = bool(extra_params), bool(use_mlp)
        self.feat_size = None
        self.gather = None
        if self.extra_params:
            self.gather = nn.Sequential()
            if extent == 0:
                if feat_size is None or len(tuple(feat_size)) != 2:
                    raise ValueError(f"{name}: the global GE-θ (extent=0, extra_params=True) needs feat_size=(H, W): its "
                                     f"depthwise conv covers the whole map; got feat_size={feat_size!r}")
                self.feat_size = tuple(positive_int(name, "feat_size", s) for s in feat_size)
                self.gather.add_module("conv1", nn.Conv2d(channels, channels, self.feat_size, groups=channels, bias=False))
                self.gather.add_module("norm1", nn.BatchNorm2d(channels))
            else:
                steps = int(math.log2(extent))
                for i in range(1, steps + 1):
                    self.gather.add_module(f"conv{i}", nn.Conv2d(channels, channels, 3, stride=2, padding=1,
                                                                 groups=channels, bias=False))
                    self.gather.add_module(f"norm{i}", nn.BatchNorm2d(channels))
                    if i < steps:
                        self.gather.add_module(f"act{i}", nn.ReLU(inplace=True))
        elif feat_size is not None:
            raise ValueError(f"{name}: feat_size is only for the global GE-θ (extent=0, extra_params=True)")
        if self.use_mlp:
            rd = reduced_width(name, channels, reduction, reduced_channels)
            self.mlp = nn.Sequential(nn.Conv2d(channels, rd, 1, bias=True), nn.ReLU(inplace=True),
                                     nn.Conv2d(rd, channels, 1, bias=True))
        else:
            self.mlp = nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.mlp.modules():
            if isinstance(m, nn.Conv2d):
                m.reset_parameters()
        for m in (self.gather.modules() if self.gather is not None else ()):
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_parameters()

    def _gathered_sizes(self, h: int, w: int) -> list[tuple[int, int]]:
        """The map size after each BN of the GE-θ gather (for the batch-1 check)."""
        if self.extent == 0:
            return [(1, 1)]
        sizes = []
        for _ in range(int(math.log2(self.extent))):
            h, w = -(-h // 2), -(-w // 2)
            sizes.append((h, w))
        return sizes

    def gathered(self, x: torch.Tensor) -> torch.Tensor:
        """The gathered context before the excite: ``[N, C, ⌈H/e⌉, ⌈W/e⌉]`` (global: ``[N, C, 1, 1]``)."""
        check_input(self, x, self.channels)
        shape = tuple(x.shape)
        if self.feat_size is not None and shape[2:] != self.feat_size:
            raise ValueError(f"{type(self).__name__}: the global GE-θ was built for feat_size={self.feat_size}, got "
                             f"shape {shape}")
        if self.training and shape[0] == 1 and self.gather is not None and any(
                h * w == 1 for h, w in self._gathered_sizes(*shape[2:])):
            raise ValueError(f"{type(self).__name__}: in training mode its BatchNorm needs more than one value per "
                                 f"channel, but batch 1 of shape {shape} is gathered to 1×1; use a larger batch or eval()")
        return self.mlp(ge_gather(x, self.extent) if self.gather is None else self.gather(x))

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The gate ``σ(up(gathered(x)))``, ``[N, C, H, W]`` (global: ``[N, C, 1, 1]``), values in (0, 1)."""
        g = self.gathered(x)
        if g.shape[-2:] != (1, 1):
            g = F.interpolate(g, size=x.shape[-2:], mode="nearest")
        return torch.sigmoid(g)

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, extent={self.extent}, extra_params={self.extra_params}, "
                f"use_mlp={self.use_mlp}")
