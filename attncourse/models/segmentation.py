"""Segmentation networks of module 06: a small dilated FCN and the heads DANet compares.

Every arm shares :class:`DilatedFCN`, a backbone at **output stride 4** whose last convolution is
dilated (rate 2) instead of strided — the "dilated FCN" of DANet (arXiv:1809.02983, Sec. 3.1) in
miniature — and differs only in the head (:class:`SegNet`, ``head=``):

==================  ===========================================================================
``"fcn"``           one branch, no attention: 3×3 conv-BN-ReLU to C/4 → 1×1 conv-BN-ReLU → classifier
``"pam"``           the same branch with DANet's position attention (PAM) after the 3×3 conv
``"cam"``           the same branch with DANet's channel attention (CAM)
``"danet"``         DANet: a PAM branch and a CAM branch **in parallel**, their outputs summed
``"cbam_series"``   one branch with CBAM (channel → spatial gate **in series**), for the contrast
``"fcn2"``          two plain branches in parallel, summed: DANet's head without its attention modules, the
                    control for DANet's second conv branch (parameters within 1 % of DANet's)
==================  ===========================================================================

Shape flow for a 48×48 scene (``widths=(16, 32, 64)``)::

    x           [B, 1, 48, 48]
    stem        3×3 s2 → [B, 16, 24, 24];  3×3 → [B, 32, 24, 24]
    down        3×3 s2 → [B, 64, 12, 12]
    dilated     3×3 d2 → [B, 64, 12, 12]                 output stride 4
    branch      3×3 → [B, 16, 12, 12] → attention → 1×1 → [B, 16, 12, 12]   (DANet: two, summed)
    classifier  dropout, 1×1 → [B, K, 12, 12]            (the objective upsamples to 48×48)

Receptive field (:func:`receptive_field`): 27 px for the backbone, 35 px with the head's 3×3 conv — smaller
than the large digits of ``digit_scenes`` (36–44 px). Deviation from the authors' head: the conv after
each attention module is 1×1 here (3×3 there), so that the plain FCN's receptive field stays below the
large digits; the branches' auxiliary losses of the official code are not used.
"""
from __future__ import annotations

import torch
from torch import nn

from ..blocks import create_block
from ..blocks._common import check_batch_one_training, check_input
from ..blocks.dual import CAM_FORMS, ChannelSelfAttention, PositionAttention
from .resnet import init_backbone

__all__ = ["DilatedFCN", "DualHead", "SegNet", "HEADS", "CBAM_REDUCTION", "receptive_field"]

HEADS = ("fcn", "pam", "cam", "danet", "cbam_series", "fcn2")
CBAM_REDUCTION = 4  # 16 head channels / 4 = 4 hidden units (r = 16 would leave 1), as the module 05 experiments


