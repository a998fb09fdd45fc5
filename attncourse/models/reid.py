"""Video re-identification models: the course backbone on every frame, then a clip head (TAP, temporal
attention or STA), global pooling and an embedding layer.

>>> from attncourse.models.reid import ReIDNet
>>> net = ReIDNet(in_channels=1, num_classes=500, head="sta")

Shape flow (defaults ``widths=(16, 32, 64)``, 32×16 frames, ``T`` frames per tracklet)::

    x [N, T, C, 32, 16] → frames [N·T, C, 32, 16]
      → AttnResNet stem + stages (no attention inside) → [N·T, 64, 8, 4] → [N, T, 64, 8, 4]
      → clip head: TAP / temporal attention → [N, 64, 8, 4];  STA → [N, 128, 8, 4]
      → global average pool → [N, C_out] → linear → embedding [N, D]
      training: (identity logits [N, num_classes] = linear(BN(embedding)), embedding);  eval: embedding

The identity classifier reads the batch-normalised embedding and the triplet loss the embedding itself (the
"BNNeck" of Luo et al., "Bag of Tricks and A Strong Baseline for Deep Person Re-identification", arXiv:1903.07071),
so the two losses do not pull one vector two ways.

The frame network is :class:`attncourse.models.AttnResNet`'s stem and stages, so every arm sees frames
through the same backbone; only the clip head differs. The output convention is the one
:mod:`attncourse.objectives.metric` trains: ``(logits, embedding)`` in training, ``embedding`` in eval.
"""
from __future__ import annotations

import torch
from torch import nn

from ..blocks._common import check_batch_one_training
from ..blocks.temporal import check_tracklets, create_temporal_head
from .resnet import AttnResNet

__all__ = ["ReIDNet"]


class ReIDNet(nn.Module):
    """Frame backbone (AttnResNet stem + stages) → clip head → GAP → embedding (→ identity classifier in training).

    Args:
        in_channels: ``C`` of each frame (not the number of frames).
        num_classes: training identities (the classifier's outputs; unused in eval).
        head: ``"tap"``, ``"temporal_attention"`` or ``"sta"`` (:mod:`attncourse.blocks.temporal`).
        head_kwargs: extra keyword arguments for the head (e.g. ``{"regions": 4}`` for STA).
        widths, depths: of the backbone's stages (see :class:`~attncourse.models.AttnResNet`).
        embedding: ``D``, the size of the embedding.
    """

    arm_spec_name = "attncourse.reid_models.ReIDNet"  # the name in arm specs and job ids: NetArm

    def __init__(self, in_channels: int = 1, num_classes: int = 10, head: str = "tap", head_kwargs: dict | None = None,
                 widths=(16, 32, 64), depths=(1, 1, 1), embedding: int = 128):
        super().__init__()
        backbone = AttnResNet(in_channels, 1, widths=widths, depths=depths, attention="none")
        self.in_channels = in_channels
        self.stem, self.stages = backbone.stem, backbone.stages
        self.head_name = head
        self.temporal = create_temporal_head(head, widths[-1], **dict(head_kwargs or {}))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.embedding = nn.Linear(self.temporal.out_channels, embedding)
        self.neck = nn.BatchNorm1d(embedding)  # "BNNeck": the classifier reads the normalised embedding
        self.classifier = nn.Linear(embedding, num_classes, bias=False)

    def _check(self, x) -> None:
        check_tracklets(self, x, self.in_channels)
        check_batch_one_training(self, x, per_sample="BNNeck")  # it normalises the embeddings over the batch's clips

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, T, C, H, W] → [N, T, C', H', W']``: every frame through the backbone."""
        self._check(x)
        n, t = x.shape[:2]
        frames = x.flatten(0, 1)
        w = self.stem[0][0].weight
        if w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous():
            frames = frames.contiguous(memory_format=torch.channels_last)  # the model was put in channels_last
        f = self.stages(self.stem(frames))
        return f.reshape(n, t, *f.shape[1:])

    def clip_features(self, x: torch.Tensor) -> torch.Tensor:
        """The clip head's map ``[N, C_out, H', W']``."""
        return self.temporal(self.frame_features(x))

    def forward(self, x: torch.Tensor):
        emb = self.embedding(self.pool(self.clip_features(x)).flatten(1))
        return (self.classifier(self.neck(emb)), emb) if self.training else emb
