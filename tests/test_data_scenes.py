"""The digit_scenes segmentation task: split by source digit, deterministic, labels that match the pixels."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from attncourse.data import TASKS, _resized_all, make_task, source_digits
from attncourse.data.digit_scenes import IGNORE_INDEX, LARGE, SMALL, SceneTask, digit_scenes


@pytest.fixture(scope="module")
def task():
    return digit_scenes(60, 40, seed=3)


def test_registered_and_built_through_make_task():
    assert TASKS["digit_scenes"] is digit_scenes
    t = make_task("digit_scenes", "smoke", seed=0)
    assert isinstance(t, SceneTask) and t.kind == "segmentation" and len(t.x_train) == 384


def test_shapes_dtypes_and_metadata(task):
    assert task.x_train.shape == (60, 1, 48, 48) and task.x_train.dtype == torch.uint8
    assert task.y_train.shape == (60, 48, 48) and task.y_train.dtype == torch.uint8
    assert task.x_test.shape == (40, 1, 48, 48) and task.size_test.shape == (40, 48, 48)
    assert task.num_classes == 11 == len(task.classes) and task.classes[0] == "background"
    assert task.in_channels == 1 and task.image_size == (48, 48)
    assert "receptive field" in task.info["why"] and task.info["fcn_receptive_field"] < task.info["large_size"][0]
    labels = torch.unique(torch.cat([task.y_train.flatten(), task.y_test.flatten()])).tolist()
    assert set(labels) <= set(range(11)) | {IGNORE_INDEX} and {0, IGNORE_INDEX} <= set(labels)
    assert task.float_images(task.x_train[:2]).dtype == torch.float32


def test_deterministic_given_the_seed():
    a, b, c = digit_scenes(8, 4, seed=1), digit_scenes(8, 4, seed=1), digit_scenes(8, 4, seed=2)
    for name in ("x_train", "y_train", "x_test", "y_test", "sources_train", "size_test"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert not torch.equal(a.x_train, c.x_train)


def test_train_and_test_scenes_use_disjoint_source_digits(task):
    train_src = set(task.sources_train[task.sources_train >= 0].tolist())
    test_src = set(task.sources_test[task.sources_test >= 0].tolist())
    assert train_src <= set(source_digits("train")[2].tolist())
    assert test_src <= set(source_digits("test")[2].tolist())
    assert not train_src & test_src


def test_labels_are_the_class_of_the_source_digit_owning_the_pixel(task):
    """Every labelled digit pixel belongs to one of the scene's sources, of that class, and is bright."""
    from sklearn.datasets import load_digits

    targets = load_digits().target
    for i in range(len(task.y_train)):
        y, x = task.y_train[i], task.x_train[i, 0]
        classes = {int(targets[j]) for j in task.sources_train[i].tolist() if j >= 0}
        digits = y[(y >= 1) & (y <= 10)]
        assert set((digits - 1).unique().tolist()) <= classes
        assert (x[(y >= 1) & (y <= 10)] >= 127).all()  # ink ≥ 0.5
        assert (x[y == 0] < 0.15 * 255 + 1).all()  # background < 0.15
        assert ((task.size_train[i] > 0) == ((y >= 1) & (y <= 10))).all()


def test_one_large_digit_and_small_ones_with_the_right_sizes(task):
    """The large digit's labelled pixels span more than most of the FCN's receptive field; small digits are visible."""
    for i in range(10):
        large = task.size_train[i] == LARGE
        rows, cols = large.any(1).nonzero().flatten(), large.any(0).nonzero().flatten()
        extent = max(int(rows[-1] - rows[0]), int(cols[-1] - cols[0])) + 1
        assert extent > task.info["fcn_receptive_field"] * 0.6
    has_small = [(task.size_train[i] == SMALL).any() for i in range(len(task.size_train))]
    assert sum(has_small) >= 0.9 * len(has_small)  # small digits are mostly placed clear of the large one


def test_overlapping_ink_is_ignored():
    """Force overlap (n_small digits on a small canvas): ambiguous pixels become the ignore index, never a class."""
    t = digit_scenes(20, 2, canvas=16, large_size=(14, 16), small_size=(12, 14), n_small=(2, 2), seed=0)
    assert (t.y_train == IGNORE_INDEX).float().mean() > 0.2
    x = t.x_train[:, 0]
    edge = (x > 0.16 * 255) & (x < 0.49 * 255)
    assert (t.y_train[edge] == IGNORE_INDEX).all()  # soft edges are ignored


def test_to_moves_every_tensor(task):
    moved = task.to("cpu")
    assert isinstance(moved, SceneTask) and moved.kind == "segmentation"
    assert all(v.device.type == "cpu" for v in moved.__dict__.values() if isinstance(v, torch.Tensor))


def test_the_question_changes_the_words_and_nothing_else():
    """Module 09 asks its question of module 06's scenes: the same images and labels, its own ``why``."""
    context, fusion = digit_scenes(6, 3, seed=2), digit_scenes(6, 3, seed=2, question="skip_fusion")
    for key in ("x_train", "y_train", "x_test", "y_test", "size_train", "size_test", "sources_train", "sources_test"):
        assert torch.equal(getattr(context, key), getattr(fusion, key)), key
    assert context.info["why"] != fusion.info["why"] and "Position attention" in context.info["why"]
    assert "skip connection" in fusion.info["why"] and "AFF" in fusion.info["why"]
    assert {k: v for k, v in context.info.items() if k not in ("why", "attention")} == \
        {k: v for k, v in fusion.info.items() if k not in ("why", "attention")}


@pytest.mark.parametrize("kwargs, match", [
    (dict(question="fusion"), "question"),
    (dict(n_train=0), "n_train"), (dict(large_size=(40, 60)), "large_size"), (dict(small_size=(9, 4)), "small_size"),
    (dict(n_small=(3, 1)), "n_small"), (dict(bg_below=0.6), "bg_below"),
])
def test_bad_arguments_are_value_errors(kwargs, match):
    args = {"n_train": 4, "n_test": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        digit_scenes(args.pop("n_train"), args.pop("n_test"), **args)
