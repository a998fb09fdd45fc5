"""Mixed attention: channel *and* spatial attention in one block — CBAM, BAM and scSE.

Papers:

* **CBAM: Convolutional Block Attention Module** — Woo, Park, Lee, Kweon, arXiv:1807.06521.
* **BAM: Bottleneck Attention Module** — Park, Woo, Lee, Kweon, arXiv:1807.06514.
* **Concurrent Spatial and Channel Squeeze & Excitation in Fully Convolutional Networks** — Roy, Navab,
  Wachinger, arXiv:1803.02579 (scSE).

Shape flow for an input ``x`` of shape ``[N, C, H, W]`` (``C' = C // r``)::

    ChannelAttention (CAM)   avg-pool x, max-pool x          [N, C, 1, 1] each
                             shared MLP  C → C' → C           (1×1 convs fc1, ReLU, fc2)
                             Mc = σ(MLP(avg) + MLP(max))      [N, C, 1, 1];   y = x · Mc
    SpatialAttention (SAM)   max and mean over channels       [N, 1, H, W] each, stacked → [N, 2, H, W]
                             k×k conv (2 → 1), BN             [N, 1, H, W]
                             Ms = σ(·);  y = x · Ms
    CBAM                     y = SAM(CAM(x))                  (order="channel_spatial", the paper's choice)
    BAM                      Mc = MLP-with-BN(GAP(x))         [N, C, 1, 1]   (logits)
                             Ms = 1×1 → 3×3 d=4 → 3×3 d=4 → 1×1 [N, 1, H, W] (logits)
                             y = x · (1 + σ(Mc ⊙ Ms))         broadcast to [N, C, H, W]
    SCSE                     cSE: x · σ(MLP(GAP(x)))          [N, C, 1, 1] weights, r = 2
                             sSE: x · σ(conv1×1(x))           [N, 1, H, W] map
                             y = cSE + sSE  (combine="sum")   or max(cSE, sSE) (combine="max")

Facts taken from the papers and their official code (the code here is written from them):

* CBAM's channel MLP is shared by the two pooled descriptors and has biases in the official code
  (``nn.Linear``); timm's ``CbamModule`` uses no MLP bias (``mlp_bias=False``). ``bias=`` chooses.
* CBAM's spatial descriptor is ``[max, mean]`` in the official code and ``[mean, max]`` in timm.
  The order only matters when weights are copied between the two: for a layer trained from scratch
  the 7×7 conv simply learns its two input slices the other way round. ``order=`` chooses.
* Both the official code and timm follow the spatial 7×7 conv (no bias) with BatchNorm, which the
  paper does not mention; ``norm=True`` keeps it. The official ResNet initialises that BN's scale to
  zero, so every spatial map starts as exactly 0.5 — attention starts neutral (:meth:`reset_parameters`).
  That BN has ``momentum=0.01`` in the official code (PyTorch's default is 0.1): its running statistics
  average over about the last 100 steps. ``bn_momentum=`` chooses.
* The paper (Sec. 4.1, Table 3) finds channel→spatial slightly better than spatial→channel and than
  the two in parallel. It does not say how the parallel maps were combined; here ``"parallel"``
  computes both maps from the same input and multiplies them: ``y = x · Mc(x) · Ms(x)`` — the same
  rescaling as the sequential block except that neither map sees the other's output.
* BAM's paper writes ``M = σ(Mc + Ms)``; the official code computes ``1 + σ(Mc · Ms)`` and multiplies
  (``x · (1 + M)`` = the paper's residual ``x + x ⊗ M``). ``combine="product"`` (default) follows the
  code, ``combine="sum"`` the paper. BAM goes at the bottlenecks of the network (the end of each
  stage, where the map is about to be downsampled): ``placement="stage"``.
* scSE's paper and the course notes add the two recalibrated maps; the authors' code takes their element-wise
  max. Both are offered (``"scse"``, ``"scse_max"``). Both branches have biases in the authors' code.
* CBAM's channel branch with the max pool removed is exactly an SE block with the same weights
  (``ChannelAttention(C, pools=("avg",))`` ≡ ``create_block("se", C)``), and with both pools it is the
  ``"se_avgmax"`` variant of :mod:`attncourse.blocks.channel`.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from . import register_block
from ._common import GateBlock, check_input, picture_helper, positive_int, reduced_width
from .channel import _check_choice, _check_init_logit, squeeze

__all__ = ["ChannelAttention", "SpatialAttention", "CBAM", "BAM", "SCSE", "spatial_descriptor",
           "CBAM_ORDERS", "SPATIAL_ORDERS", "POOLS"]

CBAM_PAPER = "CBAM: Convolutional Block Attention Module (arXiv:1807.06521)"
BAM_PAPER = "BAM: Bottleneck Attention Module (arXiv:1807.06514)"
SCSE_PAPER = "Concurrent Spatial and Channel Squeeze & Excitation in Fully Convolutional Networks (arXiv:1803.02579)"

POOLS = ("avg", "max")
SPATIAL_ORDERS = ("max_mean", "mean_max")
CBAM_ORDERS = ("channel_spatial", "spatial_channel", "parallel")
BAM_COMBINES = ("product", "sum")
SCSE_COMBINES = ("sum", "max")


def spatial_descriptor(x: torch.Tensor, order: str = "max_mean") -> torch.Tensor:
    """CBAM's spatial descriptor: channel-wise max and mean stacked, ``[N, C, H, W] → [N, 2, H, W]``.

    ``order="max_mean"`` is the official code's ``[max, mean]``; ``"mean_max"`` is timm's.
    """
    _check_choice("spatial_descriptor", "order", order, SPATIAL_ORDERS)
    mx, mean = x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)
    return torch.cat([mx, mean] if order == "max_mean" else [mean, mx], dim=1)


# --------------------------------------------------------------------------- CBAM's two modules
@register_block("channel_attention", family="mixed", paper=CBAM_PAPER + "; channel attention module only")
@register_block("cam", family="mixed", paper=CBAM_PAPER + "; channel attention module only")
class ChannelAttention(GateBlock):
    """CBAM's channel attention module: ``y = x · σ(MLP(avgpool x) + MLP(maxpool x))``, MLP shared.

    Args:
        channels: ``C`` of the input ``[N, C, H, W]``.
        reduction: ``r``; the MLP's hidden layer has ``C // r`` units (the paper: r = 16).
        reduced_channels: explicit hidden width (overrides ``reduction``).
        pools: which global poolings feed the shared MLP (``"avg"``, ``"max"``; the paper uses both).
        bias: biases in the two MLP layers (official code: yes; timm: no).
        init_logit: shift of the gate's logits at initialisation (``0``, the default, is the official init):
            ``fc2``'s bias is set to ``init_logit / len(pools)`` instead of 0 — the shared MLP runs once per
            pooled descriptor and the logits are summed, so its bias counts once per pool. For every input the
            fresh block's logits are the default block's plus ``init_logit``; the gate starts near
            ``σ(init_logit)`` (not exactly: ``fc2``'s weights are random). Needs ``bias=True``.

    Shape flow: ``[N, C, H, W] → pools [N, C, 1, 1] each → fc1 [N, C/r, 1, 1] → ReLU → fc2 [N, C, 1, 1]
    → summed over pools → σ → x · Mc``. Parameters: ``2·C·C/r`` (+ ``C/r + C`` with bias).
    """

    map_name = "channel"

    def __init__(self, channels: int, reduction: float = 16, reduced_channels: int | None = None,
                 pools: Sequence[str] = ("avg", "max"), bias: bool = True, init_logit: float = 0.0):
        super().__init__()
        name = type(self).__name__
        pools = tuple(pools)
        if not pools or len(set(pools)) != len(pools) or any(p not in POOLS for p in pools):
            raise ValueError(f"{name}: pools must be a non-empty selection of {POOLS} without repeats, got {pools!r}")
        self.init_logit = _check_init_logit(name, init_logit)
        if self.init_logit != 0 and not bias:
            raise ValueError(f"{name}: init_logit={init_logit!r} sets fc2's bias, so it needs bias=True")
        self.channels, self.pools = channels, pools
        self.reduced_channels = reduced_width(name, channels, reduction, reduced_channels)
        self.fc1 = nn.Conv2d(channels, self.reduced_channels, 1, bias=bias)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(self.reduced_channels, channels, 1, bias=bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default init for the MLP and zero biases, as the official code; then ``fc2``'s bias
        ``init_logit / len(pools)`` (each pooled descriptor adds it once to the summed logits)."""
        for fc in (self.fc1, self.fc2):
            fc.reset_parameters()
            if fc.bias is not None:
                nn.init.zeros_(fc.bias)
        if self.init_logit != 0:
            nn.init.constant_(self.fc2.bias, self.init_logit / len(self.pools))

    def mlp(self, z: torch.Tensor) -> torch.Tensor:
        """The shared MLP on a pooled descriptor ``[N, C, 1, 1] → [N, C, 1, 1]`` (logits)."""
        return self.fc2(self.act(self.fc1(z)))

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The channel map ``Mc = σ(Σ_pools MLP(pool(x)))``, shape ``[N, C, 1, 1]``, values in (0, 1)."""
        check_input(self, x, self.channels)
        return torch.sigmoid(sum(self.mlp(squeeze(x, p)[0]) for p in self.pools))

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, reduced_channels={self.reduced_channels}, pools={self.pools}"
                + (f", init_logit={self.init_logit}" if self.init_logit != 0 else ""))


@register_block("spatial_attention", family="mixed", paper=CBAM_PAPER + "; spatial attention module only")
@register_block("sam", family="mixed", paper=CBAM_PAPER + "; spatial attention module only")
class SpatialAttention(GateBlock):
    """CBAM's spatial attention module: ``y = x · σ(BN(conv_k×k([max_c x, mean_c x])))``.

    Args:
        channels: ``C`` of the input, checked when given (the block itself works for any ``C``; the
            registry passes it first).
        kernel_size: odd size of the conv over the 2-channel descriptor (the paper: 7, which beat 3).
        order: ``"max_mean"`` (official code) or ``"mean_max"`` (timm) — which descriptor comes first.
        norm: BatchNorm after the conv, as the official code and timm (then the conv has no bias).
        bn_momentum: that BatchNorm's running-statistics momentum: 0.01 as the official code (PyTorch's default
            is 0.1).
        reduction, reduced_channels: accepted so a backbone can pass the same kwargs to every block; unused.
        init_logit: the gate's logit at initialisation (``0``, the default, is the official init): the BN's
            shift (with ``norm=False`` the conv's bias) starts at ``init_logit``. With ``norm=True`` the BN's
            scale starts at 0, so the fresh map is exactly ``σ(init_logit)`` everywhere, for every input.

    Shape flow: ``[N, C, H, W] → descriptor [N, 2, H, W] → conv (padding k//2) [N, 1, H, W] → BN → σ → x · Ms``.
    Parameters: ``2·k²`` (+ 2 for BN, or + 1 conv bias without it).
    """

    map_name = "spatial"
    spec_revision = 1  # 1: BN momentum 0.01 as the official code (was PyTorch's 0.1); see attncourse.blocks

    def __init__(self, channels: int | None = None, kernel_size: int = 7, order: str = "max_mean", norm: bool = True,
                 reduction: float | None = None, reduced_channels: int | None = None, bn_momentum: float = 0.01,
                 init_logit: float = 0.0):
        super().__init__()
        name = type(self).__name__
        self.init_logit = _check_init_logit(name, init_logit)
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"{name}: kernel_size must be an odd positive int so the map keeps its size "
                             f"(padding k//2; the paper uses 3 or 7), got {kernel_size!r}")
        if channels is not None:
            positive_int(name, "channels", channels)
        _check_choice(name, "order", order, SPATIAL_ORDERS)
        self.channels, self.kernel_size, self.order = channels, kernel_size, order
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=not norm)
        if not (isinstance(bn_momentum, (int, float)) and 0 < bn_momentum <= 1):
            raise ValueError(f"{name}: bn_momentum must be a number in (0, 1] (official CBAM: 0.01), got {bn_momentum!r}")
        self.bn = nn.BatchNorm2d(1, momentum=float(bn_momentum)) if norm else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Official CBAM init: conv Kaiming (fan-out); BN scale **0** and shift 0, so ``Ms ≡ 0.5`` at first.
        A non-zero ``init_logit`` becomes the BN's shift (the conv's bias without BN): ``Ms ≡ σ(init_logit)``."""
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)
        if self.bn is not None:
            self.bn.reset_parameters()
            nn.init.zeros_(self.bn.weight)
        if self.init_logit != 0:
            nn.init.constant_(self.bn.bias if self.bn is not None else self.conv.bias, self.init_logit)

    def descriptor(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, C, H, W] → [N, 2, H, W]``: channel-wise max and mean in this block's ``order``."""
        return spatial_descriptor(x, self.order)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(self.descriptor(x))
        return self.bn(out) if self.bn is not None else out

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The spatial map ``Ms``, shape ``[N, 1, H, W]``, values in (0, 1)."""
        check_input(self, x, self.channels)
        return torch.sigmoid(self.logits(x))

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, kernel_size={self.kernel_size}, order={self.order!r}"
                + (f", init_logit={self.init_logit}" if self.init_logit != 0 else ""))


@register_block("cbam", family="mixed", paper=CBAM_PAPER)
@register_block("cbam_spatial_first", family="mixed", paper=CBAM_PAPER + "; spatial → channel (order ablation)",
                order="spatial_channel")
@register_block("cbam_parallel", family="mixed", paper=CBAM_PAPER + "; channel ∥ spatial (order ablation)",
                order="parallel")
class CBAM(nn.Module):
    """Convolutional Block Attention Module: channel attention, then spatial attention.

    Args:
        channels, reduction, reduced_channels, bias, pools: of the :class:`ChannelAttention` (``r = 16``, avg and max
            pooling in the paper; ``pools=("avg",)`` gives the channel gate SE's descriptor).
        kernel_size, spatial_order, norm, bn_momentum: of the :class:`SpatialAttention` (``k = 7``, ``"max_mean"``,
            BN momentum 0.01).
        order: ``"channel_spatial"`` (the paper's block: ``y = x'·Ms(x')`` with ``x' = x·Mc(x)``),
            ``"spatial_channel"`` (``y = x'·Mc(x')`` with ``x' = x·Ms(x)``) or ``"parallel"``
            (``y = x · Mc(x) · Ms(x)``, both maps from the same input — see the module docstring).
        init_logit: passed to both halves. With the default 0 both gates start near 0.5 (the spatial one
            exactly), so the fresh block scales its input by about 0.25; ``init_logit=2`` starts both near
            ``σ(2) ≈ 0.88`` (about 0.77 for the product). 0 is the official init.

    ``[N, C, H, W] → [N, C, H, W]``. In a ResNet the block goes on the residual branch before the add
    (``placement="residual"``), as in the official ``BasicBlock``/``Bottleneck``.
    """

    spec_revision = SpatialAttention.spec_revision  # it trains what its spatial half trains

    def __init__(self, channels: int, reduction: float = 16, kernel_size: int = 7, order: str = "channel_spatial",
                 reduced_channels: int | None = None, spatial_order: str = "max_mean", bias: bool = True,
                 norm: bool = True, bn_momentum: float = 0.01, init_logit: float = 0.0,
                 pools: Sequence[str] = ("avg", "max")):
        super().__init__()
        name = type(self).__name__
        _check_choice(name, "order", order, CBAM_ORDERS)
        reduced_width(name, channels, reduction, reduced_channels)  # errors name CBAM, not its halves
        self.init_logit = _check_init_logit(name, init_logit)
        if self.init_logit != 0 and not bias:
            raise ValueError(f"{name}: init_logit={init_logit!r} sets the channel MLP's last bias, so it needs bias=True")
        self.channels, self.order = channels, order
        self.channel = ChannelAttention(channels, reduction, reduced_channels, pools=pools, bias=bias,
                                        init_logit=self.init_logit)
        self.spatial = SpatialAttention(channels, kernel_size, spatial_order, norm, bn_momentum=bn_momentum,
                                        init_logit=self.init_logit)
        # each half initialised itself as it was built (the same init reset_parameters applies)

    def reset_parameters(self) -> None:
        """Each half's own (official) init: see :class:`ChannelAttention` and :class:`SpatialAttention`."""
        self.channel.reset_parameters()
        self.spatial.reset_parameters()

    def _maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(Mc, Ms, y)``: the two maps exactly as applied, and the output."""
        check_input(self, x, self.channels)
        if self.order == "channel_spatial":
            mc = self.channel.weights(x)
            x1 = x * mc
            ms = self.spatial.weights(x1)
            return mc, ms, x1 * ms
        if self.order == "spatial_channel":
            ms = self.spatial.weights(x)
            x1 = x * ms
            mc = self.channel.weights(x1)
            return mc, ms, x1 * mc
        mc, ms = self.channel.weights(x), self.spatial.weights(x)
        return mc, ms, x * mc * ms

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._maps(x)[2]

    @picture_helper
    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"channel": Mc [N, C, 1, 1], "spatial": Ms [N, 1, H, W]}``, each computed on the input it really sees."""
        mc, ms, _ = self._maps(x)
        return {"channel": mc, "spatial": ms}

    def extra_repr(self) -> str:
        return f"channels={self.channels}, order={self.order!r}" + (
            f", init_logit={self.init_logit}" if self.init_logit != 0 else "")


# --------------------------------------------------------------------------- BAM
@register_block("bam", placement="stage", family="mixed", paper=BAM_PAPER, stages=(1, 2))  # at stage boundaries
class BAM(nn.Module):
    """Bottleneck Attention Module: ``y = x · (1 + σ(Mc(x) ⊙ Ms(x)))``.

    Args:
        channels: ``C`` of the input ``[N, C, H, W]``.
        reduction: ``r`` for both gates (the paper: 16); ``reduced_channels`` overrides ``C // r``.
        dilation: dilation of the spatial gate's 3×3 convs (the paper: 4).
        num_dilated: how many dilated 3×3 convs (the paper: 2).
        combine: ``"product"`` — ``σ(Mc · Ms)``, the official code — or ``"sum"`` — ``σ(Mc + Ms)``, the paper.

    Channel gate ``Mc``: ``GAP [N, C, 1, 1] → fc1 [N, C/r, 1, 1] → BN → ReLU → fc2 [N, C, 1, 1]``.
    Spatial gate ``Ms``: ``1×1 [N, C/r, H, W] → BN → ReLU → (3×3, dilation d → BN → ReLU) × num_dilated → 1×1 [N, 1, H, W]``.
    Both are logits (no sigmoid of their own); they are broadcast to ``[N, C, H, W]`` and combined.
    The channel gate's BatchNorm sees one value per sample, so training needs a batch of at least 2.
    """

    def __init__(self, channels: int, reduction: float = 16, dilation: int = 4, num_dilated: int = 2,
                 reduced_channels: int | None = None, combine: str = "product"):
        super().__init__()
        name = type(self).__name__
        _check_choice(name, "combine", combine, BAM_COMBINES)
        if not isinstance(dilation, int) or dilation < 1:
            raise ValueError(f"{name}: dilation must be a positive int, got {dilation!r}")
        if not isinstance(num_dilated, int) or num_dilated < 0:
            raise ValueError(f"{name}: num_dilated must be a non-negative int, got {num_dilated!r}")
        self.channels, self.combine, self.dilation, self.num_dilated = channels, combine, dilation, num_dilated
        cr = self.reduced_channels = reduced_width(name, channels, reduction, reduced_channels)
        self.channel_gate = nn.Sequential(
            nn.Conv2d(channels, cr, 1), nn.BatchNorm2d(cr), nn.ReLU(inplace=True), nn.Conv2d(cr, channels, 1))
        layers: list[nn.Module] = [nn.Conv2d(channels, cr, 1), nn.BatchNorm2d(cr), nn.ReLU(inplace=True)]
        for _ in range(num_dilated):
            layers += [nn.Conv2d(cr, cr, 3, padding=dilation, dilation=dilation), nn.BatchNorm2d(cr), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(cr, 1, 1))
        self.spatial_gate = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Official init: channel MLP default, spatial convs Kaiming (fan-out); all biases 0; BN scale 1."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                m.reset_parameters()
                if any(m is s for s in self.spatial_gate):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_parameters()

    def gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Mc [N, C, 1, 1], Ms [N, 1, H, W])`` — the two gates' logits."""
        check_input(self, x, self.channels)
        if self.training and x.shape[0] == 1:
            raise ValueError(f"{type(self).__name__}: the channel gate's BatchNorm needs a batch of at least 2 in "
                             f"training mode, got shape {tuple(x.shape)}; use eval() for single images")
        return self.channel_gate(x.mean((2, 3), keepdim=True)), self.spatial_gate(x)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """``M = σ(Mc ⊙ Ms)`` (or ``σ(Mc + Ms)``), shape ``[N, C, H, W]``; the output is ``x · (1 + M)``."""
        mc, ms = self.gates(x)
        return torch.sigmoid(mc * ms if self.combine == "product" else mc + ms)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (1 + self.weights(x))

    @picture_helper
    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"channel": Mc, "spatial": Ms, "attention": M}`` — gate logits ``[N, C, 1, 1]``, ``[N, 1, H, W]``
        and the combined ``M = σ(·)`` in ``[N, C, H, W]`` (the output is ``x · (1 + M)``)."""
        mc, ms = self.gates(x)
        return {"channel": mc, "spatial": ms, "attention": torch.sigmoid(mc * ms if self.combine == "product" else mc + ms)}

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, reduced_channels={self.reduced_channels}, dilation={self.dilation}, "
                f"num_dilated={self.num_dilated}, combine={self.combine!r}")


# --------------------------------------------------------------------------- scSE
@register_block("scse", family="mixed", paper=SCSE_PAPER + "; cSE + sSE")
@register_block("scse_max", family="mixed", paper=SCSE_PAPER + "; max(cSE, sSE) as the authors' code", combine="max")
class SCSE(nn.Module):
    """Concurrent spatial and channel squeeze & excitation: ``y = x·σ_c + x·σ_s`` (or their max).

    Args:
        channels: ``C`` of the input ``[N, C, H, W]``.
        reduction: ``r`` of the cSE bottleneck (the paper: 2); ``reduced_channels`` overrides ``C // r``.
        combine: ``"sum"`` (the paper's formula, as in the course notes) or ``"max"`` (the authors' code).

    cSE: ``GAP [N, C, 1, 1] → fc1 [N, C/r, 1, 1] → ReLU → fc2 [N, C, 1, 1] → σ`` (an SE block, biases on);
    sSE: ``1×1 conv C → 1 (bias) [N, 1, H, W] → σ``. Both rescale the same ``x``; then sum or max.
    """

    def __init__(self, channels: int, reduction: float = 2, reduced_channels: int | None = None, combine: str = "sum"):
        super().__init__()
        name = type(self).__name__
        _check_choice(name, "combine", combine, SCSE_COMBINES)
        self.channels, self.combine = channels, combine
        self.reduced_channels = reduced_width(name, channels, reduction, reduced_channels)
        self.fc1 = nn.Conv2d(channels, self.reduced_channels, 1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(self.reduced_channels, channels, 1)
        self.spatial = nn.Conv2d(channels, 1, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default init, as the authors' code."""
        for m in (self.fc1, self.fc2, self.spatial):
            m.reset_parameters()

    def maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(channel weights [N, C, 1, 1], spatial map [N, 1, H, W])``, both in (0, 1)."""
        check_input(self, x, self.channels)
        wc = torch.sigmoid(self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True)))))
        return wc, torch.sigmoid(self.spatial(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wc, ws = self.maps(x)
        return x * wc + x * ws if self.combine == "sum" else torch.maximum(x * wc, x * ws)

    @picture_helper
    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"channel": cSE weights [N, C, 1, 1], "spatial": sSE map [N, 1, H, W]}``."""
        wc, ws = self.maps(x)
        return {"channel": wc, "spatial": ws}

    def extra_repr(self) -> str:
        return f"channels={self.channels}, reduced_channels={self.reduced_channels}, combine={self.combine!r}"
