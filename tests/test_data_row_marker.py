"""``row_marker_digits`` (module 09): the label is a function of the row the bar marks, and of nothing global.

Checked on the generated data itself:

* the label is the class of the digit in the marked band (``sources[:, target_band]``), and the bands' classes differ;
* the bar covers exactly the rows of the marked digit, and (``"far"``) lies more than the baseline's receptive field
  away from every digit; (``"near"``) 1 px from the marked digit;
* moving the bar to another band changes the label but not the image's global mean nor its histogram;
* ``"near"`` and ``"far"`` share digits, positions and labels; train and test use disjoint source digits;
  deterministic given the seed; bad parameters are named ValueErrors.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from attncourse.data import _digits, _resized_all, make_task, source_digits
from attncourse.data.row_marker_digits import (BAR_LEFT, BASELINE_RECEPTIVE_FIELD, render_row_marker,
                                               row_marker_digits)
from attncourse.models import AttnResNet, receptive_field

N = 60


@pytest.fixture(scope="module")
def clean():
    return row_marker_digits(N, N, noise=0.0, seed=3)


def _layout(task, i: int, split: str = "train"):
    """Re-derive one image's digits, tops and lefts from the clean image and its sources (tops/lefts by search)."""
    x = getattr(task, f"x_{split}")[i, 0].numpy().astype(np.float32) / 255
    size, band_h = task.info["digit_size"], task.info["digit_size"] + 2
    digits, tops, lefts = [], [], []
    for b, j in enumerate(getattr(task, f"sources_{split}")[i].tolist()):
        d = _resized_all(size)[j]
        best = None
        for top in range(b * band_h, b * band_h + band_h - size + 1):
            for left in range(task.info["first_digit_column"], task.info["width"] - size + 1):
                err = np.abs(np.maximum(x[top:top + size, left:left + size], 0) - d).max()
                if best is None or err < best[0]:
                    best = (err, top, left)
        digits.append(d)
        tops.append(best[1])
        lefts.append(best[2])
    return x, digits, tops, lefts


def test_the_label_is_the_class_of_the_marked_bands_digit(clean):
    labels = _digits()[1]
    for split in ("train", "test"):
        y = getattr(clean, f"y_{split}")
        sources = getattr(clean, f"sources_{split}")
        bands = clean.info[f"target_band_{split}"]
        assert len(bands) == len(y) == N
        for i in range(N):
            classes = labels[sources[i].numpy()]
            assert len(set(classes.tolist())) == clean.info["bands"]
            assert y[i].item() == classes[bands[i]]
    assert set(clean.info["target_band_train"]) == {0, 1, 2}


def test_the_bar_sits_on_exactly_the_marked_digits_rows_far_beyond_the_receptive_field(clean):
    assert receptive_field(AttnResNet()) == BASELINE_RECEPTIVE_FIELD
    bar = slice(BAR_LEFT, BAR_LEFT + clean.info["bar_width"])
    for i in range(10):
        x, digits, tops, lefts = _layout(clean, i)
        band = clean.info["target_band_train"][i]
        bar_rows = np.flatnonzero(x[:, bar].min(axis=1) == 1.0)
        assert bar_rows.tolist() == list(range(tops[band], tops[band] + clean.info["digit_size"]))
        assert x[:, bar.stop:min(lefts)].max() == 0  # empty canvas between the bar and the digits
        assert min(lefts) - bar.stop > BASELINE_RECEPTIVE_FIELD


def test_moving_the_bar_changes_the_label_but_not_the_global_mean_or_histogram(clean):
    """Whatever band the bar marks, the image holds the same pixel values: a global average cannot tell."""
    labels = _digits()[1]
    info = clean.info
    for i in range(10):
        x, digits, tops, lefts = _layout(clean, i)
        band = info["target_band_train"][i]
        rendered = render_row_marker(digits, tops, lefts, band, height=info["height"], width=info["width"])
        assert np.array_equal(np.rint(rendered * 255).astype(np.uint8), clean.x_train[i, 0].numpy())
        classes = labels[clean.sources_train[i].numpy()]
        for other in range(info["bands"]):
            moved = render_row_marker(digits, tops, lefts, other, height=info["height"], width=info["width"])
            assert np.array_equal(np.sort(moved.ravel()), np.sort(rendered.ravel()))
            assert moved.mean() == pytest.approx(rendered.mean(), abs=1e-7)
            if other != band:
                assert classes[other] != classes[band]  # ... while the label changes
                assert not np.array_equal(moved, rendered) and moved[:, BAR_LEFT].sum() == rendered[:, BAR_LEFT].sum()


def test_the_near_control_has_the_same_digits_and_labels_and_the_bar_next_to_the_marked_digit(clean):
    near = row_marker_digits(N, N, marker="near", noise=0.0, seed=3)
    for split in ("train", "test"):
        assert torch.equal(getattr(near, f"y_{split}"), getattr(clean, f"y_{split}"))
        assert torch.equal(getattr(near, f"sources_{split}"), getattr(clean, f"sources_{split}"))
        assert near.info[f"target_band_{split}"] == clean.info[f"target_band_{split}"]
    bw = clean.info["bar_width"]
    for i in range(10):
        _, digits, tops, lefts = _layout(clean, i)
        band = clean.info["target_band_train"][i]
        expected = render_row_marker(digits, tops, lefts, band, height=clean.info["height"], width=clean.info["width"],
                                     marker="near", bar_width=bw)
        assert np.array_equal(np.rint(expected * 255).astype(np.uint8), near.x_train[i, 0].numpy())
        x = near.x_train[i, 0].numpy()
        assert (x[tops[band]:tops[band] + clean.info["digit_size"], lefts[band] - 1 - bw:lefts[band] - 1] == 255).all()
        assert x[:, :min(lefts) - 1 - bw].max() == 0  # nothing at the far left


def test_splits_use_disjoint_source_digits_and_generation_is_deterministic():
    a = row_marker_digits(40, 30, seed=1)
    b = row_marker_digits(40, 30, seed=1)
    c = row_marker_digits(40, 30, seed=2)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.x_test, b.x_test)
    assert not torch.equal(a.x_train, c.x_train)
    train_ids, test_ids = set(source_digits("train")[2].tolist()), set(source_digits("test")[2].tolist())
    assert set(a.sources_train.flatten().tolist()) <= train_ids
    assert set(a.sources_test.flatten().tolist()) <= test_ids
    assert a.x_train.shape == (40, 1, 36, 56) and a.x_train.dtype == torch.uint8 and a.num_classes == 10
    assert "receptive field" in a.info["why"] and "control" in row_marker_digits(5, 5, marker="near").info["why"]


def test_make_task_builds_it_by_name_with_the_control_as_a_keyword():
    task = make_task("row_marker_digits", "smoke", marker="near")
    assert task.name == "row_marker_digits" and task.info["marker"] == "near" and len(task.y_train) == 384


@pytest.mark.parametrize("kwargs,match", [({"marker": "left"}, "marker"), ({"bands": 1}, "bands"),
                                          ({"bands": 11}, "bands"), ({"width": 30}, "width"),
                                          ({"digit_size": 2}, "digit_size"), ({"noise": -1}, "noise"),
                                          ({"bar_width": 0}, "bar_width")])
def test_bad_parameters_are_named_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=rf"row_marker_digits: invalid {match}"):
        row_marker_digits(5, 5, **kwargs)
