"""The course's networks, one file per backbone family; every public name is importable from here.

==================  ======================================================================================
``resnet.py``       :class:`AttnResNet`, the classification backbone with a pluggable ``attention=`` block,
                    its :class:`BasicBlock`, :func:`init_backbone` and :func:`receptive_field`
``inception.py``    :class:`InceptionNet` (SE-Inception with ``attention="se"``) and :class:`PlainNet` (module 01)
``branch.py``       :class:`BranchResNet` (a branch conv in place of a 3×3) and :class:`DeepStack` (Highway)
``segmentation.py`` :class:`SegNet`: a dilated FCN and the heads DANet compares (module 06)
``reid.py``         :class:`ReIDNet`: frame backbone → clip head → embedding (module 08)
``skip_fusion.py``  :class:`SkipFusionNet`: the dilated FCN with one skip, fused by add / concat / AFF / iAFF (09)
==================  ======================================================================================

A new task kind adds one file here (its network taking ``(in_channels, num_classes, **kwargs)``) and
re-exports its names below. ``receptive_field`` here is :class:`AttnResNet`'s; the segmentation network's is
:func:`attncourse.models.segmentation.receptive_field`.
"""
from .resnet import AttnResNet, BasicBlock, conv_bn, init_backbone, receptive_field, top_level_blocks
from .inception import INCEPTION_NET_CONFIG, ONE_SPATIAL_5X5_WIDTHS, ONE_SPATIAL_WIDTHS, InceptionNet, PlainNet
from .branch import (BRANCH_CONVS, BranchBasicBlock, BranchResNet, DeepStack, branch_weights, size_trend,
                     weight_by_size)
from .segmentation import CBAM_REDUCTION, HEADS, Branch, DilatedFCN, DualHead, SegNet, conv_bn_relu
from .reid import ReIDNet
from .skip_fusion import FUSIONS, SkipFusionNet

__all__ = ["AttnResNet", "BasicBlock", "conv_bn", "init_backbone", "receptive_field", "top_level_blocks",
           "INCEPTION_NET_CONFIG", "ONE_SPATIAL_WIDTHS", "ONE_SPATIAL_5X5_WIDTHS", "InceptionNet", "PlainNet",
           "BRANCH_CONVS", "BranchBasicBlock", "BranchResNet", "DeepStack", "branch_weights", "size_trend",
           "weight_by_size",
           "CBAM_REDUCTION", "HEADS", "Branch", "DilatedFCN", "DualHead", "SegNet", "conv_bn_relu",
           "ReIDNet", "FUSIONS", "SkipFusionNet"]
