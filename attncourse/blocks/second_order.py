"""Beyond the average: channel attention that squeezes with second-order statistics (SRM, GSoP).

Papers:

* **SRM: A Style-based Recalibration Module for Convolutional Neural Networks** — Lee, Kim, Nam,
  arXiv:1903.10829 (style pooling: the per-channel mean *and* standard deviation).
* **Global Second-order Pooling Convolutional Networks** — Gao, Xie, Wang, Li, arXiv:1811.12006
  (GSoP-Net: a covariance matrix between channels instead of a mean per channel).

SE squeezes each channel to its mean. Both blocks here keep more of the channel's distribution:

=========  =================================================================  ===============================
name       squeeze                                                             descriptor per image
=========  =================================================================  ===============================
``srm``    mean and std of each channel (style pooling)                        ``[C, 2]``
``gsop``   covariance of the ``d`` reduced channels over the positions         ``[d, d]``
=========  =================================================================  ===============================

SRM (shapes for ``x: [N, C, H, W]``, ``M = H·W``)::

    style pooling     t = [mean(x), std(x)]          [N, C, H, W] -> [N, C, 2]
    channel-wise FC   z_c = w_c0·mean_c + w_c1·std_c   [N, C, 2] -> [N, C, 1, 1]   (weight [C, 2], no bias)
    BN, sigmoid       g = σ(BN(z))                     [N, C, 1, 1]
    rescale           y = x · g

GSoP-Net1 (the channel-attention block)::

    ReLU (not in place)       a = ReLU(x)                          [N, C, H, W]
    reduce                    r = ReLU(BN(conv1×1(a)))             [N, d, H', W']   (stride s: H' = ⌈H/s⌉)
    covariance pooling        Σ = r̃ r̃ᵀ / M',  r̃ = r − mean        [N, d, M'] -> [N, d, d]
    BN over the d×d map       Σ as [N, d, d, 1], BN over its d rows
    row-wise conv             Conv2d(d, 4d, (d, 1), groups=d)     [N, d, d, 1] -> [N, 4d, 1, 1]
    expand (no activation)    conv1×1 4d → C (bias)               [N, C, 1, 1]
    rescale                   y = x · σ(·)                         (x itself, before the ReLU, is gated)
"""
from __future__ import annotations

import math

import torch
from torch import nn

from . import register_block
from ._common import GateBlock, check_input, positive_int, reduced_width

__all__ = ["SRM_PAPER", "GSOP_PAPER", "STYLE_EPS", "style_pool", "covariance_pool", "SRM", "GSoP"]

SRM_PAPER = "SRM: A Style-based Recalibration Module for Convolutional Neural Networks (arXiv:1903.10829)"
GSOP_PAPER = "Global Second-order Pooling Convolutional Networks (arXiv:1811.12006)"
STYLE_EPS = 1e-5  # as the official SRM code: std = sqrt(unbiased var + eps)


def _positions(x: torch.Tensor) -> torch.Tensor:
    """``[N, C, H, W] → [N, C, M]`` with ``M = H·W`` (a reshape: works for channels_last and strided input)."""
    return x.reshape(x.shape[0], x.shape[1], x.shape[2] * x.shape[3])


def style_pool(x: torch.Tensor, eps: float = STYLE_EPS) -> torch.Tensor:
    """SRM's style pooling: ``[N, C, H, W] → [N, C, 2]``, the per-channel mean and standard deviation.

    As in the official code the std is ``sqrt(unbiased var + eps)`` (divisor ``M − 1``, eps inside the root).
    The official code divides by ``M − 1 = 0`` on a 1×1 map and returns NaN; here a single position has
    variance 0, so the std is ``sqrt(eps)`` and the gradient is finite.

    >>> style_pool(torch.tensor([[[[1.0, 3.0]]]]), eps=0.0)
    tensor([[[2.0000, 1.4142]]])
    """
    flat = _positions(x)
    m = flat.shape[-1]
    mean = flat.mean(-1, keepdim=True)
    var = (flat - mean).pow(2).sum(-1, keepdim=True) / max(m - 1, 1)
    return torch.cat([mean, (var + eps).sqrt()], dim=-1)


