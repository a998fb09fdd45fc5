"""Evaluation metrics beyond accuracy, each written once and tested against a brute-force reference.

* :mod:`attncourse.metrics.segmentation` — confusion matrix, per-class IoU, mIoU, pixel accuracy;
* :mod:`attncourse.metrics.reid` — CMC rank-k and mAP for re-identification;
* :mod:`attncourse.metrics.attention` — statistics of attention maps over a test split (share on chosen keys
  against chance, means by region or group, the median example), which the notebooks print beside their pictures.

Import the submodule you need; the task kinds in :mod:`attncourse.objectives` use them for their test metrics.
"""
