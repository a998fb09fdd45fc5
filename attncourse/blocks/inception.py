"""Inception: several receptive fields side by side, concatenated on channels — and SE-Inception.

Papers:

* Szegedy et al., "Going Deeper with Convolutions" (GoogLeNet), arXiv:1409.4842 — the Inception module.
* Hu et al., "Squeeze-and-Excitation Networks", arXiv:1709.01507 — SE-Inception: an SE block applied to
  the concatenated output of each Inception module (``attention="se"`` here).

Shape flow of :class:`InceptionBlock` (every conv is conv → BN → ReLU, "same" padding, stride 1)::

    x [N, Cin, H, W]
      ├─ branch1: 1×1                         → [N, ch1x1, H, W]
      ├─ branch2: 1×1 → [N, ch3x3_reduce] → 3×3 → [N, ch3x3, H, W]
      ├─ branch3: 1×1 → [N, ch5x5_reduce] → 5×5 → [N, ch5x5, H, W]
      └─ branch4: 3×3 max-pool (stride 1) → 1×1 → [N, pool_proj, H, W]
    concat on channels → [N, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W] → attention (identity for "none")

Why the 1×1 convolutions in front of the 3×3 and 5×5 ones: a k×k conv from Cin to Cout costs
``2·Cin·Cout·k²·H·W`` FLOPs; reducing Cin to a small width first makes the expensive k×k conv cheap
(:class:`NaiveInceptionBlock` is the paper's version without them, for comparison).

torchvision's ``googlenet`` uses a 3×3 conv in its "5×5" branch (a known quirk, pytorch/vision issue
#906, kept for its pretrained weights). This block uses a true 5×5; ``kernel5=3`` reproduces torchvision.
"""
from __future__ import annotations

import torch
from torch import nn

from . import create_block  # defined in the package __init__ before it imports this file
from ._common import check_batch_one_training, check_input

__all__ = ["ConvBNReLU", "InceptionBlock", "NaiveInceptionBlock", "InceptionNet", "PlainNet", "ONE_SPATIAL_WIDTHS",
           "ONE_SPATIAL_5X5_WIDTHS", "receptive_field"]


def _positive(block: str, **values) -> None:
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{block}: {name} must be a positive int, got {v!r}")


