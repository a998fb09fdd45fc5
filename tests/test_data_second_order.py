"""``second_order_cue_digits``: the per-channel means carry no information, the per-channel stds carry the mark.

A logistic regression on the per-channel spatial means of the images cannot find the marked channel (nor the
label) better than chance, while one on the per-channel standard deviations finds it almost always; the control
(``cue="mean"``) is the other way round for the means.
"""
import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from attncourse.data import make_task
from attncourse.data.second_order_cue_digits import second_order_cue_digits


def _task(cue):
    return second_order_cue_digits(600, 400, cue=cue, seed=3)


def _stats(x):
    x = x.float() / 255
    return x.mean((2, 3)).numpy(), x.std((2, 3)).numpy()


def _accuracy(train_features, y_train, test_features, y_test):
    scale = 1 / max(float(train_features.std()), 1e-12)  # standardise: the means differ by ~1/255 at most
    clf = LogisticRegression(max_iter=5000).fit(train_features * scale, y_train)
    return clf.score(test_features * scale, y_test)


@pytest.fixture(scope="module")
def std_task():
    return _task("std")


def test_every_channel_mean_is_half_up_to_the_uint8_rounding(std_task):
    means, _ = _stats(std_task.x_train)
    assert np.abs(means - 0.5).max() < 1 / 255


def test_the_means_carry_no_information_and_the_stds_do(std_task):
    t = std_task
    m_train, s_train = _stats(t.x_train)
    m_test, s_test = _stats(t.x_test)
    marked_train, marked_test = np.array(t.info["marked_train"]), np.array(t.info["marked_test"])
    # chance: 1/4 for the marked channel, 1/10 for the label; 400 test images → a binomial spread of ~2 points
    assert _accuracy(m_train, marked_train, m_test, marked_test) < 0.25 + 0.08
    assert _accuracy(m_train, t.y_train.numpy(), m_test, t.y_test.numpy()) < 0.10 + 0.07
    assert _accuracy(s_train, marked_train, s_test, marked_test) > 0.9


def test_the_control_has_the_cue_in_the_mean():
    t = _task("mean")
    m_train, _ = _stats(t.x_train)
    m_test, _ = _stats(t.x_test)
    marked_train, marked_test = np.array(t.info["marked_train"]), np.array(t.info["marked_test"])
    assert _accuracy(m_train, marked_train, m_test, marked_test) > 0.9
    assert (np.argmax(m_test, 1) == marked_test).mean() > 0.99
    assert "mean" in t.info["why"] and "SE" in t.info["why"]


def test_shapes_labels_and_determinism(std_task):
    t = std_task
    assert t.x_train.shape == (600, 4, 24, 24) and t.x_train.dtype == torch.uint8
    assert len(t.info["marked_test"]) == 400
    # the label is the class of the marked channel's digit: the sources say which digit each channel holds
    from attncourse.data import _digits
    _, labels = _digits()
    src = t.sources_test.numpy()
    marked = np.array(t.info["marked_test"])
    assert np.array_equal(labels[src[np.arange(len(src)), marked]], t.y_test.numpy())
    again = second_order_cue_digits(600, 400, cue="std", seed=3)
    assert torch.equal(again.x_test, t.x_test)
    assert "standard deviation" in t.info["why"] and "SRM" in t.info["why"] and "GSoP" in t.info["why"]
    assert make_task("second_order_cue_digits", profile="smoke").x_train.shape[1] == 4


@pytest.mark.parametrize("kwargs", [dict(cue="var"), dict(contrast=0.45), dict(texture=0.2), dict(cue_ratio=1.0),
                                    dict(channels=1), dict(cue="mean", offset=0.3)])
def test_bad_arguments_are_named_errors(kwargs):
    with pytest.raises(ValueError, match="second_order_cue_digits"):
        second_order_cue_digits(10, 10, **kwargs)
