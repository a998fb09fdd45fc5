"""Branch attention: attend over branches or kernels — Selective Kernel (SKNet), Highway, CondConv,
Dynamic Convolution and ResNeSt split attention.

Papers:

* **Selective Kernel Networks** — Li, Wang, Hu, Yang, CVPR 2019, arXiv:1903.06586 (SK convolution).
* **Highway Networks** — Srivastava, Greff, Schmidhuber, arXiv:1505.00387 (and "Training Very Deep Networks",
  arXiv:1507.06228): a learned gate between a transform and the identity.
* **CondConv: Conditionally Parameterized Convolutions for Efficient Inference** — Yang, Bender, Le, Ngiam,
  arXiv:1904.04971 (a per-sample mixture of expert kernels, sigmoid routing).
* **Dynamic Convolution: Attention over Convolution Kernels** — Chen, Dai, Liu, Chen, Yuan, Liu, arXiv:1912.03458
  (K kernels mixed by a softmax with a temperature annealed from 30 to 1).
* **ResNeSt: Split-Attention Networks** — Zhang et al., arXiv:2004.08955 (split attention over radix groups).

What each one attends over (``[N, C, H, W]`` in and out for every registered block):

=================  ==========================================  =============================================
name               attends over                                weights (``attention_maps``)
=================  ==========================================  =============================================
``sk``             M = 2 branches (3×3, 3×3 dilated 2)          softmax across branches, ``[N, M, C]``
``highway``        {transform H(x), carry x}                   sigmoid gate T, ``[N, C, H, W]``
``condconv``       E expert kernels, mixed per sample          independent sigmoids, ``[N, E]``
``dynamic_conv``   K kernels, mixed per sample                 softmax(z / τ) across kernels, ``[N, K]``
``split_attn``     R radix splits in each cardinal group        softmax across the radix, ``[N, R, C]``
=================  ==========================================  =============================================

SK, CondConv, DynamicConv and split attention are *convolutions* (a 3×3 conv's drop-in replacement): in
:class:`attncourse.models.branch.BranchResNet` they replace the second 3×3 conv of every basic block, so a
comparison with the plain conv is at matched FLOPs. Registered, they follow the block contract like every
other block (``create_block("sk", C)`` maps ``[N, C, H, W] → [N, C, H, W]``); placed by
:class:`~attncourse.models.AttnResNet` on the residual branch they would *add* a conv.

The SK unit, step by step (shapes for ``x`` of ``[N, C, H, W]``, M branches)::

    split   U_m = ReLU(BN(conv3×3_{dilation m}(x)))       M × [N, C, H, W]   (groups honoured)
    fuse    s = GAP(Σ_m U_m)                               [N, C, 1, 1]
            z = ReLU(BN(W_reduce · s))                     [N, d, 1, 1],  d = max(C / r, L),  L = 32
    select  a = softmax_m(W_select · z  viewed [N, M, C])  [N, M, C, 1, 1]   Σ_m a_m = 1 per channel
            V = Σ_m a_m · U_m                              [N, C, H, W]
"""
from __future__ import annotations

import math
import torch
import torch.nn.functional as F
from torch import nn

from . import register_block
from ._common import DilatedConv2d, check_input, picture_helper, positive_int, reduced_width

__all__ = ["SKAttention", "SelectiveKernel", "Highway", "CondConv2d", "DynamicConv2d", "SplitAttention",
           "RadixSoftmax", "mixture_conv", "per_sample_conv_loop", "IMPLEMENTATIONS"]

SK_PAPER = "Selective Kernel Networks (arXiv:1903.06586)"
HIGHWAY_PAPER = "Highway Networks (arXiv:1505.00387)"
CONDCONV_PAPER = "CondConv: Conditionally Parameterized Convolutions for Efficient Inference (arXiv:1904.04971)"
DYNAMIC_PAPER = "Dynamic Convolution: Attention over Convolution Kernels (arXiv:1912.03458)"
RESNEST_PAPER = "ResNeSt: Split-Attention Networks (arXiv:2004.08955)"

