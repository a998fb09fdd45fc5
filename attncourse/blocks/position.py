"""Position-aware and shuffled attention: Coordinate Attention and Shuffle Attention (SA-Net).

Papers:

* **Coordinate Attention for Efficient Mobile Network Design** — Hou, Zhou, Feng, arXiv:2103.02907 (CVPR 2021).
* **SA-Net: Shuffle Attention for Deep Convolutional Neural Networks** — Zhang, Yang, arXiv:2102.00240
  (ICASSP 2021).

Shape flow for an input ``x`` of shape ``[N, C, H, W]``::

    CoordAtt          mean over W → [N, C, H, 1];  mean over H → [N, C, 1, W] → transposed [N, C, W, 1]
                      concatenate along the position axis       [N, C, H + W, 1]
                      shared 1×1 conv C → mip, BN, h-swish       [N, mip, H + W, 1]   (mip = max(8, C // 32))
                      split                                      [N, mip, H, 1] and [N, mip, W, 1] → [N, mip, 1, W]
                      conv_h, conv_w (1×1, mip → C), sigmoid     a_h [N, C, H, 1], a_w [N, C, 1, W]
                      y = x · a_h · a_w                          [N, C, H, W]
    ShuffleAttention  groups: [N, C, H, W] → [N·G, C/G, H, W]; each group halves into
                      channel half  x₀ [N·G, C/2G, H, W]:  x₀ · σ(w_c · GAP(x₀) + b_c)           ([N·G, C/2G, 1, 1] gate)
                      spatial half  x₁ [N·G, C/2G, H, W]:  x₁ · σ(w_s · GroupNorm(x₁) + b_s)    ([N·G, C/2G, H, W] gate)
                      concatenate the halves, back to [N, C, H, W]; channel shuffle with 2 groups:
                      out[:, 2k] = in[:, k],  out[:, 2k + 1] = in[:, C/2 + k]

Facts taken from the papers and their official code (the code here is written from them):

* CoordAtt: every conv has a bias; the reduced width is ``mip = max(8, C // reduction)`` with
  ``reduction = 32``; the activation is h-swish ``x · ReLU6(x + 3) / 6`` (``nn.Hardswish``). The BN after the
  shared conv normalises the H and W descriptors *together* (they are concatenated before it), which matters
  in training mode. ``timm.layers.coord_attn.CoordAttn(C, rd_channels=mip, bias=True)`` is the same block with
  the same parameter names (timm's defaults — no bias, a width from ``rd_ratio`` — differ); the official code names
  ``conv_h`` and ``conv_w`` ``conv2`` and ``conv3`` and calls the reduction ``groups``. The official block
  sets no initialisation of its own; the MobileNetV2 it ships in initialises every conv with a normal
  ``N(0, 2 / (k·k·C_out))`` (Kaiming, fan-out) and zero bias, BN with 1 and 0: :meth:`CoordAtt.reset_parameters`.
  There the block sits inside each inverted residual, after the depthwise conv; in the course's ResNet it goes on
  the residual branch before the add (``placement="residual"``), where SE and CBAM go.
* SA-Net: ``w``, ``b`` have shape ``[1, C/2G, 1, 1]`` and are shared by all groups; the spatial half's norm is
  ``GroupNorm(C/2G, C/2G)`` — as many groups as channels, so it is an *instance norm* (each channel of each
  group normalised over its own H×W), with its own affine ``γ, β``. Initialised ``w = 0``, ``b = 1`` (GroupNorm
  ``γ = 1``, ``β = 0``), so a fresh block outputs ``shuffle(x · σ(1))``. The paper's default is ``G = 64`` for
  ResNet-50, whose blocks have 256 to 2048 channels; the course's backbone has 16–64 channels, so
  ``groups=None`` (the registered default) takes the largest ``G ≤ 64`` that divides ``C / 2``.
"""
from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch import nn

from . import register_block
from ._common import check_input, picture_helper, positive_int

__all__ = ["CoordAtt", "ShuffleAttention", "channel_shuffle", "coordatt_width", "shuffle_groups"]

COORD_PAPER = "Coordinate Attention for Efficient Mobile Network Design (arXiv:2103.02907)"
SA_PAPER = "SA-Net: Shuffle Attention for Deep Convolutional Neural Networks (arXiv:2102.00240)"


