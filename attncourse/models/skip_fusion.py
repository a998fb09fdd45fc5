"""A segmentation network with one skip connection, whose fusion is chosen by name (module 09, AFF).

:class:`SkipFusionNet` is module 06's dilated FCN (output stride 4) and its plain head, plus one skip from the
stride-2 features, so its logits come out at stride 2. The deep path carries context (the large digits of
``digit_scenes`` outgrow the plain FCN's 35-px receptive field); the skip carries detail (the small digits are
9–14 px, a few cells at stride 4). The arms differ only in how the two are fused (``fusion=``):

==============  =============================================================================================
``"add"``       ``deep + skip``: the same 1 : 1 mix at every pixel and channel (the usual FPN / U-Net sum)
``"concat"``    ``conv1×1([deep, skip])``, linear, no bias: a learned mix, fixed after training — the same for
                every image and pixel (it can be the sum exactly: weights ``[I, I]``); 512 parameters
``"aff"``       :class:`~attncourse.blocks.fusion.AFF`: ``2·deep·w + 2·skip·(1 − w)``, ``w = M(deep + skip)``
                chosen per pixel and channel from the inputs (MS-CAM, r = 4); 376 parameters. At ``w = 0.5`` it is
                the sum. Its global branch (GAP) also sees the whole image — part of the mechanism
``"iaff"``      :class:`~attncourse.blocks.fusion.iAFF`: two rounds of it; 752 parameters
==============  =============================================================================================

Shape flow for a 48×48 scene (``widths=(16, 32, 64)``, ``inner = 16``)::

    x            [B, 1, 48, 48]
    shallow      3×3 s2 → [B, 16, 24, 24];  3×3 → [B, 32, 24, 24]          (the skip's source, stride 2)
    deep         3×3 s2 → [B, 64, 12, 12];  3×3 d2 → [B, 64, 12, 12]        (output stride 4)
    head         3×3 → [B, 16, 12, 12] → 1×1 → [B, 16, 12, 12]             (module 06's plain branch)
    up           bilinear ×2 → [B, 16, 24, 24]
    skip         1×1 conv-BN-ReLU → [B, 16, 24, 24]
    fuse         (up, skip) → [B, 16, 24, 24]
    classifier   dropout, 1×1 → [B, K, 24, 24]                             (the objective upsamples to 48×48)

Every arm has the same backbone, head, skip projection and classifier, initialised the same way
(:func:`~attncourse.models.resnet.init_backbone`: Kaiming convs, then AFF's own Xavier init for its block).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..blocks._common import check_batch_one_training, check_input
from ..blocks.fusion import AFF, iAFF
from .segmentation import Branch, DilatedFCN, conv_bn_relu, init_segmentation_net

__all__ = ["SkipFusionNet", "FUSIONS", "ConcatFusion", "AddFusion"]

FUSIONS = ("add", "concat", "aff", "iaff")


class AddFusion(nn.Module):
    """``deep + skip`` (no parameters)."""

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return deep + skip


class ConcatFusion(nn.Module):
    """``conv1×1([deep, skip])``: ``[B, C, H, W]`` twice → concat ``[B, 2C, H, W]`` → ``[B, C, H, W]`` (linear, no
    bias). With weight ``[I, I]`` it is :class:`AddFusion`."""

    def __init__(self, channels: int):
        super().__init__()
        self.mix = nn.Conv2d(2 * channels, channels, 1, bias=False)

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.mix(torch.cat([deep, skip], dim=1))


class SkipFusionNet(nn.Module):
    """Dilated FCN + plain head + one stride-2 skip, fused by ``fusion`` (see the module docstring).

    Args:
        in_channels, num_classes: input channels; classes including the background.
        fusion: one of :data:`FUSIONS`.
        widths: the backbone's widths; the head and the fusion work at ``widths[-1] // 4`` channels.
        dropout: before the classifier.

    ``forward``: ``[B, in_channels, H, W]`` → logits ``[B, num_classes, ⌈H/2⌉, ⌈W/2⌉]``.
    """

    arm_spec_name = "attncourse.models.SkipFusionNet"  # the name in arm specs and job ids: NetArm

    def __init__(self, in_channels: int = 1, num_classes: int = 11, fusion: str = "add", widths=(16, 32, 64),
                 dropout: float = 0.1):
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"SkipFusionNet: fusion must be one of {FUSIONS}, got {fusion!r}")
        self.fusion_name = fusion
        self.backbone = DilatedFCN(in_channels, widths)
        inner = max(1, widths[-1] // 4)
        self.head = Branch(widths[-1], inner, None)
        self.skip = conv_bn_relu(widths[1], inner, k=1)
        self.fuse = {"add": lambda: AddFusion(), "concat": lambda: ConcatFusion(inner),
                     "aff": lambda: AFF(inner), "iaff": lambda: iAFF(inner)}[fusion]()
        self.classifier = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(inner, num_classes, 1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Conv biases zero, then the course backbones' init (Kaiming convs; AFF's own init after it)."""
        init_segmentation_net(self)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two inputs of the fusion, each ``[B, inner, ⌈H/2⌉, ⌈W/2⌉]``: the upsampled deep path and the skip."""
        shallow, out = self.backbone.features(x)
        deep = self.head(out)
        up = F.interpolate(deep, size=shallow.shape[-2:], mode="bilinear", align_corners=False)
        return up, self.skip(shallow)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.backbone.in_channels)
        check_batch_one_training(self, x)
        return self.classifier(self.fuse(*self.features(x)))
