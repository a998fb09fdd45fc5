"""Channel attention: Squeeze-and-Excitation and its design space.

Papers:

* **Squeeze-and-Excitation Networks** — Hu, Shen, Albanie, Sun, Wu, arXiv:1709.01507 (SE, SE-ResNet, SE-Inception).
* **ECA-Net: Efficient Channel Attention for Deep Convolutional Neural Networks** — Wang et al.,
  arXiv:1910.03151 (the 1-D convolution across channels with an adaptive kernel size).

The SE block in three steps (shapes for an input ``[N, C, H, W]``)::

    squeeze     z = GAP(x)                         [N, C, H, W] -> [N, C, 1, 1]
    excitation  s = σ(W2 · ReLU(W1 · z + b1) + b2)  [N, C, 1, 1] -> [N, C/r, 1, 1] -> [N, C, 1, 1]
    rescale     y = x · s                           broadcast over H, W -> [N, C, H, W]

``W1, W2`` are 1×1 convolutions with bias (the paper's two FC layers on the pooled vector), so the
excitation costs ``2·C²/r + C/r + C`` parameters.

The design space (the course notes) — every variant is a registered block name (``create_block(name, C)``):

=================  ==========================================================  =========================
name               what changes                                                 weights shape
=================  ==========================================================  =========================
``se``             nothing: GAP → FC-ReLU-FC → sigmoid (the paper)             ``[N, C, 1, 1]``
``se_max``         squeeze = global max pooling                                 ``[N, C, 1, 1]``
``se_std``         squeeze = per-channel standard deviation                     ``[N, C, 1, 1]``
``se_avgmax``      squeeze = avg and max, shared excitation, logits summed      ``[N, C, 1, 1]``
``se_h``           squeeze over W only: one weight per (channel, row)           ``[N, C, H, 1]``
``se_w``           squeeze over H only: one weight per (channel, column)        ``[N, C, 1, W]``
``se_spatial``     squeeze along the channel direction: a spatial map           ``[N, 1, H, W]``
``se_conv1d``      excitation = one 1-D conv across channels (k adaptive)       ``[N, C, 1, 1]``
``eca``            ECA-Net: GAP → 1-D conv (k adaptive, no bias) → sigmoid      ``[N, C, 1, 1]``
``se_multiscale``  excitation = several 1-D convs (k = 3, 5, 7), logits summed  ``[N, C, 1, 1]``
``se_fusion``      multi-input SE fusing three views of x (course notes)            ``[N, 3, C]`` (per view)
=================  ==========================================================  =========================

Multi-input fusion (:class:`MultiInputSE` takes a list of inputs, so it is not registered itself;
:class:`MultiViewSE`, registered as ``se_fusion``, feeds it three views of one input) and the SE-ResNet
blocks (:class:`SEBasicBlock`, :class:`SEBottleneck`) complete the file. In
:class:`attncourse.models.AttnResNet`, ``attention="se"`` puts an :class:`SEBlock` on the residual branch
of every basic block before the add — exactly :class:`SEBasicBlock`.
"""
from __future__ import annotations

import math
import numbers
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import register_block
from ._common import GateBlock, check_input, picture_helper, positive_int, reduced_width

__all__ = [
    "SQUEEZES", "EXCITATIONS", "GATES", "squeeze", "eca_kernel_size",
    "SEBlock", "ECABlock", "DirectionalSE", "ChannelPoolSE", "MultiInputSE", "MultiViewSE", "SEBasicBlock", "SEBottleneck",
]

SE_PAPER = "Squeeze-and-Excitation Networks (arXiv:1709.01507)"
ECA_PAPER = "ECA-Net: Efficient Channel Attention for Deep Convolutional Neural Networks (arXiv:1910.03151)"

SQUEEZES = ("avg", "max", "std", "avgmax")
EXCITATIONS = ("fc", "conv1d", "multiscale")
GATES = ("sigmoid", "hard_sigmoid")
STD_EPS = 1e-5  # std = sqrt(var + eps): finite gradient even on a constant (e.g. 1×1) map


