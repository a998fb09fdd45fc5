"""Task kind ``"segmentation"``: one label per pixel; per-pixel cross-entropy, mIoU.

* **loss** — cross-entropy over every pixel whose label is not the task's ignore index (255). A model may
  output a coarser map than the labels (an FCN at output stride 4 or 8): its logits are upsampled
  bilinearly to the label size first, as segmentation networks do at the end.
* **augmentation** — the same random translation for the image and its label map (labels are shifted
  with nearest-neighbour sampling; what moves in from outside is background, as the image's zero padding).
* **training hits** — pixel accuracy over the non-ignored pixels.
* **evaluation** — one confusion matrix accumulated batch by batch (never the split's dense outputs), then
  ``miou`` (the primary metric), ``pixel_accuracy`` and per-class ``iou`` (:mod:`attncourse.metrics.segmentation`).
  Tasks with size maps (``size_test``: 1 = small digit, 2 = large digit) also get, per size:

  * ``scene_miou_small`` / ``scene_miou_large`` — a real IoU per size: the mean IoU over the digit classes on the
    whole scene with the *other* size's digit pixels left out, so false positives on the background count (painting
    the whole image with the digit's class scores its digit area over the scene's, not 1);
  * ``digit_pixel_miou_small`` / ``digit_pixel_miou_large`` — the mean IoU over the digit classes counted on that
    size's digit pixels only: it sees confusions between digit classes but no false positive on the background
    (painting the whole image with the digit's class scores 1.0). Runs recorded before the rename stored it as
    ``miou_small`` / ``miou_large``;
  * ``accuracy_small`` / ``accuracy_large`` — the fraction of that size's digit pixels labelled correctly.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..metrics.effect import iou_items
from ..metrics.segmentation import IGNORE_INDEX, confusion_matrix, iou_per_class, segmentation_scores
from . import Objective, iter_outputs, register_objective, translate_batch

__all__ = ["Segmentation", "upsample_logits", "SIZE_NAMES"]

SIZE_NAMES = {1: "small", 2: "large"}


def upsample_logits(out: torch.Tensor, size) -> torch.Tensor:
    """``out [N, K, h, w]`` as float32 at ``size`` (bilinear, ``align_corners=False``); unchanged size: just float."""
    out = out.float()
    if tuple(out.shape[-2:]) != tuple(size):
        out = F.interpolate(out, size=tuple(size), mode="bilinear", align_corners=False)
    return out


def _digit_miou(cm: torch.Tensor) -> float:
    """Mean IoU over the digit classes (1..K-1) defined in ``cm`` (background left out)."""
    iou = iou_per_class(cm)[1:]
    iou = iou[~iou.isnan()]
    return float(iou.mean()) if len(iou) else float("nan")


class Segmentation(Objective):
    """Per-pixel cross-entropy with an ignore index; test metrics mIoU, pixel accuracy, per-class IoU."""

    kind = "segmentation"
    metric = "miou"

    def __init__(self, ignore_index: int = IGNORE_INDEX):
        self.ignore_index = ignore_index

    def augment(self, x, y, max_shift, generator):
        """One random shift per sample, applied to the image ``[N, C, H, W]`` and its labels ``[N, H, W]``."""
        if max_shift <= 0:
            return x, y
        both = translate_batch(torch.cat([x, y[:, None].to(x.dtype)], dim=1), max_shift, generator)
        return both[:, :-1], both[:, -1].round().to(y.dtype)

    def loss(self, out, y):
        logits = upsample_logits(out, y.shape[-2:])
        target = y.long()
        if not (target != self.ignore_index).any():  # every pixel ignored: nothing to learn, keep the graph
            return logits.sum() * 0.0
        return F.cross_entropy(logits, target, ignore_index=self.ignore_index)

    def train_hits(self, out, y):
        with torch.no_grad():
            pred = upsample_logits(out.detach(), y.shape[-2:]).argmax(1)
            valid = y.long() != self.ignore_index
            return ((pred == y.long()) & valid).sum(), int(valid.sum())

    def evaluate(self, model, task, *, batch_size=512, amp=None, channels_last=None):
        k = task.num_classes
        ignore = getattr(task, "ignore_index", self.ignore_index)
        sizes = getattr(task, "size_test", None)
        cm = torch.zeros(k, k, dtype=torch.int64)
        by_size = {b: torch.zeros(k, k, dtype=torch.int64) for b in SIZE_NAMES} if sizes is not None else {}
        scene_by_size = {b: torch.zeros(k, k, dtype=torch.int64) for b in by_size}
        loss_sum, counted = 0.0, 0
        for where, out in iter_outputs(model, task.x_test, batch_size, amp=amp, channels_last=channels_last):
            y = task.y_test[where].to(out.device).long()
            logits = upsample_logits(out, y.shape[-2:])
            valid = y != ignore
            if valid.any():
                loss_sum += F.cross_entropy(logits, y, ignore_index=ignore, reduction="sum").item()
                counted += int(valid.sum())
            pred = logits.argmax(1)
            cm += confusion_matrix(pred, y, k, ignore).cpu()
            for b in by_size:
                size_map = sizes[where].to(out.device)
                mask = size_map == b
                by_size[b] += confusion_matrix(pred[mask], y[mask], k, ignore).cpu()
                scene = ~((size_map != b) & (size_map != 0))  # the scene without the other sizes' digit pixels
                scene_by_size[b] += confusion_matrix(pred[scene], y[scene], k, ignore).cpu()
        metrics = {"loss": loss_sum / counted if counted else float("nan"), **segmentation_scores(cm)}
        for b, name in SIZE_NAMES.items():
            if b in by_size:
                c = by_size[b]
                total = int(c.sum())
                metrics[f"scene_miou_{name}"] = _digit_miou(scene_by_size[b])
                metrics[f"digit_pixel_miou_{name}"] = _digit_miou(c)
                metrics[f"accuracy_{name}"] = float(c.diagonal().sum()) / total if total else math.nan
        return metrics

    @torch.no_grad()
    def item_outcomes(self, model, task, *, batch_size=512, amp=None, channels_last=None):
        """Per test image and class, the intersection and union pixel counts (the mIoU is
        ``mean_k Σ_i I[i, k] / Σ_i U[i, k]``), so an interval can resample the test images."""
        k = task.num_classes
        ignore = getattr(task, "ignore_index", self.ignore_index)
        inter, union = [], []
        for where, out in iter_outputs(model, task.x_test, batch_size, amp=amp, channels_last=channels_last):
            y = task.y_test[where].to(out.device).long()
            pred = upsample_logits(out, y.shape[-2:]).argmax(1)
            valid = (y != ignore).reshape(len(y), -1)
            t = torch.where(valid, y.reshape(len(y), -1), torch.zeros_like(valid, dtype=torch.long))
            p = pred.reshape(len(y), -1)
            onehot_t = F.one_hot(t, k).bool() & valid[..., None]
            onehot_p = F.one_hot(p, k).bool() & valid[..., None]
            i = (onehot_t & onehot_p).sum(1)
            inter.append(i.cpu())
            union.append((onehot_t.sum(1) + onehot_p.sum(1) - i).cpu())
        return iou_items(torch.cat(inter).numpy(), torch.cat(union).numpy())


register_objective(Segmentation())
