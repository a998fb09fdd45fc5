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
from ._common import DilatedConv2d, check_input

__all__ = ["ConvBNReLU", "InceptionBlock", "NaiveInceptionBlock"]


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
        conv = DilatedConv2d if dilation > 1 else nn.Conv2d   # the CPU bf16 NaN workaround, only where it is needed
        self.conv = conv(in_channels, out_channels, kernel_size, padding=dilation * (kernel_size // 2),
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