# --------------------------------------------------------------------------- building blocks
def squeeze(x: torch.Tensor, op: str = "avg", dims: Sequence[int] = (2, 3)) -> list[torch.Tensor]:
    """Pool ``x`` over ``dims`` (kept as size 1) with ``op``; a list of descriptors (two for ``"avgmax"``).

    >>> [t.shape for t in squeeze(torch.zeros(2, 8, 5, 7), "avgmax")]
    [torch.Size([2, 8, 1, 1]), torch.Size([2, 8, 1, 1])]
    """
    dims = tuple(dims)
    if op == "avg":
        return [x.mean(dims, keepdim=True)]
    if op == "max":
        return [x.amax(dims, keepdim=True)]
    if op == "std":
        return [(x.var(dims, unbiased=False, keepdim=True) + STD_EPS).sqrt()]
    if op == "avgmax":
        return [x.mean(dims, keepdim=True), x.amax(dims, keepdim=True)]
    raise ValueError(f"squeeze: op must be one of {SQUEEZES}, got {op!r}")


def eca_kernel_size(channels: int, gamma: float = 2, beta: float = 1) -> int:
    """ECA's adaptive kernel size ``k = |log2(C)/γ + β/γ|`` made odd (ECA-Net, Eq. 12).

    As in the authors' code: truncate ``t = int(|(log2 C + β) / γ|)``, then ``k = t`` if odd else ``t + 1``.
    (timm's ``EcaModule`` additionally clamps ``k`` to at least 3; this function does not.)

    >>> [eca_kernel_size(c) for c in (16, 64, 128, 256, 512, 1024, 2048)]
    [3, 3, 5, 5, 5, 5, 7]
    """
    positive_int("eca_kernel_size", "channels", channels)
    for what, v in (("gamma", gamma), ("beta", beta)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or (what == "gamma" and v <= 0):
            raise ValueError(f"eca_kernel_size: {what} must be a {'positive ' if what == 'gamma' else ''}finite number, "
                             f"got {v!r}")
    t = int(abs((math.log2(channels) + beta) / gamma))
    return t if t % 2 else t + 1


def _gate(logits: torch.Tensor, gate: str) -> torch.Tensor:
    if gate == "sigmoid":
        return torch.sigmoid(logits)
    if gate == "hard_sigmoid":
        return F.hardsigmoid(logits)
    raise ValueError(f"gate must be one of {GATES}, got {gate!r}")


def _check_choice(block: str, what: str, value: str, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{block}: {what} must be one of {choices}, got {value!r}")


def _check_init_logit(block: str, value) -> float:
    """``value`` as a float, or ``ValueError`` naming ``block`` unless it is a finite real number (not a bool).

    ``init_logit`` is the shift of a gate's pre-sigmoid value at initialisation: the gate starts at
    ``σ(init_logit + default logits)``, i.e. at ``σ(init_logit)`` where the default init gives logits 0.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{block}: init_logit must be a finite number (the gate's pre-sigmoid value at "
                         f"initialisation; 0 = the paper's init), got {value!r}")
    return float(value)


class _ChannelConv1d(nn.Module):
    """1-D convolutions sliding along the channel axis of a ``[N, C, 1, 1]`` descriptor (logits summed).

    ``[N, C, 1, 1] → view [N, 1, C] → Conv1d(1, 1, k, pad k//2, no bias) → [N, 1, C] → [N, C, 1, 1]``.
    One kernel is ECA; several kernel sizes are the multi-scale excitation.
    """

    def __init__(self, kernel_sizes: Sequence[int], block: str = "_ChannelConv1d"):
        super().__init__()
        kernel_sizes = tuple(kernel_sizes)
        if not kernel_sizes or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0
                                   for k in kernel_sizes):
            raise ValueError(f"{block}: kernel sizes must be odd positive ints (the 1-D conv keeps the channel count "
                             f"with padding k//2), got {kernel_sizes}")
        self.convs = nn.ModuleList(nn.Conv1d(1, 1, k, padding=k // 2, bias=False) for k in kernel_sizes)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        n, c = z.shape[:2]
        seq = z.reshape(n, 1, c)
        return sum(conv(seq) for conv in self.convs).reshape(n, c, 1, 1)


# --------------------------------------------------------------------------- SE and its variants
@register_block("se", family="channel", paper=SE_PAPER)
@register_block("se_max", family="channel", paper=SE_PAPER + "; squeeze = max pooling", squeeze="max")
@register_block("se_std", family="channel", paper=SE_PAPER + "; squeeze = standard deviation", squeeze="std")
@register_block("se_avgmax", family="channel", paper=SE_PAPER + "; squeeze = avg + max (shared excitation)", squeeze="avgmax")
@register_block("se_conv1d", family="channel", paper=SE_PAPER + "; excitation = 1-D conv across channels", excitation="conv1d")
@register_block("se_multiscale", family="channel", paper=SE_PAPER + "; excitation = multi-scale 1-D convs", excitation="multiscale")
class SEBlock(GateBlock):
    """Squeeze-and-Excitation: ``y = x · σ(excite(squeeze(x)))`` with one weight per channel.

    Args:
        channels: ``C`` of the input ``[N, C, H, W]``.
        reduction: ``r``; the excitation bottleneck has ``C // r`` units (the paper: r = 16).
        reduced_channels: explicit bottleneck width (overrides ``reduction``). Both only matter for
            ``excitation="fc"``; the 1-D conv excitations have no bottleneck and ignore them.
        squeeze: ``"avg"`` (the paper), ``"max"``, ``"std"`` or ``"avgmax"`` (both descriptors go through
            the same excitation and their logits are summed, as CBAM's channel gate does).
        excitation: ``"fc"`` (the paper: FC C→C/r, ReLU, FC C/r→C, both with bias, as 1×1 convs ``fc1``,
            ``fc2``), ``"conv1d"`` (one bias-free 1-D conv across channels, kernel ``kernel_size`` or
            ECA's adaptive size) or ``"multiscale"`` (1-D convs with ``kernel_sizes``, logits summed).
        gate: ``"sigmoid"`` (the paper) or ``"hard_sigmoid"``.
        kernel_size: kernel of the ``"conv1d"`` excitation (default :func:`eca_kernel_size` of ``C``).
        kernel_sizes: kernels of the ``"multiscale"`` excitation (default ``(3, 5, 7)``).
        init_logit: shift of the gate's logits at initialisation (``0``, the default, is the paper's
            init, left untouched): ``fc2``'s bias gets ``+ init_logit`` (``+ init_logit / 2`` for
            ``"avgmax"``, whose two descriptors each add it), so for every input the fresh block's logits
            are the default block's plus ``init_logit`` and the gate starts near ``σ(init_logit)`` instead
            of near 0.5 (default ``fc2`` weights are random, so not exactly). Needs ``excitation="fc"``
            (the 1-D conv excitations have no bias).

    Shape flow: ``[N, C, H, W] → squeeze [N, C, 1, 1] → excite [N, C/r, 1, 1] → [N, C, 1, 1] → σ → x·s``.
    The state dict of the default block (``fc1.*``, ``fc2.*``) matches ``torchvision.ops.SqueezeExcitation``
    and ``timm.layers.SEModule``.
    """

    map_name = "channel"

    def __init__(self, channels: int, reduction: float = 16, reduced_channels: int | None = None, squeeze: str = "avg",
                 excitation: str = "fc", gate: str = "sigmoid", kernel_size: int | None = None,
                 kernel_sizes: Sequence[int] = (3, 5, 7), init_logit: float = 0.0):
        super().__init__()
        name = type(self).__name__
        _check_choice(name, "squeeze", squeeze, SQUEEZES)
        _check_choice(name, "excitation", excitation, EXCITATIONS)
        _check_choice(name, "gate", gate, GATES)
        self.init_logit = _check_init_logit(name, init_logit)
        if self.init_logit != 0 and excitation != "fc":
            raise ValueError(f"{name}: init_logit={init_logit!r} shifts fc2's bias, so it needs excitation='fc'; "
                             f"the {excitation!r} excitation has no bias")
        self.channels, self.squeeze, self.excitation, self.gate = channels, squeeze, excitation, gate
        if excitation == "fc":
            self.reduced_channels = reduced_width(name, channels, reduction, reduced_channels)
            self.fc1 = nn.Conv2d(channels, self.reduced_channels, 1, bias=True)
            self.act = nn.ReLU(inplace=True)
            self.fc2 = nn.Conv2d(self.reduced_channels, channels, 1, bias=True)
        else:
            positive_int(name, "channels", channels)
            self.reduced_channels = None  # no bottleneck: the 1-D convs never reduce
            k = eca_kernel_size(channels) if kernel_size is None else kernel_size  # 0 is an error, not "default"
            sizes = [k] if excitation == "conv1d" else list(kernel_sizes)
            self.conv = _ChannelConv1d(sizes, name)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default conv initialisation, as the reference implementations (the paper prescribes none);
        then ``fc2``'s bias shifted by ``init_logit`` (split over the descriptors whose logits are summed)."""
        for m in self.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d)):
                m.reset_parameters()
        if self.init_logit != 0:  # 0: not even a no-op add, so the default block is bit-identical to before
            with torch.no_grad():
                self.fc2.bias.add_(self.init_logit / (2 if self.squeeze == "avgmax" else 1))

    def excite(self, z: torch.Tensor) -> torch.Tensor:
        """Excitation logits (before the gate) of a descriptor ``[N, C, 1, 1]``."""
        if self.excitation == "fc":
            return self.fc2(self.act(self.fc1(z)))
        return self.conv(z)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The channel weights ``s = σ(excite(squeeze(x)))``, shape ``[N, C, 1, 1]``, values in (0, 1)."""
        check_input(self, x, self.channels)
        return _gate(sum(self.excite(z) for z in squeeze(x, self.squeeze)), self.gate)

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, squeeze={self.squeeze!r}, excitation={self.excitation!r}, gate={self.gate!r}"
                + (f", init_logit={self.init_logit}" if self.init_logit != 0 else ""))


@register_block("eca", family="channel", paper=ECA_PAPER)
class ECABlock(SEBlock):
    """ECA-Net: ``y = x · σ(Conv1d_k(GAP(x)))`` — no bottleneck, a bias-free 1-D conv across channels.

    ``k = eca_kernel_size(C, gamma, beta)`` unless ``kernel_size`` is given; the block has only ``k`` parameters.
    ``reduction`` / ``reduced_channels`` are accepted (so a backbone can pass the same kwargs to every arm)
    and ignored.
    """

    def __init__(self, channels: int, kernel_size: int | None = None, gamma: float = 2, beta: float = 1,
                 reduction: float | None = None, reduced_channels: int | None = None, gate: str = "sigmoid"):
        positive_int(type(self).__name__, "channels", channels)
        super().__init__(channels, squeeze="avg", excitation="conv1d", gate=gate,
                         kernel_size=eca_kernel_size(channels, gamma, beta) if kernel_size is None else kernel_size)

    @property
    def kernel_size(self) -> int:
        return self.conv.convs[0].kernel_size[0]


@register_block("se_h", family="channel", paper=SE_PAPER + "; squeeze over W only (weights per channel and row)", keep="h")
@register_block("se_w", family="channel", paper=SE_PAPER + "; squeeze over H only (weights per channel and column)", keep="w")
class DirectionalSE(GateBlock):
    """SE that squeezes along one spatial axis only and keeps the other.

    ``keep="h"`` pools over W: ``[N, C, H, W] → [N, C, H, 1]``, one weight per (channel, row);
    ``keep="w"`` pools over H: ``[N, C, 1, W]``, one weight per (channel, column). The excitation is the
    SE MLP (1×1 convs C→C/r→C with bias) applied at every row (column) with shared weights, then the gate,
    and the weights broadcast back over the pooled axis.
    """

    def __init__(self, channels: int, reduction: float = 16, reduced_channels: int | None = None, keep: str = "h",
                 squeeze: str = "avg", gate: str = "sigmoid"):
        super().__init__()
        name = type(self).__name__
        _check_choice(name, "keep", keep, ("h", "w"))
        _check_choice(name, "squeeze", squeeze, SQUEEZES)
        _check_choice(name, "gate", gate, GATES)
        self.channels, self.keep, self.squeeze, self.gate = channels, keep, squeeze, gate
        self.reduced_channels = reduced_width(name, channels, reduction, reduced_channels)
        self.fc1 = nn.Conv2d(channels, self.reduced_channels, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(self.reduced_channels, channels, 1, bias=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.fc1.reset_parameters()
        self.fc2.reset_parameters()

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, C, H, 1]`` (``keep="h"``) or ``[N, C, 1, W]`` (``keep="w"``), values in (0, 1)."""
        check_input(self, x, self.channels)
        dims = (3,) if self.keep == "h" else (2,)
        return _gate(sum(self.fc2(self.act(self.fc1(z))) for z in squeeze(x, self.squeeze, dims)), self.gate)

    @property
    def map_name(self) -> str:
        return f"channel_{'row' if self.keep == 'h' else 'column'}"


    @picture_helper
    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {f"channel_{'row' if self.keep == 'h' else 'column'}": self.weights(x)}

    def extra_repr(self) -> str:
        return f"channels={self.channels}, keep={self.keep!r}, squeeze={self.squeeze!r}"


@register_block("se_spatial", family="channel", paper=SE_PAPER + "; squeeze along the channel direction (a spatial map)")
class ChannelPoolSE(GateBlock):
    """SE with the squeeze along the *channel* direction: one weight per pixel, shared by all channels.

    ``[N, C, H, W] → pool over C ([N, 1, H, W]; two maps for "avgmax") → conv k×k (→ 1 map, bias)
    → σ → [N, 1, H, W]``, broadcast over channels. A k×k conv is the excitation because the descriptor
    is now a map, not a vector (CBAM's spatial gate is this block with ``squeeze="avgmax"``, k = 7).
    ``reduction`` / ``reduced_channels`` are accepted and ignored.
    """

    map_name = "spatial"

    def __init__(self, channels: int, kernel_size: int = 7, squeeze: str = "avgmax", gate: str = "sigmoid",
                 reduction: float | None = None, reduced_channels: int | None = None):
        super().__init__()
        name = type(self).__name__
        positive_int(name, "channels", channels)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"{name}: kernel_size must be odd and positive, got {kernel_size}")
        _check_choice(name, "squeeze", squeeze, SQUEEZES)
        _check_choice(name, "gate", gate, GATES)
        self.channels, self.squeeze, self.gate = channels, squeeze, gate
        self.conv = nn.Conv2d(2 if squeeze == "avgmax" else 1, 1, kernel_size, padding=kernel_size // 2, bias=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.conv.reset_parameters()

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The spatial map ``[N, 1, H, W]``, values in (0, 1)."""
        check_input(self, x, self.channels)
        return _gate(self.conv(torch.cat(squeeze(x, self.squeeze, dims=(1,)), dim=1)), self.gate)


    @picture_helper
    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"spatial": self.weights(x)}

    def extra_repr(self) -> str:
        return f"channels={self.channels}, squeeze={self.squeeze!r}, kernel_size={self.conv.kernel_size[0]}"


# --------------------------------------------------------------------------- multi-input fusion
class MultiInputSE(nn.Module):
    """Fuse ``k`` inputs (different views of the same information) with per-input channel weights (the course notes).

    ``inputs x_1..x_k [N, C, H, W] → sum → GAP [N, C, 1, 1] → FC C→C/r (r = 2) → ReLU → FC → k·C
    → split into k × [N, C, 1, 1] → σ each → y = Σ_i s_i · x_i  [N, C, H, W]``.

    Unlike SKNet (softmax across branches), each input's weights are an independent sigmoid, so they need
    not sum to one. ``forward`` takes a list or tuple of ``k`` tensors of the same shape.
    """

    def __init__(self, channels: int, num_inputs: int = 2, reduction: float = 2, reduced_channels: int | None = None,
                 gate: str = "sigmoid"):
        super().__init__()
        name = type(self).__name__
        if num_inputs < 1:
            raise ValueError(f"{name}: num_inputs must be at least 1, got {num_inputs}")
        _check_choice(name, "gate", gate, GATES)
        self.channels, self.num_inputs, self.gate = channels, num_inputs, gate
        self.reduced_channels = reduced_width(name, channels, reduction, reduced_channels)
        self.fc1 = nn.Conv2d(channels, self.reduced_channels, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(self.reduced_channels, num_inputs * channels, 1, bias=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.fc1.reset_parameters()
        self.fc2.reset_parameters()

    def _check(self, inputs) -> list[torch.Tensor]:
        name = type(self).__name__
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(f"{name}: expected a list or tuple of {self.num_inputs} tensors [N, C, H, W], "
                             f"got {type(inputs).__name__}")
        if len(inputs) != self.num_inputs:
            raise ValueError(f"{name}: expected {self.num_inputs} inputs, got {len(inputs)}")
        for i, x in enumerate(inputs):
            check_input(self, x, self.channels, name=f"{name} (input {i})")
            if x.shape != inputs[0].shape:
                raise ValueError(f"{name}: all inputs must have the same shape; input 0 has {tuple(inputs[0].shape)}, "
                                 f"input {i} has {tuple(x.shape)}")
        return list(inputs)

    def weights(self, inputs) -> torch.Tensor:
        """Per-input channel weights ``[N, k, C, 1, 1]``, each in (0, 1)."""
        inputs = self._check(inputs)
        z = sum(inputs).mean((2, 3), keepdim=True)  # [N, C, 1, 1]
        logits = self.fc2(self.act(self.fc1(z)))  # [N, k·C, 1, 1]
        return _gate(logits.reshape(z.shape[0], self.num_inputs, self.channels, 1, 1), self.gate)

    def forward(self, inputs) -> torch.Tensor:
        s = self.weights(inputs)
        return sum(s[:, i] * x for i, x in enumerate(inputs))

    @picture_helper
    def attention_maps(self, inputs) -> dict[str, torch.Tensor]:
        """``{"input_weights": [N, k, C]}`` — the weight of each channel of each input."""
        return {"input_weights": self.weights(inputs).flatten(2)}

    def extra_repr(self) -> str:
        return f"channels={self.channels}, num_inputs={self.num_inputs}, reduced_channels={self.reduced_channels}"


@register_block("se_fusion", family="channel",
                paper=SE_PAPER + "; multi-input SE fusion of three views (identity, 3×3, dilated 3×3) — the course notes")
class MultiViewSE(nn.Module):
    """Multi-input SE as a single-input block: three views of ``x`` fused by :class:`MultiInputSE`.

    The course notes build the ``k`` inputs from "the same information at different scales". Here:
    ``views = [x, dw3×3(x), dw3×3_dilated2(x)]`` (depthwise convs, bias-free, PyTorch's default
    initialisation) → :class:`MultiInputSE` (C → C/r → 3·C, a sigmoid per view) → Σ s_i · view_i.
    ``[N, C, H, W] → 3 × [N, C, H, W] → [N, C, H, W]``. ``reduction`` defaults to 2 as in the seed.
    """

    def __init__(self, channels: int, reduction: float = 2, reduced_channels: int | None = None, gate: str = "sigmoid"):
        super().__init__()
        positive_int(type(self).__name__, "channels", channels)
        reduced_width(type(self).__name__, channels, reduction, reduced_channels)  # errors name this block
        self.channels = channels
        self.views = nn.ModuleList([
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False),
            nn.Conv2d(channels, channels, 3, padding=2, dilation=2, groups=channels, bias=False),
        ])
        self.fuse = MultiInputSE(channels, 3, reduction, reduced_channels, gate)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for conv in self.views:
            conv.reset_parameters()
        self.fuse.reset_parameters()

    def _views(self, x: torch.Tensor) -> list[torch.Tensor]:
        check_input(self, x, self.channels)
        return [x] + [conv(x) for conv in self.views]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(self._views(x))

    @picture_helper
    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"view_weights": [N, 3, C]}`` — the weight of each channel of each view."""
        return {"view_weights": self.fuse.weights(self._views(x)).flatten(2)}


# --------------------------------------------------------------------------- SE-ResNet blocks
def _conv_bn(cin: int, cout: int, k: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout))