def covariance_pool(x: torch.Tensor) -> torch.Tensor:
    """GSoP's covariance pooling: ``[N, d, H, W] → [N, d, d]``, ``Σ = x̃ x̃ᵀ / M`` with ``x̃`` centred over positions.

    The divisor is ``M`` (not ``M − 1``), as the official ``CovpoolLayer`` (``x (I/M − 11ᵀ/M²) xᵀ``). Cost per
    image: ``d²·M`` multiply-adds, O(d²) memory — quadratic in the reduced width, which is why the block
    first reduces C to d.
    """
    flat = _positions(x)
    centred = flat - flat.mean(-1, keepdim=True)
    return centred @ centred.transpose(1, 2) / flat.shape[-1]


def _refuse_single_value_bn(block: nn.Module, x: torch.Tensor, values_per_channel: int, where: str) -> None:
    """``ValueError`` (naming the block and shape) when a BatchNorm in training mode would get one value per channel."""
    if block.training and values_per_channel == 1:
        raise ValueError(f"{type(block).__name__}: in training mode its BatchNorm ({where}) needs more than one value "
                         f"per channel, got shape {tuple(x.shape)}; use a larger batch or eval()")


# --------------------------------------------------------------------------- SRM
@register_block("srm", family="second_order", paper=SRM_PAPER)
class SRM(GateBlock):
    """SRM: ``y = x · σ(BN(CFC(style_pool(x))))`` — one gate per channel from the channel's mean and std.

    Args:
        channels: ``C`` of the input ``[N, C, H, W]``.
        eps: added to the variance inside the square root (official: 1e-5).
        reduction, reduced_channels: accepted so that a backbone can pass the same keywords to every arm;
            ignored (SRM has no bottleneck: its channel-wise FC costs ``2C`` weights).

    Parameters: ``cfc`` ``[C, 2]`` (the channel-wise fully connected layer — the same as a depthwise
    ``Conv1d(C, C, 2, groups=C, bias=False)`` on the ``[N, C, 2]`` style vector) and ``bn`` (``BatchNorm2d``
    on the ``[N, C, 1, 1]`` style logits); names as the official ``SRMLayer``. Its BN normalises across the
    batch, so training needs a batch of at least 2.

    Init (official): ``cfc = 0`` and BN ``γ = 1, β = 0``, so at initialisation the logits are 0 and the block
    is exactly ``0.5·x``. (The official training also exempts ``cfc`` and the BN from weight decay.)
    """

    map_name = "channel"

    def __init__(self, channels: int, eps: float = STYLE_EPS, reduction: float | None = None,
                 reduced_channels: int | None = None):
        super().__init__()
        self.channels = positive_int(type(self).__name__, "channels", channels)
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps <= 0:
            raise ValueError(f"SRM: eps must be a positive finite number (it keeps the std's gradient finite), "
                             f"got {eps!r}")
        self.eps = float(eps)
        self.cfc = nn.Parameter(torch.empty(channels, 2))
        self.bn = nn.BatchNorm2d(channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The official init: ``cfc`` zero, BN scale 1 and shift 0 (running statistics reset)."""
        with torch.no_grad():
            self.cfc.zero_()
        self.bn.reset_parameters()

    def style_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The channel-wise FC of the style vector, before BN: ``[N, C, H, W] → [N, C, 1, 1]``."""
        return (style_pool(x, self.eps) * self.cfc).sum(-1)[..., None, None]

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The channel weights ``σ(BN(z))``, shape ``[N, C, 1, 1]``, values in (0, 1)."""
        check_input(self, x, self.channels)
        _refuse_single_value_bn(self, x, x.shape[0], "over the batch of style logits")
        return torch.sigmoid(self.bn(self.style_logits(x)))

    def extra_repr(self) -> str:
        return f"channels={self.channels}, eps={self.eps}"


# --------------------------------------------------------------------------- GSoP
@register_block("gsop", family="second_order", paper=GSOP_PAPER + "; GSoP-Net1 channel attention")
class GSoP(GateBlock):
    """GSoP-Net1's channel attention: gate each channel from the covariance of a reduced copy of the map.

    Args:
        channels: ``C`` of the input ``[N, C, H, W]``.
        reduction, reduced_channels: ``d = C // reduction`` (at least 2) unless ``reduced_channels`` is given.
            The official code fixes ``d = 128`` for ResNet-50's 256–2048 channels; the course's backbones have
            16–64 channels, so ``d`` follows ``C`` here.
        stride: stride of the 1×1 reduction conv (official: 2 when ``C ≤ 256``, to make the covariance cheaper;
            default 1 here, where the maps are already small).
        expansion: the row-wise conv's outputs per row (official: 4, so ``4d`` values).

    Where the official code places it: only in the *last* bottleneck of each stage of GSoP-Net1 (ResNet-50),
    on the residual branch after the last BN and before the add — the pre-ReLU output is gated, the
    covariance is taken of its ReLU. :class:`attncourse.models.AttnResNet` puts a ``"residual"`` block in every
    basic block of the chosen stages (one per stage in the course's default depths, i.e. the same place).

    Cost per image: the covariance takes ``d²·M'`` multiply-adds (``M' = H'·W'``) and ``d²`` values — O(d²) in
    the reduced width; parameters ``C·d + 4d² + 4d·C`` (+ biases and BN), so ``d ≈ C/8`` costs about as much as
    an SE block with ``r = 4``.

    Init (as the official ResNet): conv weights Kaiming-normal (fan-out, ReLU), conv biases PyTorch's default,
    BN ``γ = 1, β = 0``.
    """

    map_name = "channel"

    def __init__(self, channels: int, reduction: float = 4, reduced_channels: int | None = None, stride: int = 1,
                 expansion: int = 4):
        super().__init__()
        name = type(self).__name__
        self.channels = positive_int(name, "channels", channels)
        self.reduced_channels = d = reduced_width(name, channels, reduction, reduced_channels, min_channels=2)
        self.stride = positive_int(name, "stride", stride)
        self.expansion = positive_int(name, "expansion", expansion)
        self.pre_act = nn.ReLU(inplace=False)
        self.reduce = nn.Conv2d(channels, d, 1, stride=self.stride, bias=True)
        self.reduce_bn = nn.BatchNorm2d(d)
        self.reduce_act = nn.ReLU(inplace=True)
        self.row_bn = nn.BatchNorm2d(d)
        self.row_conv = nn.Conv2d(d, expansion * d, kernel_size=(d, 1), groups=d, bias=True)
        self.expand = nn.Conv2d(expansion * d, channels, 1, bias=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for conv in (self.reduce, self.row_conv, self.expand):
            conv.reset_parameters()  # PyTorch's default bias
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        self.reduce_bn.reset_parameters()
        self.row_bn.reset_parameters()

    def covariance(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, C, H, W] → [N, d, d]``: the covariance of the reduced channels (after ReLU, conv, BN, ReLU)."""
        check_input(self, x, self.channels)
        h, w = (-(-s // self.stride) for s in x.shape[2:])
        _refuse_single_value_bn(self, x, x.shape[0] * h * w, "after the reduction conv")
        reduced = self.reduce_act(self.reduce_bn(self.reduce(self.pre_act(x))))
        return covariance_pool(reduced)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The channel weights ``[N, C, 1, 1]``, values in (0, 1)."""
        cov = self.covariance(x)
        rows = self.row_bn(cov.unsqueeze(-1))           # [N, d, d, 1]: BN over the d rows
        return torch.sigmoid(self.expand(self.row_conv(rows)))  # [N, 4d, 1, 1] -> [N, C, 1, 1]

    def extra_repr(self) -> str:
        return f"channels={self.channels}, reduced_channels={self.reduced_channels}, stride={self.stride}"
