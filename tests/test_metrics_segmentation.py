"""Segmentation metrics against a brute-force reference: a Python loop over pixels and a per-class IoU by sets."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from attncourse.metrics.segmentation import (IGNORE_INDEX, confusion_matrix, iou_per_class, mean_iou, pixel_accuracy,
                                             segmentation_scores)


def brute_cm(pred, target, k, ignore=IGNORE_INDEX):
    cm = [[0] * k for _ in range(k)]
    for p, t in zip(pred.reshape(-1).tolist(), target.reshape(-1).tolist()):
        if t == ignore:
            continue
        cm[t][p] += 1
    return torch.tensor(cm, dtype=torch.int64)


def brute_iou(pred, target, k, ignore=IGNORE_INDEX):
    """IoU by pixel sets: |{p = c} ∩ {t = c}| / |{p = c} ∪ {t = c}| over the counted pixels."""
    keep = [i for i, t in enumerate(target.reshape(-1).tolist()) if t != ignore]
    p = [pred.reshape(-1).tolist()[i] for i in keep]
    t = [target.reshape(-1).tolist()[i] for i in keep]
    out = []
    for c in range(k):
        inter = sum(1 for a, b in zip(p, t) if a == c and b == c)
        union = sum(1 for a, b in zip(p, t) if a == c or b == c)
        out.append(inter / union if union else math.nan)
    return out


def maps(seed, shape=(3, 5, 7), k=4, ignore_frac=0.2):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, k, shape, generator=g)
    target[torch.rand(shape, generator=g) < ignore_frac] = IGNORE_INDEX
    pred = torch.randint(0, k, shape, generator=g)
    return pred, target


@pytest.mark.parametrize("seed", range(5))
def test_confusion_matrix_equals_a_pixel_loop(seed):
    pred, target = maps(seed)
    assert torch.equal(confusion_matrix(pred, target, 4), brute_cm(pred, target, 4))


def test_ignored_pixels_are_not_counted_whatever_is_predicted_there():
    pred, target = maps(0)
    ignored = target == IGNORE_INDEX
    assert ignored.any()
    other = pred.clone()
    other[ignored] = (other[ignored] + 1) % 4
    assert torch.equal(confusion_matrix(pred, target, 4), confusion_matrix(other, target, 4))
    assert int(confusion_matrix(pred, target, 4).sum()) == int((~ignored).sum())


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 6), st.floats(0.0, 0.9))
def test_iou_and_accuracy_equal_the_set_definitions(seed, k, ignore_frac):
    pred, target = maps(seed, (2, 4, 3), k, ignore_frac)
    cm = confusion_matrix(pred, target, k)
    ref = brute_iou(pred, target, k)
    got = iou_per_class(cm).tolist()
    for a, b in zip(got, ref):
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-12)
    defined = [v for v in ref if not math.isnan(v)]
    expected = sum(defined) / len(defined) if defined else math.nan
    assert (math.isnan(mean_iou(cm)) and math.isnan(expected)) or mean_iou(cm) == pytest.approx(expected, abs=1e-12)
    kept = target != IGNORE_INDEX
    if kept.any():
        assert pixel_accuracy(cm) == pytest.approx(float((pred[kept] == target[kept]).double().mean()), abs=1e-12)


def test_a_class_absent_from_truth_and_prediction_is_left_out_of_the_mean():
    target = torch.tensor([[0, 0, 1, 1]])
    pred = torch.tensor([[0, 1, 1, 1]])
    cm = confusion_matrix(pred, target, 5)  # classes 2, 3, 4 never occur
    iou = iou_per_class(cm)
    assert iou[2:].isnan().all()
    assert iou[0] == pytest.approx(1 / 2) and iou[1] == pytest.approx(2 / 3)
    assert mean_iou(cm) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert segmentation_scores(cm)["iou"][2:] == [None, None, None]


def test_a_class_only_predicted_counts_with_iou_zero():
    target = torch.tensor([0, 0, 0, 0])
    pred = torch.tensor([0, 0, 0, 2])
    iou = iou_per_class(confusion_matrix(pred, target, 3))
    assert iou[2] == 0 and iou[0] == pytest.approx(3 / 4) and iou[1].isnan()
    assert mean_iou(confusion_matrix(pred, target, 3)) == pytest.approx(3 / 8)


def test_batches_add_up_to_the_whole_split_even_when_a_batch_lacks_classes():
    pred, target = maps(7, (6, 5, 5), k=5)
    target[:3][target[:3] == 4] = 0  # class 4 absent from the first batch
    whole = confusion_matrix(pred, target, 5)
    parts = confusion_matrix(pred[:3], target[:3], 5) + confusion_matrix(pred[3:], target[3:], 5)
    assert torch.equal(whole, parts)
    # the mean of per-batch mIoUs is NOT the split's mIoU: the matrix must be accumulated first
    per_batch = (mean_iou(confusion_matrix(pred[:3], target[:3], 5)) + mean_iou(confusion_matrix(pred[3:], target[3:], 5))) / 2
    assert mean_iou(whole) != pytest.approx(per_batch, abs=1e-9)


def test_perfect_prediction_and_empty_input():
    _, target = maps(3)
    pred = target.clone()
    pred[pred == IGNORE_INDEX] = 0
    cm = confusion_matrix(pred, target, 4)
    assert mean_iou(cm) == 1.0 and pixel_accuracy(cm) == 1.0
    empty = confusion_matrix(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), 3)
    assert empty.shape == (3, 3) and empty.sum() == 0
    assert math.isnan(mean_iou(empty)) and math.isnan(pixel_accuracy(empty))


def test_bad_input_is_a_value_error():
    pred, target = maps(0)
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(pred[:1], target, 4)
    with pytest.raises(ValueError, match="integer"):
        confusion_matrix(pred.float(), target, 4)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        confusion_matrix(pred, target, 3)  # label 3 exists and is not the ignore index
    with pytest.raises(ValueError, match="num_classes"):
        confusion_matrix(pred, target, 0)
    with pytest.raises(ValueError, match="square"):
        iou_per_class(torch.zeros(2, 3))


def test_no_ignore_index_counts_every_pixel():
    pred, target = maps(1, ignore_frac=0.0)
    assert int(confusion_matrix(pred, target, 4, ignore_index=None).sum()) == pred.numel()
