"""The small networks of module 01 for 40×40 digits: :class:`InceptionNet` (GoogLeNet in miniature, SE-Inception
with ``attention="se"``) and its single-kernel baseline :class:`PlainNet`, on one shared skeleton.

Papers: Szegedy et al., "Going Deeper with Convolutions" (GoogLeNet), arXiv:1409.4842; Hu et al.,
"Squeeze-and-Excitation Networks", arXiv:1709.01507. The Inception block itself is
:class:`attncourse.blocks.inception.InceptionBlock`.

>>> from attncourse.models import InceptionNet
>>> net = InceptionNet(in_channels=1, num_classes=10, attention="se")   # SE-Inception
"""
from __future__ import annotations

import torch
from torch import nn

from ..blocks._common import check_batch_one_training, check_input
from ..blocks.inception import ConvBNReLU, InceptionBlock, NaiveInceptionBlock, _init_convs, _positive

__all__ = ["InceptionNet", "PlainNet", "ONE_SPATIAL_WIDTHS", "ONE_SPATIAL_5X5_WIDTHS", "INCEPTION_NET_CONFIG",
           "receptive_field"]


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

    arm_spec_name = "attncourse.blocks.inception.InceptionNet"  # the name in arm specs and job ids: NetArm

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
    """

    arm_spec_name = "attncourse.blocks.inception.PlainNet"  # the name in arm specs and job ids: NetArm

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