class SEBasicBlock(nn.Module):
    """SE-ResNet basic block: SE on the residual branch, *before* the add (SENet, Fig. 3).

    ``x → conv3×3-BN-ReLU → conv3×3-BN → SE → (+ shortcut(x)) → ReLU``. Same layout and parameter names
    as :class:`attncourse.models.BasicBlock` with ``attention=SEBlock(...)`` (``attention`` ↔ ``se``).
    """

    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1, reduction: float = 16, reduced_channels: int | None = None,
                 **se_kwargs):
        super().__init__()
        self.cin, self.cout = cin, cout
        self.conv1 = _conv_bn(cin, cout, 3, stride)
        self.conv2 = _conv_bn(cout, cout, 3, 1)
        self.se = SEBlock(cout, reduction, reduced_channels, **se_kwargs)
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else _conv_bn(cin, cout, 1, stride)
        self.act = nn.ReLU(inplace=True)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """The residual branch before SE: ``conv-BN-ReLU → conv-BN``."""
        return self.conv2(F.relu(self.conv1(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.cin)
        return self.act(self.se(self.residual(x)) + self.shortcut(x))


class SEBottleneck(nn.Module):
    """SE-ResNet bottleneck block: ``1×1 → 3×3 (stride) → 1×1 (×expansion) → SE → + shortcut → ReLU``.

    ``cin → planes → planes → planes·expansion`` channels (expansion 4 as in ResNet-50); the SE works on the
    expanded ``planes·expansion`` channels of the residual branch before the add, as in SE-ResNet-50.
    """

    def __init__(self, cin: int, planes: int, stride: int = 1, expansion: int = 4, reduction: float = 16,
                 reduced_channels: int | None = None, **se_kwargs):
        super().__init__()
        self.cin, self.expansion = cin, expansion
        self.cout = cout = planes * expansion
        self.conv1 = _conv_bn(cin, planes, 1)
        self.conv2 = _conv_bn(planes, planes, 3, stride)
        self.conv3 = _conv_bn(planes, cout, 1)
        self.se = SEBlock(cout, reduction, reduced_channels, **se_kwargs)
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else _conv_bn(cin, cout, 1, stride)
        self.act = nn.ReLU(inplace=True)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """The residual branch before SE: ``1×1-BN-ReLU → 3×3-BN-ReLU → 1×1-BN``."""
        return self.conv3(F.relu(self.conv2(F.relu(self.conv1(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.cin)
        return self.act(self.se(self.residual(x)) + self.shortcut(x))