class ConvBNReLU(nn.Module):
    """k×k conv ("same" padding) → BatchNorm → ReLU, as torchvision's ``BasicConv2d`` (conv without bias, BN eps=0.001).

    With ``use_bn=False`` it is conv (with bias) → ReLU, as in the original GoogLeNet. ``dilation`` spreads the
    kernel's taps (padding ``dilation·(k // 2)`` keeps the size).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, use_bn: bool = True,
                 dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=dilation * (kernel_size // 2),
                              dilation=dilation, bias=not use_bn)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001) if use_bn else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


def _init_convs(module: nn.Module) -> None:
    """Kaiming (fan-out) for convs and linears, BN to identity: BN follows every conv here, so the
    scale of the conv init barely matters with BN; without BN (``use_bn=False``) Kaiming keeps the
    activations' scale through the ReLUs."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class InceptionBlock(nn.Module):
    """The Inception module of GoogLeNet, optionally followed by an attention block (SE-Inception).

    Args:
        in_channels: input channels ``Cin``.
        ch1x1: width of the 1×1 branch.
        ch3x3_reduce, ch3x3: 1×1 reduction width and output width of the 3×3 branch.
        ch5x5_reduce, ch5x5: 1×1 reduction width and output width of the 5×5 branch.
        pool_proj: width of the 1×1 projection after the 3×3 max-pool.
        attention: a registered block name applied to the concatenated output (``"se"`` gives SE-Inception).
        attention_kwargs: keyword arguments for that block (e.g. ``{"reduction": 4}``).
        use_bn: conv → BN → ReLU (default, as torchvision) or conv+bias → ReLU (the 2014 paper).
        kernel5: kernel size of the "5×5" branch; ``3`` reproduces torchvision's GoogLeNet.

    ``[N, Cin, H, W] → [N, out_channels, H, W]`` with ``out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj``.
    """

    def __init__(self, in_channels: int, ch1x1: int, ch3x3_reduce: int, ch3x3: int, ch5x5_reduce: int, ch5x5: int,
                 pool_proj: int, attention: str = "none", attention_kwargs: dict | None = None, use_bn: bool = True,
                 kernel5: int = 5):
        super().__init__()
        _positive("InceptionBlock", in_channels=in_channels, ch1x1=ch1x1, ch3x3_reduce=ch3x3_reduce, ch3x3=ch3x3,
                  ch5x5_reduce=ch5x5_reduce, ch5x5=ch5x5, pool_proj=pool_proj, kernel5=kernel5)
        if kernel5 % 2 == 0:
            raise ValueError(f"InceptionBlock: kernel5 must be odd (for 'same' padding), got {kernel5}")
        self.in_channels = in_channels
        self.widths = (ch1x1, ch3x3, ch5x5, pool_proj)
        self.branch1 = ConvBNReLU(in_channels, ch1x1, 1, use_bn)
        self.branch2 = nn.Sequential(ConvBNReLU(in_channels, ch3x3_reduce, 1, use_bn),
                                     ConvBNReLU(ch3x3_reduce, ch3x3, 3, use_bn))
        self.branch3 = nn.Sequential(ConvBNReLU(in_channels, ch5x5_reduce, 1, use_bn),
                                     ConvBNReLU(ch5x5_reduce, ch5x5, kernel5, use_bn))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                     ConvBNReLU(in_channels, pool_proj, 1, use_bn))
        self.attention_name = str(attention).lower()
        self.attention = create_block(attention, self.out_channels, **dict(attention_kwargs or {}))
        self.reset_parameters()

    @property
    def out_channels(self) -> int:
        return sum(self.widths)

    def reset_parameters(self) -> None:
        for branch in (self.branch1, self.branch2, self.branch3, self.branch4):
            _init_convs(branch)
        if hasattr(self.attention, "reset_parameters"):
            self.attention.reset_parameters()  # the attention block's own (paper) initialisation

    def branches(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four branch outputs before concatenation (for inspection)."""
        check_input(self, x, self.in_channels)
        return [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(torch.cat(self.branches(x), dim=1))

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}, attention={self.attention_name!r}"


class NaiveInceptionBlock(nn.Module):
    """The paper's "naïve" Inception module (its Fig. 2a): 1×1 | 3×3 | 5×5 | 3×3 max-pool, no 1×1 reductions.

    The 3×3 and 5×5 convs see all ``Cin`` input channels, and the pooled input is concatenated as it
    is, so ``out_channels = ch1x1 + ch3x3 + ch5x5 + Cin`` — the width grows with every module. It is
    here to measure what the reductions of :class:`InceptionBlock` save.
    """

    def __init__(self, in_channels: int, ch1x1: int, ch3x3: int, ch5x5: int, use_bn: bool = True, kernel5: int = 5):
        super().__init__()
        _positive("NaiveInceptionBlock", in_channels=in_channels, ch1x1=ch1x1, ch3x3=ch3x3, ch5x5=ch5x5, kernel5=kernel5)
        if kernel5 % 2 == 0:
            raise ValueError(f"NaiveInceptionBlock: kernel5 must be odd (for 'same' padding), got {kernel5}")
        self.in_channels = in_channels
        self.widths = (ch1x1, ch3x3, ch5x5, in_channels)
        self.branch1 = ConvBNReLU(in_channels, ch1x1, 1, use_bn)
        self.branch2 = ConvBNReLU(in_channels, ch3x3, 3, use_bn)
        self.branch3 = ConvBNReLU(in_channels, ch5x5, kernel5, use_bn)
        self.branch4 = nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True)
        _init_convs(self)

    @property
    def out_channels(self) -> int:
        return sum(self.widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.in_channels)
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], dim=1)


# --------------------------------------------------------------------------- small networks for 40×40 digits
# Inception widths per block: (ch1x1, ch3x3_reduce, ch3x3, ch5x5_reduce, ch5x5, pool_proj), GoogLeNet's
# proportions (3a: 64, 96, 128, 16, 32, 32) scaled down; outputs 64, 128 and 160 channels.
INCEPTION_NET_CONFIG = (
    (16, 16, 32, 4, 8, 8),
    (32, 32, 64, 8, 16, 16),
    (48, 48, 64, 12, 24, 24),
)


class _StagedNet(nn.Module):
    """The skeleton both small networks share: 3×3 stem → stages with 3×3 max-pools (stride 2) between them →
    global average pool → linear. ``make_stage(i, cin) -> (module, cout)`` builds stage ``i``."""

    def __init__(self, in_channels: int, num_classes: int, stem_channels: int, n_stages: int, make_stage):
        super().__init__()
        _positive(type(self).__name__, in_channels=in_channels, num_classes=num_classes, stem_channels=stem_channels)
        self.in_channels = in_channels
        self.stem = ConvBNReLU(in_channels, stem_channels, 3)
        _init_convs(self.stem)
        layers, cin = [], stem_channels
        for i in range(n_stages):
            if i > 0:
                layers.append(nn.MaxPool2d(3, stride=2, padding=1))
            stage, cin = make_stage(i, cin)
            layers.append(stage)
        self.blocks = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))
        self.out_channels = cin

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map, before pooling: ``[N, out_channels, H/4, W/4]`` for three stages."""
        check_input(self, x, self.in_channels)
        check_batch_one_training(self, x)
        return self.blocks(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class InceptionNet(_StagedNet):
    """A small GoogLeNet for ~40×40 inputs: stem → 3 Inception blocks with max-pool downsampling → GAP → linear.

    Shape flow (40×40 input, default config)::

        x [N, Cin, 40, 40] → stem 3×3 conv-BN-ReLU → [N, 32, 40, 40]
          → inception 1 → [N, 64, 40, 40]  → max-pool 3×3 s2 → [N, 64, 20, 20]
          → inception 2 → [N, 128, 20, 20] → max-pool 3×3 s2 → [N, 128, 10, 10]
          → inception 3 → [N, 160, 10, 10] → global average pool → linear → [N, classes]

    ``attention`` is applied on the concatenated output of every Inception block: ``"se"`` gives SE-Inception.
    Receptive field along the 5×5 path: 37 px.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, attention: str = "none",
                 attention_kwargs: dict | None = None, stem_channels: int = 32, config=INCEPTION_NET_CONFIG):
        def make_stage(i, cin):
            block = InceptionBlock(cin, *config[i], attention=attention, attention_kwargs=attention_kwargs)
            return block, block.out_channels

        super().__init__(in_channels, num_classes, stem_channels, len(config), make_stage)


class PlainNet(_StagedNet):
    """The single-kernel baseline for :class:`InceptionNet`: the same skeleton with every Inception
    block replaced by a serial stack of conv-BN-ReLU layers (by default two 3×3).

    Same stem, same downsampling points, same head and the same receptive field (two stacked 3×3
    convs see 5×5, like the Inception block's longest path), with widths chosen so parameters and
    FLOPs are close to the default :class:`InceptionNet` — only the block design differs.

    ``[N, Cin, 40, 40] → stem → [N, 32, 40, 40] → 2×conv3×3 → [N, 18, 40, 40] → pool → 2×conv3×3 → [N, 40, 20, 20]
    → pool → 2×conv3×3 → [N, 64, 10, 10] → GAP → linear`` (90 k params, 56 MFLOPs vs 89 k, 55 MFLOPs).

    ``kernels`` sets the kernel sizes of each stage's layers (all ``widths[i]`` wide). ``kernels=(1, 3)`` with
    ``widths=ONE_SPATIAL_WIDTHS`` is the ablation of module 01: one 3×3 per stage behind a 1×1 — the serial form
    of an Inception branch — at the same parameters and FLOPs (90 k, 55 MFLOPs), spent on width instead of depth.
    Its receptive field is 23 px against the plain stack's 37 (:func:`receptive_field`); ``dilation=2`` (every
    spatial conv of the stages dilated) or ``kernels=(1, 5)`` with ``widths=ONE_SPATIAL_5X5_WIDTHS`` give the same
    one-spatial-layer design the plain stack's 37 px at the same parameters and FLOPs (within 2 %).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, widths=(18, 40, 64), stem_channels: int = 32,
                 kernels=(3, 3), dilation: int = 1):
        kernels = tuple(kernels)
        if not kernels or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0 for k in kernels):
            raise ValueError(f"PlainNet: kernels must be a non-empty sequence of positive odd ints, got {kernels!r}")
        for i, w in enumerate(widths):
            _positive("PlainNet", **{f"widths[{i}]": w})
        _positive("PlainNet", dilation=dilation)
        self.kernels, self.dilation = kernels, dilation

        def make_stage(i, cin):
            layers, c = [], cin
            for k in kernels:
                layers.append(ConvBNReLU(c, widths[i], k, dilation=dilation if k > 1 else 1))
                c = widths[i]
            stage = nn.Sequential(*layers)
            _init_convs(stage)
            return stage, widths[i]

        super().__init__(in_channels, num_classes, stem_channels, len(widths), make_stage)