def coordatt_width(channels: int, reduction: float = 32, min_channels: int = 8,
                   reduced_channels: int | None = None) -> int:
    """CoordAtt's reduced width ``mip = max(min_channels, C // reduction)`` (official: 8 and 32), or the override."""
    name = "CoordAtt"
    positive_int(name, "channels", channels)
    if reduced_channels is not None:
        return positive_int(name, "reduced_channels", reduced_channels)
    if (isinstance(reduction, bool) or not isinstance(reduction, numbers.Real) or not math.isfinite(reduction)
            or reduction <= 0):
        raise ValueError(f"{name}: reduction must be a positive finite number, got {reduction!r}")
    return max(positive_int(name, "min_channels", min_channels), int(channels // reduction))


@register_block("coordatt", family="position", paper=COORD_PAPER)
class CoordAtt(nn.Module):
    """Coordinate Attention: ``y = x · σ(conv_h(f_h)) · σ(conv_w(f_w))`` with ``f = h-swish(BN(conv1([pool_H x, pool_W x])))``.

    Args:
        channels: ``C`` of the input ``[N, C, H, W]`` (the output has the same shape).
        reduction, min_channels: the shared conv's width ``mip = max(min_channels, C // reduction)`` (official 32, 8).
        reduced_channels: explicit ``mip`` (overrides the two above).

    Shape flow: ``[N, C, H, W] → [N, C, H + W, 1] → [N, mip, H + W, 1] → a_h [N, C, H, 1], a_w [N, C, 1, W] →
    [N, C, H, W]``. The state dict (``conv1``, ``bn1``, ``conv_h``, ``conv_w``) loads into
    ``timm.layers.coord_attn.CoordAttn(C, rd_channels=mip, bias=True)``.
    """

    def __init__(self, channels: int, reduction: float = 32, reduced_channels: int | None = None,
                 min_channels: int = 8):
        super().__init__()
        self.channels = positive_int(type(self).__name__, "channels", channels)
        self.reduced_channels = coordatt_width(channels, reduction, min_channels, reduced_channels)
        mip = self.reduced_channels
        self.conv1 = nn.Conv2d(channels, mip, 1, bias=True)
        self.bn1 = nn.BatchNorm2d(mip)
        self.act = nn.Hardswish()
        self.conv_h = nn.Conv2d(mip, channels, 1, bias=True)
        self.conv_w = nn.Conv2d(mip, channels, 1, bias=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The official MobileNetV2's init: conv weights ``N(0, 2 / (k·k·C_out))`` (Kaiming, fan-out), biases 0; BN 1, 0."""
        for conv in (self.conv1, self.conv_h, self.conv_w):
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        self.bn1.reset_parameters()

    def _gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(a_h [N, C, H, 1], a_w [N, C, 1, W])``, the two directional gates in (0, 1)."""
        check_input(self, x, self.channels)
        h, w = x.shape[2], x.shape[3]
        pooled_h = x.mean(dim=3, keepdim=True)                     # [N, C, H, 1]
        pooled_w = x.mean(dim=2, keepdim=True).transpose(2, 3)     # [N, C, 1, W] → [N, C, W, 1]
        f = self.act(self.bn1(self.conv1(torch.cat([pooled_h, pooled_w], dim=2))))  # [N, mip, H + W, 1]
        f_h, f_w = torch.split(f, [h, w], dim=2)
        return torch.sigmoid(self.conv_h(f_h)), torch.sigmoid(self.conv_w(f_w.transpose(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a_h, a_w = self._gates(x)
        return x * a_h * a_w

    @picture_helper
    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"height": a_h [N, C, H, 1], "width": a_w [N, C, 1, W]}`` (eval mode, no grad)."""
        a_h, a_w = self._gates(x)
        return {"height": a_h, "width": a_w}

    def extra_repr(self) -> str:
        return f"channels={self.channels}, reduced_channels={self.reduced_channels}"


def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    """ShuffleNet's channel shuffle: ``[N, C, H, W]`` viewed as ``[N, g, C/g, H, W]``, the two group axes swapped.

    With ``groups=2``: ``out[:, 2k] = x[:, k]`` and ``out[:, 2k + 1] = x[:, C/2 + k]``.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"channel_shuffle: expected a 4-D input [N, C, H, W], got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    groups = positive_int("channel_shuffle", "groups", groups)
    n, c, h, w = x.shape
    if c % groups:
        raise ValueError(f"channel_shuffle: {c} channels do not split into {groups} groups, got shape {tuple(x.shape)}")
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def shuffle_groups(channels: int, groups: int | None = None, *, max_groups: int = 64) -> int:
    """The number of SA groups ``G``: ``groups`` when given (``C`` must be divisible by ``2·G``), else the largest
    ``G ≤ max_groups`` dividing ``C / 2``."""
    name = "ShuffleAttention"
    channels = positive_int(name, "channels", channels)
    if channels % 2:
        raise ValueError(f"{name}: channels must be even (each group splits into two halves), got {channels}")
    if groups is None:
        return max(g for g in range(1, min(max_groups, channels // 2) + 1) if (channels // 2) % g == 0)
    groups = positive_int(name, "groups", groups)
    if channels % (2 * groups):
        raise ValueError(f"{name}: channels={channels} must be divisible by 2·groups = {2 * groups}")
    return groups


@register_block("sa", family="position", paper=SA_PAPER, groups=None)
class ShuffleAttention(nn.Module):
    """Shuffle Attention (SA-Net): channel and spatial gates on the two halves of each of ``G`` groups, then a shuffle.

    Args:
        channels: ``C`` of the input ``[N, C, H, W]``; must be divisible by ``2·G``.
        groups: ``G`` (the paper: 64); ``None`` takes the largest ``G ≤ 64`` dividing ``C / 2`` (see the module notes).
        eps: the GroupNorm's epsilon (PyTorch's default ``1e-5``, as in the official code).

    Parameters: ``cweight``, ``cbias``, ``sweight``, ``sbias`` of shape ``[1, C/2G, 1, 1]`` and the GroupNorm's
    ``γ, β`` of ``C/2G`` each: ``3·C/G`` in all, whatever the input size.

    Shape flow: ``[N, C, H, W] → [N·G, C/G, H, W] → halves [N·G, C/2G, H, W] ×2 → gated, concatenated →
    [N, C, H, W] → channel_shuffle(·, 2)``.
    """

    def __init__(self, channels: int, groups: int | None = 64, eps: float = 1e-5):
        super().__init__()
        self.channels = positive_int(type(self).__name__, "channels", channels)
        self.groups = shuffle_groups(channels, groups)
        half = channels // (2 * self.groups)
        self.cweight = nn.Parameter(torch.empty(1, half, 1, 1))
        self.cbias = nn.Parameter(torch.empty(1, half, 1, 1))
        self.sweight = nn.Parameter(torch.empty(1, half, 1, 1))
        self.sbias = nn.Parameter(torch.empty(1, half, 1, 1))
        self.gn = nn.GroupNorm(half, half, eps=eps)  # as many groups as channels: an instance norm
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The official init: ``w = 0``, ``b = 1`` for both halves, GroupNorm ``γ = 1``, ``β = 0`` — every gate starts at σ(1)."""
        with torch.no_grad():
            self.cweight.zero_()
            self.sweight.zero_()
            self.cbias.fill_(1.0)
            self.sbias.fill_(1.0)
        self.gn.reset_parameters()

    def _gated_halves(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x₀, channel gate [N·G, C/2G, 1, 1], x₁, spatial gate [N·G, C/2G, H, W])``."""
        check_input(self, x, self.channels)
        n, c, h, w = x.shape
        grouped = x.reshape(n * self.groups, c // self.groups, h, w)
        x0, x1 = grouped.chunk(2, dim=1)
        channel_gate = torch.sigmoid(self.cweight * x0.mean(dim=(2, 3), keepdim=True) + self.cbias)
        spatial_gate = torch.sigmoid(self.sweight * self.gn(x1) + self.sbias)
        return x0, channel_gate, x1, spatial_gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0, channel_gate, x1, spatial_gate = self._gated_halves(x)
        out = torch.cat([x0 * channel_gate, x1 * spatial_gate], dim=1).reshape(x.shape)
        return channel_shuffle(out, 2)

    @picture_helper
    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"channel": [N, G, C/2G, 1, 1], "spatial": [N, G, C/2G, H, W]}`` — each group's gates (eval, no grad)."""
        _, channel_gate, _, spatial_gate = self._gated_halves(x)
        n = x.shape[0]
        return {"channel": channel_gate.reshape(n, self.groups, *channel_gate.shape[1:]),
                "spatial": spatial_gate.reshape(n, self.groups, *spatial_gate.shape[1:])}

    def extra_repr(self) -> str:
        return f"channels={self.channels}, groups={self.groups}"
