"""Small ResNet-style backbones for 24–64 px inputs, with a pluggable ``attention=`` block.

>>> from attncourse.models import AttnResNet
>>> net = AttnResNet(in_channels=1, num_classes=10, attention="none")   # the baseline

Shape flow (defaults ``widths=(16, 32, 64)``, one block per stage)::

    x [N, Cin, H, W] → stem conv3×3 → [N, 16, H, W]
      → stage 1 (stride 1) → [N, 16, H, W]
      → stage 2 (stride 2) → [N, 32, H/2, W/2]
      → stage 3 (stride 2) → [N, 64, H/4, W/4]
      → global average pool → [N, 64] → linear → [N, classes]

The attention block is placed as its paper places it (see :mod:`attncourse.blocks`): ``"residual"``
blocks go on the residual branch of every basic block, before the add; ``"stage"`` blocks go after
stages (by default every stage but the first, where maps are largest).
Receptive field of the default baseline: 25 px.
"""
from __future__ import annotations

from torch import nn

from ..blocks import create_block, get_block_spec
from ..blocks._common import check_batch_one_training, check_input

__all__ = ["BasicBlock", "AttnResNet", "receptive_field", "init_backbone", "top_level_blocks"]


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """ResNet basic block; ``attention`` (a module) rescales the residual branch before the add.

    ``x → conv-BN-ReLU → conv-BN → attention → (+ shortcut(x)) → ReLU``
    """

    def __init__(self, cin: int, cout: int, stride: int = 1, attention: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv_bn(cin, cout, 3, stride)
        self.conv2 = conv_bn(cout, cout, 3, 1)
        self.attention = attention if attention is not None else nn.Identity()
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else conv_bn(cin, cout, 1, stride)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.act(self.conv1(x))
        out = self.attention(self.conv2(out))
        return self.act(out + self.shortcut(x))


def top_level_blocks(model: nn.Module) -> list[nn.Module]:
    """The attention blocks of ``model`` (modules of :mod:`attncourse.blocks`) that are not inside another one, in
    module order. A block owns its whole subtree: its children (e.g. SK's branch convs) are its business."""
    found: list[nn.Module] = []

    def visit(module: nn.Module) -> None:
        for child in module.children():
            if child.__module__.startswith("attncourse.blocks") and hasattr(child, "reset_parameters"):
                found.append(child)
            else:
                visit(child)

    visit(model)
    return found


def init_backbone(model: nn.Module) -> None:
    """The course backbones' initialisation: Kaiming-normal (fan-out, ReLU) for every conv, then every *top-level*
    attention block (:func:`top_level_blocks`) re-applies its own initialisation to its whole subtree, once.

    So a block inside a backbone starts exactly as the same block built on its own (``tests/test_init_contract.py``):
    its children are never re-initialised after it. Block convs are drawn by the Kaiming pass too and then
    overwritten by their block; that keeps the random stream, so blocks whose init did not change draw the same
    values as before."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    for block in top_level_blocks(model):
        block.reset_parameters()


class AttnResNet(nn.Module):
    """A small ResNet with an attention block chosen by name (``"none"`` is the baseline).

    Args:
        in_channels, num_classes: input channels and number of classes.
        widths, depths: channels and number of basic blocks per stage (stage 1 has stride 1, later ones 2).
        attention: a registered block name (``attncourse.blocks.list_blocks()``).
        attention_kwargs: extra keyword arguments for the block (e.g. ``{"reduction": 4}``).
        attention_stages: 1-based stages that get the block; default the block's registered ``stages``, else
            every stage for ``"residual"`` blocks and every stage but the first for ``"stage"`` blocks.
        head_hidden: 0 (default) for the usual linear classifier on the pooled features; ``k > 0`` for an MLP
            head (pooled features → ``k`` units → ReLU → classes), a non-linear read-out of the pooled vector.
    """

    arm_spec_name = "attncourse.models.AttnResNet"  # the name in arm specs and job ids: NetArm

    def __init__(self, in_channels: int = 1, num_classes: int = 10, widths=(16, 32, 64), depths=(1, 1, 1),
                 attention: str = "none", attention_kwargs: dict | None = None, attention_stages=None,
                 head_hidden: int = 0):
        super().__init__()
        if len(widths) != len(depths) or not widths:
            raise ValueError(f"AttnResNet: widths {widths} and depths {depths} must be non-empty and the same length")
        spec = get_block_spec(attention)
        if spec.inputs != 1:
            raise ValueError(f"AttnResNet: {spec.name!r} is a two-input fusion block (forward(x, y)); choose a one-input "
                             f"attention block (attncourse.blocks.list_blocks())")
        kwargs = dict(attention_kwargs or {})
        n = len(widths)
        if attention_stages is None and spec.stages is not None:
            attention_stages = [st for st in spec.stages if st <= n]
        if attention_stages is None:
            attention_stages = range(1, n + 1) if spec.placement == "residual" else range(2, n + 1)
        attention_stages = set(attention_stages)
        if bad := [s for s in attention_stages if not 1 <= s <= n]:
            raise ValueError(f"AttnResNet: attention_stages {sorted(bad)} out of range 1..{n}")
        self.attention_name = spec.name

        self.stem = nn.Sequential(conv_bn(in_channels, widths[0], 3, 1), nn.ReLU(inplace=True))
        stages, cin = [], widths[0]
        for i, (w, d) in enumerate(zip(widths, depths), start=1):
            blocks = []
            for j in range(d):
                att = create_block(attention, w, **kwargs) if spec.placement == "residual" and i in attention_stages else None
                blocks.append(BasicBlock(cin, w, stride=(1 if i == 1 or j > 0 else 2), attention=att))
                cin = w
            if spec.placement == "stage" and i in attention_stages and spec.name != "none":
                blocks.append(create_block(attention, w, **kwargs))
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        if not isinstance(head_hidden, int) or isinstance(head_hidden, bool) or head_hidden < 0:
            raise ValueError(f"AttnResNet: head_hidden must be a non-negative int, got {head_hidden!r}")
        readout = ([nn.Linear(cin, head_hidden), nn.ReLU(inplace=True), nn.Linear(head_hidden, num_classes)]
                   if head_hidden else [nn.Linear(cin, num_classes)])
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), *readout)
        self.reset_parameters()

    def reset_parameters(self):
        init_backbone(self)

    def _check(self, x) -> None:
        """``ValueError`` naming the network and the shape for input it cannot take (checked before any layer runs)."""
        check_input(self, x, self.stem[0][0].in_channels)
        check_batch_one_training(self, x)

    def features(self, x):
        """Feature map before pooling: ``[N, widths[-1], H/4, W/4]`` for three stages."""
        self._check(x)
        return self.stages(self.stem(x))

    def forward(self, x):
        return self.head(self.features(x))


def receptive_field(net: AttnResNet) -> int:
    """Receptive field in input pixels of the convolutional path of ``net`` (attention blocks excluded)."""
    inside_blocks = {id(sub) for m in net.modules() if m.__module__.startswith("attncourse.blocks") for sub in m.modules()}
    rf, jump = 1, 1
    for m in net.modules():  # the main path's convs come in forward order; shortcuts are 1×1
        if isinstance(m, nn.Conv2d) and id(m) not in inside_blocks and m.kernel_size[0] > 1:
            rf += (m.kernel_size[0] - 1) * m.dilation[0] * jump
            jump *= m.stride[0]
    return rf