IMPLEMENTATIONS = ("efficient", "naive")


def _check_bn_batch(block: nn.Module, x: torch.Tensor, where: str) -> None:
    """A BatchNorm on a pooled ``[N, d, 1, 1]`` vector sees one value per sample: training needs ``N ≥ 2``."""
    if block.training and x.shape[0] == 1:
        raise ValueError(f"{type(block).__name__}: the BatchNorm of its {where} sees one value per sample, so training "
                         f"mode needs a batch of at least 2, got shape {tuple(x.shape)}; use eval() for single images")


def _check_divides(block: str, what: str, value: int, by: str, divisor: int) -> None:
    if value % divisor:
        raise ValueError(f"{block}: {what}={value} must be divisible by {by}={divisor}")


def _out_size(size: int, kernel_size: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1


# --------------------------------------------------------------------------- Selective Kernel
class SKAttention(nn.Module):
    """The fuse-and-select step of an SK unit: the branch weights from the stacked branch outputs.

    ``U [N, M, C, H, W] → Σ_m → GAP [N, C, 1, 1] → fc_reduce (1×1, no bias) [N, d, 1, 1] → BN → ReLU →
    fc_select (1×1, no bias) [N, M·C, 1, 1] → view [N, M, C, 1, 1] → softmax over M``.

    ``fc_select`` is the paper's per-branch matrices ``A, B, …`` stacked into one 1×1 conv. A forward hook on
    this module sees the branch weights of every sample (:func:`attncourse.models.branch.branch_weights`).
    """

    def __init__(self, channels: int, num_branches: int, reduced_channels: int):
        super().__init__()
        self.channels, self.num_branches, self.reduced_channels = channels, num_branches, reduced_channels
        self.fc_reduce = nn.Conv2d(channels, reduced_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(reduced_channels)
        self.act = nn.ReLU(inplace=True)
        self.fc_select = nn.Conv2d(reduced_channels, channels * num_branches, 1, bias=False)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        n = u.shape[0]
        s = u.sum(1).mean((2, 3), keepdim=True)  # fuse: [N, C, 1, 1]
        z = self.act(self.bn(self.fc_reduce(s)))  # [N, d, 1, 1]
        logits = self.fc_select(z).reshape(n, self.num_branches, self.channels, 1, 1)
        return torch.softmax(logits, dim=1)  # select: across branches


@register_block("sk", family="branch", paper=SK_PAPER)
class SelectiveKernel(nn.Module):
    """Selective Kernel convolution: M 3×3 branches of growing dilation, weighted per channel by a softmax
    across branches computed from their fused, pooled outputs (SKNet's SK unit).

    Args:
        channels: input channels ``C`` of ``[N, C, H, W]``.
        out_channels: output channels (default ``C``).
        num_branches: ``M``; branch ``m`` (0-based) is a 3×3 conv with dilation ``dilation·(m+1)``, so the
            default M = 2 is the paper's 3×3 and "5×5" (a 3×3 with dilation 2).
        groups: groups of every branch conv (SKNet-50 uses 32); must divide both channel counts.
        dilation: base dilation (every branch's dilation is multiplied by it).
        stride: stride of every branch.
        reduction: ``r``; the fuse FC has ``d = max(out_channels // r, min_reduced)`` units, the paper's
            ``d = max(C/r, L)`` with ``L = min_reduced = 32``. ``reduced_channels`` overrides ``d``.
        split_input: timm's variant — each branch sees only its ``1/M`` share of the input channels
            (cheaper; the paper feeds the whole input to every branch, the default here).

    Shape flow: ``[N, C, H, W] → M × [N, C', H', W'] → weights [N, M, C', 1, 1] → [N, C', H', W']``.
    Equal to ``timm.layers.SelectiveKernel(C, kernel_size=[3, 5, …], rd_channels=d, split_input=False)``
    under the mapping ``branches.m.{0,1} ↔ paths.m.{conv,bn}``, ``attn.* ↔ attn.*``.

    Init (the paper prescribes none): the branch convs Kaiming-normal (fan-out, ReLU), the init of ResNet-style
    backbones' convs (torchvision's, and the course backbones' own — an SK unit replaces such a conv, so it starts
    like one); every BatchNorm scale 1, shift 0; the fuse and select FCs PyTorch's default.
    """

    spec_revision = 1  # 1: inside a backbone the branch convs keep Kaiming (were reset to PyTorch's default, ~0.41×)

    def __init__(self, channels: int, out_channels: int | None = None, num_branches: int = 2, groups: int = 1,
                 dilation: int = 1, stride: int = 1, reduction: float = 16, reduced_channels: int | None = None,
                 min_reduced: int = 32, split_input: bool = False):
        super().__init__()
        name = type(self).__name__
        positive_int(name, "channels", channels)
        out_channels = channels if out_channels is None else positive_int(name, "out_channels", out_channels)
        num_branches = positive_int(name, "num_branches", num_branches)
        groups, dilation, stride = (positive_int(name, w, v) for w, v in
                                    (("groups", groups), ("dilation", dilation), ("stride", stride)))
        min_reduced = positive_int(name, "min_reduced", min_reduced)
        in_per_branch = channels
        if split_input:
            _check_divides(name, "channels", channels, "num_branches", num_branches)
            in_per_branch = channels // num_branches
        _check_divides(name, "input channels per branch", in_per_branch, "groups", groups)
        _check_divides(name, "out_channels", out_channels, "groups", groups)
        d = (reduced_width(name, out_channels, reduction, reduced_channels) if reduced_channels is not None
             else max(reduced_width(name, out_channels, reduction), min_reduced))
        self.channels, self.out_channels, self.num_branches = channels, out_channels, num_branches
        self.groups, self.dilation, self.stride, self.split_input = groups, dilation, stride, bool(split_input)
        self.dilations = tuple(dilation * (m + 1) for m in range(num_branches))
        self.branches = nn.ModuleList(
            nn.Sequential(DilatedConv2d(in_per_branch, out_channels, 3, stride, padding=dil, dilation=dil, groups=groups,
                                    bias=False),
                          nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))
            for dil in self.dilations)
        self.attn = SKAttention(out_channels, num_branches, d)
        self.reset_parameters()

    @property
    def reduced_channels(self) -> int:
        return self.attn.reduced_channels

    def reset_parameters(self) -> None:
        """Branch convs Kaiming-normal (fan-out, ReLU) as ResNet/SKNet; BN to identity; the FCs PyTorch's default."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if m.kernel_size == (3, 3):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                else:
                    m.reset_parameters()
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_parameters()

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """The branch outputs ``U`` stacked: ``[N, M, C', H', W']``."""
        check_input(self, x, self.channels)
        _check_bn_batch(self, x, "fuse step")
        if self.split_input:
            parts = torch.chunk(x, self.num_branches, dim=1)
            return torch.stack([b(p) for b, p in zip(self.branches, parts)], dim=1)
        return torch.stack([b(x) for b in self.branches], dim=1)

    def branch_weights(self, x: torch.Tensor) -> torch.Tensor:
        """The selection weights ``a`` of shape ``[N, M, C', 1, 1]`` (summing to 1 over M)."""
        return self.attn(self.split(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.split(x)
        return (u * self.attn(u)).sum(1)

    @picture_helper
    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"branch_weights": [N, M, C']}`` — each channel's weight on each branch (eval mode, no grad)."""
        return {"branch_weights": self.branch_weights(x).flatten(2)}

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, out_channels={self.out_channels}, dilations={self.dilations}, "
                f"groups={self.groups}, reduced_channels={self.reduced_channels}, split_input={self.split_input}")


# --------------------------------------------------------------------------- Highway
@register_block("highway", family="branch", paper=HIGHWAY_PAPER)
class Highway(nn.Module):
    """A convolutional highway layer: ``y = H(x) · T(x) + x · (1 − T(x))``.

    Args:
        channels: ``C`` of ``[N, C, H, W]`` (the carry needs the same shape in and out).
        kernel_size: kernel of the transform ``H`` and of the gate ``T`` (odd, "same" padding).
        gate_bias: initial bias ``b_T`` of the gate. Negative, so ``T ≈ σ(b_T)`` is small at the start and the layer
            mostly carries ``x`` through; the papers use −1 to −3 (more negative for deeper stacks). Default −2.

    ``H(x) = ReLU(conv_H(x) + b_H)``, ``T(x) = σ(conv_T(x) + b_T)``, both ``[N, C, H, W]``; no normalisation, so a
    stack of them can be compared with the same stack without gates (:class:`attncourse.models.branch.DeepStack`).
    """

    def __init__(self, channels: int, kernel_size: int = 3, gate_bias: float = -2.0):
        super().__init__()
        name = type(self).__name__
        positive_int(name, "channels", channels)
        kernel_size = positive_int(name, "kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"{name}: kernel_size must be odd ('same' padding keeps the shape), got {kernel_size}")
        if isinstance(gate_bias, bool) or not isinstance(gate_bias, (int, float)) or not math.isfinite(gate_bias):
            raise ValueError(f"{name}: gate_bias must be a finite number, got {gate_bias!r}")
        self.channels, self.gate_bias = channels, float(gate_bias)
        self.transform = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2)
        self.gate = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``H``: Kaiming-normal (fan-in, ReLU), bias 0 — the init under which a plain ReLU stack keeps its scale;
        ``T``: PyTorch's default weights, bias ``gate_bias``."""
        nn.init.kaiming_normal_(self.transform.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(self.transform.bias)
        self.gate.reset_parameters()
        nn.init.constant_(self.gate.bias, self.gate_bias)

    def transform_gate(self, x: torch.Tensor) -> torch.Tensor:
        """``T(x) = σ(conv_T(x) + b_T)``, ``[N, C, H, W]`` in (0, 1)."""
        check_input(self, x, self.channels)
        return torch.sigmoid(self.gate(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.transform_gate(x)
        h = F.relu(self.transform(x))
        return h * t + x * (1 - t)

    @picture_helper
    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"transform_gate": T(x) [N, C, H, W]}`` — how much of each value is transformed rather than carried."""
        return {"transform_gate": self.transform_gate(x)}

    def extra_repr(self) -> str:
        return f"channels={self.channels}, gate_bias={self.gate_bias}"


# --------------------------------------------------------------------------- per-sample kernels
def mixture_conv(x: torch.Tensor, mix: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int,
                 padding: int, dilation: int, groups: int) -> torch.Tensor:
    """Convolve each sample with its own mixture of kernels, in ONE grouped convolution.

    ``x [N, C, H, W]``, ``mix [N, E]``, ``weight [E, C', C/g, k, k]``, ``bias [E, C']`` or ``None``.
    Sample ``n``'s kernel is ``Σ_e mix[n, e] · weight[e]``. The batch is folded into the channels —
    ``x → [1, N·C, H, W]``, kernels ``[N·C', C/g, k, k]``, ``groups = N·g`` — so group ``n·g + j`` is sample
    ``n``'s group ``j``; the output ``[1, N·C', H', W']`` unfolds to ``[N, C', H', W']``.
    """
    n, c, h, w = x.shape
    e, cout = weight.shape[:2]
    if n == 0:  # no groups to fold: an empty output of the right shape, still on the graph
        return F.conv2d(x, weight[0], None if bias is None else bias[0], stride, padding, dilation, groups)
    kernels = (mix @ weight.reshape(e, -1)).reshape(n * cout, *weight.shape[2:])
    b = None if bias is None else (mix @ bias).reshape(n * cout)
    out = F.conv2d(x.reshape(1, n * c, h, w), kernels, b, stride, padding, dilation, groups * n)
    return out.reshape(n, cout, *out.shape[-2:])


def per_sample_conv_loop(x: torch.Tensor, mix: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                         stride: int, padding: int, dilation: int, groups: int) -> torch.Tensor:
    """The reference for :func:`mixture_conv`: a Python loop, one ordinary conv per sample with its mixed kernel."""
    e = weight.shape[0]
    if x.shape[0] == 0:
        return F.conv2d(x, weight[0], None if bias is None else bias[0], stride, padding, dilation, groups)
    outs = []
    for i in range(x.shape[0]):
        kernel = (mix[i:i + 1] @ weight.reshape(e, -1)).reshape(weight.shape[1:])
        b = None if bias is None else (mix[i:i + 1] @ bias).reshape(-1)
        outs.append(F.conv2d(x[i:i + 1], kernel, b, stride, padding, dilation, groups))
    return torch.cat(outs)


class _MixtureConv(nn.Module):
    """Shared machinery of CondConv and DynamicConv: E kernels ``[E, C', C/g, k, k]`` mixed per sample by
    ``routing(x) [N, E]``; the two implementations (:func:`mixture_conv`, :func:`per_sample_conv_loop`)."""

    def __init__(self, channels: int, out_channels: int | None, kernel_size: int, stride: int, dilation: int,
                 groups: int, num_kernels: int, bias: bool, implementation: str, what: str):
        super().__init__()
        name = type(self).__name__
        positive_int(name, "channels", channels)
        out_channels = channels if out_channels is None else positive_int(name, "out_channels", out_channels)
        kernel_size, stride, dilation, groups = (positive_int(name, w, v) for w, v in (
            ("kernel_size", kernel_size), ("stride", stride), ("dilation", dilation), ("groups", groups)))
        num_kernels = positive_int(name, what, num_kernels)
        if kernel_size % 2 == 0:
            raise ValueError(f"{name}: kernel_size must be odd ('same' padding), got {kernel_size}")
        _check_divides(name, "channels", channels, "groups", groups)
        _check_divides(name, "out_channels", out_channels, "groups", groups)
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(f"{name}: implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
        self.channels, self.out_channels, self.kernel_size = channels, out_channels, kernel_size
        self.stride, self.dilation, self.groups, self.implementation = stride, dilation, groups, implementation
        self.padding = dilation * (kernel_size - 1) // 2
        self.num_kernels = num_kernels
        self.weight = nn.Parameter(torch.empty(num_kernels, out_channels, channels // groups, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(num_kernels, out_channels)) if bias else None

    def _init_kernels(self) -> None:
        """Each kernel on its own, Kaiming-normal (fan-out, ReLU) like the backbone's convs; biases 0."""
        for k in range(self.num_kernels):
            nn.init.kaiming_normal_(self.weight.data[k], mode="fan_out", nonlinearity="relu")
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def routing(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - defined by subclasses
        raise NotImplementedError

    def convolve(self, x: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
        fn = mixture_conv if self.implementation == "efficient" else per_sample_conv_loop
        return fn(x, mix, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convolve(x, self.routing(x))

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, out_channels={self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, dilation={self.dilation}, groups={self.groups}, kernels={self.num_kernels}, "
                f"implementation={self.implementation!r}")


@register_block("condconv", family="branch", paper=CONDCONV_PAPER)
class CondConv2d(_MixtureConv):
    """CondConv: a per-sample mixture of E expert kernels with sigmoid routing from global average pooling.

    Args:
        channels, out_channels: ``C`` in, ``C'`` out (default ``C``).
        kernel_size, stride, dilation, groups: as ``nn.Conv2d`` ("same" padding ``dilation·(k−1)/2``).
        num_experts: ``E`` (the paper: 4 to 32).
        bias: per-expert biases, mixed like the kernels (default off: a BN follows in the backbone).
        implementation: ``"efficient"`` (one grouped conv, :func:`mixture_conv`) or ``"naive"`` (a per-sample loop).

    ``x [N, C, H, W] → GAP [N, C] → routing_fn (Linear C→E) → σ → r [N, E]``;
    ``W_n = Σ_e r[n, e] · W_e [C', C/g, k, k]``; ``y_n = W_n * x_n → [N, C', H', W']``.
    The routing weights are independent sigmoids (they need not sum to 1). The expert kernels equal timm's
    ``CondConv2d.weight`` reshaped to ``[E, C', C/g, k, k]``; timm takes the routing weights as an argument.
    """

    def __init__(self, channels: int, out_channels: int | None = None, kernel_size: int = 3, stride: int = 1,
                 dilation: int = 1, groups: int = 1, num_experts: int = 4, bias: bool = False,
                 implementation: str = "efficient"):
        super().__init__(channels, out_channels, kernel_size, stride, dilation, groups, num_experts, bias,
                         implementation, "num_experts")
        self.routing_fn = nn.Linear(channels, num_experts)
        self.reset_parameters()

    @property
    def num_experts(self) -> int:
        return self.num_kernels

    def reset_parameters(self) -> None:
        self._init_kernels()
        self.routing_fn.reset_parameters()

    def routing(self, x: torch.Tensor) -> torch.Tensor:
        """``r = σ(W_r · GAP(x) + b_r)``, ``[N, E]`` in (0, 1)."""
        check_input(self, x, self.channels)
        return torch.sigmoid(self.routing_fn(x.mean((2, 3))))

    @picture_helper
    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"routing": [N, E]}`` — each sample's weight on each expert kernel."""
        return {"routing": self.routing(x)}


@register_block("dynamic_conv", family="branch", paper=DYNAMIC_PAPER)
class DynamicConv2d(_MixtureConv):
    """Dynamic Convolution: K kernels aggregated per sample by a softmax attention with temperature τ.

    Args:
        channels, out_channels, kernel_size, stride, dilation, groups, bias, implementation: as :class:`CondConv2d`.
        num_kernels: ``K`` (the paper: 4).
        reduction: ``r`` of the attention MLP's hidden layer ``C // r`` (the paper: 4); ``reduced_channels``
            overrides it.
        initial_temperature, final_temperature: τ at the start and the end of the anneal (the paper: 30 → 1).
        anneal_until: fraction of training over which τ falls linearly (the paper: the first 10 epochs of its
            ImageNet schedule); τ stays at ``final_temperature`` afterwards.

    ``x → GAP [N, C, 1, 1] → fc1 [N, C/r, 1, 1] → ReLU → fc2 [N, K, 1, 1] → π = softmax(z / τ) [N, K]``;
    ``W_n = Σ_k π[n, k] · W_k``, ``y_n = W_n * x_n``. A large τ makes π nearly uniform, so every kernel gets a
    gradient early on; τ → 1 lets the attention become selective.

    The temperature is driven by :meth:`set_training_progress`, which :func:`attncourse.train.fit` calls with
    ``p ∈ [0, 1]`` (the fraction of training steps done) before every step on every submodule that has it.
    τ is a buffer, so a checkpoint keeps it.
    """

    def __init__(self, channels: int, out_channels: int | None = None, kernel_size: int = 3, stride: int = 1,
                 dilation: int = 1, groups: int = 1, num_kernels: int = 4, reduction: float = 4,
                 reduced_channels: int | None = None, initial_temperature: float = 30.0, final_temperature: float = 1.0,
                 anneal_until: float = 0.25, bias: bool = False, implementation: str = "efficient"):
        super().__init__(channels, out_channels, kernel_size, stride, dilation, groups, num_kernels, bias,
                         implementation, "num_kernels")
        name = type(self).__name__
        for what, v in (("initial_temperature", initial_temperature), ("final_temperature", final_temperature)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{name}: {what} must be a positive finite number, got {v!r}")
        if isinstance(anneal_until, bool) or not isinstance(anneal_until, (int, float)) or not 0 < anneal_until <= 1:
            raise ValueError(f"{name}: anneal_until must be in (0, 1], got {anneal_until!r}")
        self.initial_temperature, self.final_temperature = float(initial_temperature), float(final_temperature)
        self.anneal_until = float(anneal_until)
        self.reduced_channels = reduced_width(name, channels, reduction, reduced_channels)
        self.fc1 = nn.Conv2d(channels, self.reduced_channels, 1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(self.reduced_channels, num_kernels, 1)
        self.register_buffer("temperature", torch.tensor(self.initial_temperature))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kernels as :class:`CondConv2d`; the attention MLP PyTorch's default; τ back to its initial value."""
        self._init_kernels()
        self.fc1.reset_parameters()
        self.fc2.reset_parameters()
        self.temperature.fill_(self.initial_temperature)

    def temperature_at(self, progress: float) -> float:
        """τ after a fraction ``progress`` of training: linear from initial to final until ``anneal_until``."""
        frac = min(1.0, progress / self.anneal_until)
        return self.initial_temperature + (self.final_temperature - self.initial_temperature) * frac

    def set_training_progress(self, progress: float) -> None:
        """Set τ for training progress ``p ∈ [0, 1]`` (fraction of all training steps done)."""
        if isinstance(progress, bool) or not isinstance(progress, (int, float)) or not 0 <= progress <= 1:
            raise ValueError(f"{type(self).__name__}: training progress must be a number in [0, 1], got {progress!r}")
        self.temperature.fill_(self.temperature_at(float(progress)))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Attention logits ``z`` before the temperature, ``[N, K]``."""
        check_input(self, x, self.channels)
        return self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True)))).flatten(1)

    def routing(self, x: torch.Tensor) -> torch.Tensor:
        """``π = softmax(z / τ)``, ``[N, K]``, each row summing to 1."""
        return torch.softmax(self.logits(x) / self.temperature, dim=1)

    @picture_helper
    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"kernel_attention": π [N, K]}`` at the current temperature."""
        return {"kernel_attention": self.routing(x)}

    def extra_repr(self) -> str:
        return super().extra_repr() + f", temperature={float(self.temperature):g}"


# --------------------------------------------------------------------------- ResNeSt split attention
class RadixSoftmax(nn.Module):
    """Softmax over the radix within each cardinal group (sigmoid when ``radix == 1``).

    Input ``[N, G·R·C/G]`` laid out cardinal-major (``[N, G, R, C/G]``, what a grouped 1×1 conv produces). It is
    transposed to radix-major ``[N, R, G, C/G]`` *before* the softmax over R — without the transpose the softmax
    would mix unrelated channels (a bug of some ports) — and returned flattened, radix-major: ``[N, R·C]``.
    """

    def __init__(self, radix: int, cardinality: int):
        super().__init__()
        self.radix, self.cardinality = radix, cardinality

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        n, width = z.shape[0], z.shape[1]
        if self.radix == 1:
            return torch.sigmoid(z).reshape(n, width)
        z = z.reshape(n, self.cardinality, self.radix, width // (self.cardinality * self.radix)).transpose(1, 2)
        return torch.softmax(z, dim=1).reshape(n, width)


@register_block("split_attn", family="branch", paper=RESNEST_PAPER)
class SplitAttention(nn.Module):
    """ResNeSt split attention: R radix splits of a grouped 3×3 conv, weighted by a softmax over the radix.

    Args:
        channels, out_channels: ``C`` in, ``C'`` out (default ``C``).
        radix: ``R``, splits per cardinal group (1 turns the softmax into a sigmoid gate, SE-like).
        cardinality: ``G``, the cardinal groups (the convs' groups).
        kernel_size, stride, dilation: of the split conv.
        reduction: the attention's hidden width is ``max(C·R // reduction, min_reduced)`` (ResNeSt: reduction 4,
            min 32); ``reduced_channels`` overrides it. It must be divisible by ``G``.

    Shape flow::

        x [N, C, H, W] → conv k×k, groups G·R → BN → ReLU → [N, R·C', H', W'] → view [N, R, C', H', W']
          → Σ_R → GAP [N, C', 1, 1] → fc1 (groups G, bias) → BN → ReLU → [N, d, 1, 1]
          → fc2 (groups G, bias) → [N, R·C'] (cardinal-major) → RadixSoftmax → a [N, R, C', 1, 1]
          → Σ_R a_r · U_r → [N, C', H', W']

    Equal to ``timm.layers.SplitAttn(C, radix=R, groups=G, norm_layer=nn.BatchNorm2d)`` with the same hidden
    width, parameter names identical (``conv, bn0, fc1, bn1, fc2``).

    Init: the split conv Kaiming-normal (fan-out, ReLU), as the official ResNeSt network initialises its convs
    (normal with std √(2 / (k²·C_out))); BatchNorms scale 1, shift 0; the attention FCs PyTorch's default.
    """

    spec_revision = 1  # 1: inside a backbone the split conv keeps Kaiming (was reset to PyTorch's default)

    def __init__(self, channels: int, out_channels: int | None = None, radix: int = 2, cardinality: int = 1,
                 kernel_size: int = 3, stride: int = 1, dilation: int = 1, reduction: float = 4,
                 reduced_channels: int | None = None, min_reduced: int = 32):
        super().__init__()
        name = type(self).__name__
        positive_int(name, "channels", channels)
        out_channels = channels if out_channels is None else positive_int(name, "out_channels", out_channels)
        radix, cardinality, kernel_size, stride, dilation, min_reduced = (positive_int(name, w, v) for w, v in (
            ("radix", radix), ("cardinality", cardinality), ("kernel_size", kernel_size), ("stride", stride),
            ("dilation", dilation), ("min_reduced", min_reduced)))
        if kernel_size % 2 == 0:
            raise ValueError(f"{name}: kernel_size must be odd ('same' padding), got {kernel_size}")
        _check_divides(name, "channels", channels, "cardinality·radix", cardinality * radix)
        _check_divides(name, "out_channels", out_channels, "cardinality", cardinality)
        d = (reduced_width(name, channels * radix, reduction, reduced_channels) if reduced_channels is not None
             else max(reduced_width(name, channels * radix, reduction), min_reduced))
        _check_divides(name, "the hidden width", d, "cardinality", cardinality)
        self.channels, self.out_channels, self.radix, self.cardinality = channels, out_channels, radix, cardinality
        self.reduced_channels = d
        pad = dilation * (kernel_size - 1) // 2
        self.conv = DilatedConv2d(channels, out_channels * radix, kernel_size, stride, pad, dilation,
                              groups=cardinality * radix, bias=False)
        self.bn0 = nn.BatchNorm2d(out_channels * radix)
        self.act0 = nn.ReLU(inplace=True)
        self.fc1 = nn.Conv2d(out_channels, d, 1, groups=cardinality)
        self.bn1 = nn.BatchNorm2d(d)
        self.act1 = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(d, out_channels * radix, 1, groups=cardinality)
        self.rsoftmax = RadixSoftmax(radix, cardinality)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Split conv Kaiming-normal (fan-out, ReLU) as the backbone; BN to identity; the FCs PyTorch's default."""
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        for m in (self.bn0, self.bn1, self.fc1, self.fc2):
            m.reset_parameters()

    def splits(self, x: torch.Tensor) -> torch.Tensor:
        """The radix splits ``U``, ``[N, R, C', H', W']``."""
        check_input(self, x, self.channels)
        _check_bn_batch(self, x, "attention MLP")
        u = self.act0(self.bn0(self.conv(x)))
        return u.reshape(u.shape[0], self.radix, self.out_channels, *u.shape[-2:])

    def attend(self, u: torch.Tensor) -> torch.Tensor:
        """The radix weights ``a`` of the splits ``u``: ``[N, R, C', 1, 1]``."""
        z = self.act1(self.bn1(self.fc1(u.sum(1).mean((2, 3), keepdim=True))))
        return self.rsoftmax(self.fc2(z)).reshape(u.shape[0], self.radix, self.out_channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.splits(x)
        return (u * self.attend(u)).sum(1)

    @picture_helper
    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"radix_weights": [N, R, C']}``."""
        return {"radix_weights": self.attend(self.splits(x)).flatten(2)}

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, out_channels={self.out_channels}, radix={self.radix}, "
                f"cardinality={self.cardinality}, reduced_channels={self.reduced_channels}")