def conv_bn_relu(cin: int, cout: int, k: int = 3, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, dilation * (k // 2), dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def init_segmentation_net(model: nn.Module) -> None:
    """The segmentation networks' init: every conv bias zero, then :func:`~attncourse.models.resnet.init_backbone`
    (Kaiming convs; each attention block's own init after it)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.bias is not None:
            nn.init.zeros_(m.bias)
    init_backbone(model)


class DilatedFCN(nn.Module):
    """The backbone: two stride-2 convs, then a dilated conv (rate 2) instead of a third stride. ``[B, C_in, H, W]
    → [B, widths[-1], ⌈H/4⌉, ⌈W/4⌉]``."""

    def __init__(self, in_channels: int = 1, widths=(16, 32, 64)):
        super().__init__()
        w1, w2, w3 = widths
        self.in_channels, self.out_channels = in_channels, w3
        self.layers = nn.Sequential(conv_bn_relu(in_channels, w1, stride=2), conv_bn_relu(w1, w2),
                                    conv_bn_relu(w2, w3, stride=2), conv_bn_relu(w3, w3, dilation=2))

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The stride-2 features after the second conv ``[B, widths[1], ⌈H/2⌉, ⌈W/2⌉]`` and the output."""
        shallow = self.layers[1](self.layers[0](x))
        return shallow, self.layers[3](self.layers[2](shallow))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Branch(nn.Module):
    """One head branch: 3×3 conv-BN-ReLU to ``inner`` → ``attention`` → 1×1 conv-BN-ReLU."""

    def __init__(self, channels: int, inner: int, attention: nn.Module | None):
        super().__init__()
        self.reduce = conv_bn_relu(channels, inner)
        self.attention = attention if attention is not None else nn.Identity()
        self.project = conv_bn_relu(inner, inner, k=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.attention(self.reduce(x)))


class DualHead(nn.Module):
    """DANet's head: branches in parallel (each 3×3 conv to C/4 → attention → conv), outputs summed, classifier.

    ``attentions``: one module (or ``None`` for none) per branch — ``[PAM, CAM]`` is DANet.
    Shape: ``[B, C, h, w] → [B, num_classes, h, w]``.
    """

    def __init__(self, channels: int, num_classes: int, attentions, inner: int | None = None, dropout: float = 0.1):
        super().__init__()
        inner = inner or max(1, channels // 4)
        self.channels, self.inner = channels, inner
        self.branches = nn.ModuleList(Branch(channels, inner, a) for a in attentions)
        self.classifier = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(inner, num_classes, 1))

    def fused(self, x: torch.Tensor) -> torch.Tensor:
        """The sum of the branches' outputs ``[B, inner, h, w]`` (before the classifier)."""
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.fused(x))


class SegNet(nn.Module):
    """:class:`DilatedFCN` + a head chosen by name (see the module docstring). Outputs logits at 1/4 resolution.

    Args:
        in_channels, num_classes: input channels; classes including the background.
        head: one of :data:`HEADS`.
        widths: the backbone's widths; the head works at ``widths[-1] // 4`` channels.
        cam_form: CAM's attention for the ``"cam"`` and ``"danet"`` heads: ``"code"`` (default, the authors' code,
            ``softmax(max(E) − E)``) or ``"paper"`` (Eq. 3, ``softmax(E)``); see :class:`ChannelSelfAttention`.
    """

    arm_spec_name = "attncourse.segmentation_models.SegNet"  # the name in arm specs and job ids: NetArm

    def __init__(self, in_channels: int = 1, num_classes: int = 11, head: str = "danet", widths=(16, 32, 64),
                 dropout: float = 0.1, cam_form: str = "code"):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"SegNet: head must be one of {HEADS}, got {head!r}")
        if cam_form not in CAM_FORMS:
            raise ValueError(f"SegNet: cam_form must be one of {CAM_FORMS}, got {cam_form!r}")
        if cam_form != "code" and head not in ("cam", "danet"):
            raise ValueError(f"SegNet: cam_form={cam_form!r} applies to the heads with CAM ('cam', 'danet'), "
                             f"not to head={head!r}")
        self.head_name = head
        self.backbone = DilatedFCN(in_channels, widths)
        c = self.backbone.out_channels
        inner = max(1, c // 4)
        attentions = {"fcn": [None], "pam": [PositionAttention(inner)], "cam": [ChannelSelfAttention(inner, cam_form)],
                      "danet": [PositionAttention(inner), ChannelSelfAttention(inner, cam_form)],
                      "cbam_series": [create_block("cbam", inner, reduction=CBAM_REDUCTION)], "fcn2": [None, None]}[head]
        self.head = DualHead(c, num_classes, attentions, inner, dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Conv biases zero, then the course backbones' init (Kaiming convs; the blocks' own init, γ = 0, after it)."""
        init_segmentation_net(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.backbone.in_channels)
        check_batch_one_training(self, x)
        return self.head(self.backbone(x))


def receptive_field(model: SegNet) -> int:
    """The theoretical receptive field (px) of one output logit: the backbone and one branch's convs.

    ``r ← r + (k − 1)·dilation·jump``, ``jump ← jump·stride`` over the convolutions in order (attention
    modules are left out: they are what widens it).
    """
    convs = [m for m in model.backbone.modules() if isinstance(m, nn.Conv2d)]
    convs += [m for m in model.head.branches[0].modules() if isinstance(m, nn.Conv2d)
              and not any(m is c for c in model.head.branches[0].attention.modules())]
    r, jump = 1, 1
    for conv in convs:
        r += (conv.kernel_size[0] - 1) * conv.dilation[0] * jump
        jump *= conv.stride[0]
    return r