# Widths that give PlainNet(kernels=(1, 3)) the default PlainNet's parameters and FLOPs (90.3 k vs 90.4 k params,
# 54.8 M vs 55.5 M FLOPs on 40×40): the one-spatial-layer ablation of module 01.
ONE_SPATIAL_WIDTHS = (26, 52, 76)
# Widths that give PlainNet(kernels=(1, 5)) the same (91.0 k params, 55.3 M FLOPs on 40×40; widths in the ratio of
# ONE_SPATIAL_WIDTHS): one 5×5 per stage, the plain stack's 37-px receptive field.
ONE_SPATIAL_5X5_WIDTHS = (16, 32, 47)


def _receptive(module: nn.Module, rf: int, jump: int) -> tuple[int, int]:
    if isinstance(module, (nn.Conv2d, nn.MaxPool2d)):
        k, s, d = (v if isinstance(v, int) else v[0] for v in (module.kernel_size, module.stride, module.dilation))
        return rf + (k - 1) * d * jump, jump * s
    if isinstance(module, (InceptionBlock, NaiveInceptionBlock)):  # branches side by side: the widest one counts
        ends = [_receptive(b, rf, jump) for b in (module.branch1, module.branch2, module.branch3, module.branch4)]
        return max(r for r, _ in ends), ends[0][1]
    if isinstance(module, _StagedNet):
        module = nn.Sequential(module.stem, module.blocks)
    if isinstance(module, (nn.Sequential, ConvBNReLU)):
        for child in module.children():
            rf, jump = _receptive(child, rf, jump)
    return rf, jump  # BN, ReLU, attention blocks: no spatial window of their own (attention is left out)


def receptive_field(net: nn.Module) -> int:
    """The theoretical receptive field (px) of one output position of ``net.features`` (an :class:`InceptionNet`,
    :class:`PlainNet`, or one of their blocks): ``r ← r + (k − 1)·dilation·jump``, ``jump ← jump·stride`` over
    the convolutions and max-pools in order, the widest branch of an Inception block. Attention blocks are left out.

    Default nets on 40×40: PlainNet 37 px, InceptionNet 37 px (its 5×5 path), ``PlainNet(kernels=(1, 3))`` 23 px."""
    return _receptive(net, 1, 1)[0]
