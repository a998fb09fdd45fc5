"""Segmentation metrics from one confusion matrix: per-class IoU, mIoU, pixel accuracy.

Everything is computed from the ``K × K`` confusion matrix ``cm[t, p]`` = number of pixels whose truth is
``t`` and prediction ``p`` (pixels labelled ``ignore_index`` are left out). Confusion matrices of batches
add up, so a whole test split is evaluated batch by batch without ever holding its dense outputs::

    IoU_c  = cm[c, c] / (Σ_p cm[c, p] + Σ_t cm[t, c] − cm[c, c])     (TP / (TP + FN + FP))
    mIoU   = mean of IoU_c over the classes that occur in the truth or the predictions
    acc    = Σ_c cm[c, c] / Σ cm                                        (pixel accuracy)

A class that is neither in the truth nor predicted has an undefined IoU (0/0): it is ``nan`` in
:func:`iou_per_class` and left out of the mean — the usual convention (e.g. the Cityscapes and
PASCAL VOC evaluation scripts average over the classes of the whole evaluated set).
"""
from __future__ import annotations

import torch

__all__ = ["IGNORE_INDEX", "confusion_matrix", "iou_per_class", "mean_iou", "pixel_accuracy", "segmentation_scores"]

IGNORE_INDEX = 255


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int | None = IGNORE_INDEX) -> torch.Tensor:
    """The ``[K, K]`` int64 confusion matrix ``cm[truth, prediction]`` of integer label maps of one shape.

    ``pred`` and ``target`` hold class indices (any integer dtype, any shape, the same shape). Target
    pixels equal to ``ignore_index`` are not counted; any other label outside ``[0, K)`` — in the truth or
    the prediction — is a ``ValueError`` (a silent drop would inflate the scores).
    """
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"confusion_matrix: num_classes must be a positive int, got {num_classes!r}")
    if pred.shape != target.shape:
        raise ValueError(f"confusion_matrix: prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    if pred.is_floating_point() or target.is_floating_point():
        raise ValueError(f"confusion_matrix: expected integer label maps, got {pred.dtype} and {target.dtype} "
                         f"(take argmax over the class axis of logits first)")
    t = target.reshape(-1).long()
    p = pred.reshape(-1).long().to(t.device)
    if ignore_index is not None:
        keep = t != ignore_index
        t, p = t[keep], p[keep]
    for what, v in (("target", t), ("prediction", p)):
        if v.numel() and (int(v.min()) < 0 or int(v.max()) >= num_classes):
            raise ValueError(f"confusion_matrix: {what} labels must lie in [0, {num_classes}) (or be the ignore index "
                             f"{ignore_index}), found values in [{int(v.min())}, {int(v.max())}]")
    return torch.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _check_cm(cm: torch.Tensor, who: str) -> torch.Tensor:
    if cm.dim() != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"{who}: expected a square [K, K] confusion matrix, got shape {tuple(cm.shape)}")
    return cm.double()


def iou_per_class(cm: torch.Tensor) -> torch.Tensor:
    """IoU of every class, float64 ``[K]``; ``nan`` for a class absent from both truth and prediction."""
    cm = _check_cm(cm, "iou_per_class")
    tp = cm.diagonal()
    union = cm.sum(0) + cm.sum(1) - tp
    return torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))


def mean_iou(cm: torch.Tensor) -> float:
    """Mean IoU over the classes present in the truth or the predictions (``nan`` for an empty matrix)."""
    iou = iou_per_class(cm)
    present = ~iou.isnan()
    return float(iou[present].mean()) if present.any() else float("nan")


def pixel_accuracy(cm: torch.Tensor) -> float:
    """Fraction of counted pixels predicted correctly (``nan`` for an empty matrix)."""
    cm = _check_cm(cm, "pixel_accuracy")
    total = cm.sum()
    return float(cm.diagonal().sum() / total) if total > 0 else float("nan")


def segmentation_scores(cm: torch.Tensor) -> dict:
    """``{"miou", "pixel_accuracy", "iou"}`` (``iou``: a list with ``None`` for undefined classes) from ``cm``."""
    iou = iou_per_class(cm)
    return {"miou": mean_iou(cm), "pixel_accuracy": pixel_accuracy(cm),
            "iou": [None if v != v else float(v) for v in iou.tolist()]}
