import numpy as np
import pytest
import torch

from attncourse import data
from attncourse.data import (TASKS, channel_cue_digits, cluttered_digits, long_range_pairs, make_task, multiscale_digits,
                             source_digits)

from attncourse.data import row_marker_digits as _row_marker  # noqa: F401  (registers its task on import)
from attncourse.data import second_order_cue_digits as _second_order  # noqa: F401  (registers its task on import)

# The classification tasks of this module, row_marker_digits (attncourse/data/row_marker_digits.py, its construction
# tested in test_data_row_marker.py) and second_order_cue_digits (tested in test_data_second_order.py); the segmentation and re-ID tasks (attncourse/data/digit_scenes.py,
# digit_tracklets.py, registered when first used) have their own tests: test_data_scenes.py, test_data_tracklets.py.
CLASSIFICATION_TASKS = ["channel_cue_digits", "cluttered_digits", "long_range_pairs", "multiscale_digits",
                        "row_marker_digits", "second_order_cue_digits"]


def test_the_classification_task_list_is_complete():
    from attncourse.data import DigitTask

    kinds = {name: getattr(TASKS[name](**SMALL), "kind", None) for name in sorted(TASKS)}
    assert sorted(n for n, k in kinds.items() if k == DigitTask.kind) == CLASSIFICATION_TASKS

SMALL = dict(n_train=40, n_test=20)


def test_source_digits_are_real_and_split_disjoint():
    xtr, ytr, itr = source_digits("train")
    xte, yte, ite = source_digits("test")
    assert len(itr) + len(ite) == 1797
    assert set(itr.tolist()).isdisjoint(ite.tolist())
    assert xtr.shape[1:] == (8, 8) and 0 <= xtr.min() and xtr.max() <= 1
    # stratified: every class on both sides, roughly 70/30
    for c in range(10):
        n_tr, n_te = int((ytr == c).sum()), int((yte == c).sum())
        assert n_tr > 0 and n_te > 0 and 0.6 < n_tr / (n_tr + n_te) < 0.8
    with pytest.raises(ValueError, match="split"):
        source_digits("valid")


@pytest.mark.parametrize("name", CLASSIFICATION_TASKS)
def test_tasks_are_deterministic_and_disjoint_by_source_digit(name):
    a = TASKS[name](**SMALL, seed=5)
    b = TASKS[name](**SMALL, seed=5)
    c = TASKS[name](**SMALL, seed=6)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)
    _, _, train_idx = source_digits("train")
    _, _, test_idx = source_digits("test")
    assert set(a.sources_train.flatten().tolist()) <= set(train_idx.tolist())
    assert set(a.sources_test.flatten().tolist()) <= set(test_idx.tolist())
    assert set(a.sources_train.flatten().tolist()).isdisjoint(a.sources_test.flatten().tolist())


@pytest.mark.parametrize("name", CLASSIFICATION_TASKS)
def test_task_shapes_and_dtypes(name):
    t = TASKS[name](**SMALL)
    assert t.x_train.dtype == torch.uint8 and t.y_train.dtype == torch.int64
    assert t.x_train.shape[0] == 40 and t.x_test.shape[0] == 20
    assert t.x_train.shape[1:] == t.x_test.shape[1:] and t.x_train.dim() == 4
    assert int(t.y_train.min()) >= 0 and int(t.y_train.max()) < t.num_classes
    assert len(t.classes) == t.num_classes and "why" in t.info
    f = t.float_images(t.x_train)
    assert f.dtype == torch.float32 and 0 <= float(f.min()) and float(f.max()) <= 1


def test_labels_follow_the_source_digits():
    _, labels = data._digits()
    t = cluttered_digits(**SMALL)
    assert torch.equal(t.y_train, torch.from_numpy(labels)[t.sources_train[:, 0]])
    p = long_range_pairs(**SMALL)
    same = torch.from_numpy(labels)[p.sources_train[:, 0]] == torch.from_numpy(labels)[p.sources_train[:, 1]]
    assert torch.equal(p.y_train.bool(), same)


def test_long_range_pairs_are_balanced_and_far_apart():
    p = long_range_pairs(400, 20)
    assert 0.4 < p.y_train.float().mean() < 0.6
    img = p.x_train.float()
    cols = img.sum(dim=(1, 2))  # [N, W] ink per column
    middle = cols[:, 26:70]
    assert float(middle.sum()) == 0.0  # nothing between the two digit zones
    assert p.info["min_gap_px"] >= 44


def test_channel_cue_marks_the_labelled_channel_globally():
    t = channel_cue_digits(300, 20, noise=0.25, cue_strength=0.12)
    _, labels = data._digits()
    src_labels = torch.from_numpy(labels)[t.sources_train]  # [N, channels]
    target = (src_labels == t.y_train[:, None]).float().argmax(1)
    means = t.x_train.float().mean(dim=(2, 3))  # [N, C]
    assert (means.argmax(1) == target).float().mean() > 0.9  # the cue is clear globally
    px = t.x_train.float()[:, :, 0, 0]  # one pixel: the cue is buried in noise
    assert (px.argmax(1) == target).float().mean() < 0.6


def test_multiscale_digits_cover_a_wide_range_of_sizes():
    t = multiscale_digits(300, 20, noise=0.0)
    ink = (t.x_train[:, 0] > 40)
    rows = ink.any(dim=2).sum(1)
    assert int(rows.min()) <= 10 and int(rows.max()) >= 30


@pytest.mark.parametrize("fn,kwargs,param", [
    (cluttered_digits, dict(canvas=10), "canvas"),
    (cluttered_digits, dict(n_clutter=-1), "n_clutter"),
    (cluttered_digits, dict(digit_size=(20, 10)), "digit_size"),
    (cluttered_digits, dict(n_train=0), "n_train"),
    (channel_cue_digits, dict(channels=11), "channels"),
    (channel_cue_digits, dict(noise=-0.1), "noise"),
    (long_range_pairs, dict(width=40), "width"),
    (long_range_pairs, dict(height=10), "height"),
    (multiscale_digits, dict(n_test=-3), "n_test"),
    (multiscale_digits, dict(seed=-1), "seed"),
])
def test_invalid_parameters_name_the_parameter(fn, kwargs, param):
    args = {**SMALL, **kwargs}
    with pytest.raises(ValueError, match=rf"invalid {param}"):
        fn(**args)


def test_make_task_uses_the_profile_and_rejects_unknown_names():
    t = make_task("long_range_pairs", "smoke")
    from attncourse.config import PROFILES
    assert len(t.x_train) == PROFILES["smoke"].n_train
    with pytest.raises(ValueError, match="available tasks"):
        make_task("mnist", "smoke")


def test_cifar10_offline_error_names_offline_tasks(tmp_path):
    with pytest.raises(RuntimeError, match="cluttered_digits"):
        data.cifar10(root=str(tmp_path), download=False)
