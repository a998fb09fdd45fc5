"""Module 07's branch-weight-by-digit-size picture: the recorded digit sizes of ``multiscale_digits`` and the
statistics the notebook computes on them (``weight_by_size``, ``size_trend``)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from attncourse.models.branch import BranchResNet, branch_weights, size_trend, weight_by_size
from attncourse.data import _resized_all, multiscale_digits, source_digits


# --------------------------------------------------------------------------- the recorded sizes
def _placements(img: np.ndarray, template: np.ndarray) -> int:
    """How many placements of ``template`` reproduce ``img`` exactly (noise-free image: max-paste on zeros)."""
    h, s = img.shape[0], template.shape[0]
    hits = 0
    for top in range(h - s + 1):
        for left in range(h - s + 1):
            canvas = np.zeros_like(img)
            canvas[top:top + s, left:left + s] = template
            hits += bool(np.abs(canvas - img).max() <= 1 / 255 + 1e-6)
    return hits


def test_sizes_are_recorded_per_sample_and_split():
    task = multiscale_digits(40, 24, digit_size=(6, 30), seed=5)
    tr, te = task.info["sizes_train"], task.info["sizes_test"]
    assert len(tr) == 40 and len(te) == 24
    assert all(isinstance(v, int) and 6 <= v <= 30 for v in tr + te)
    assert len(set(te)) > 5                          # they vary: not one size repeated


def test_recorded_size_is_the_size_of_the_pasted_digit():
    """Noise off: the test image is exactly its source digit resized to the recorded size, pasted somewhere — and
    not that digit at the next size up or down."""
    task = multiscale_digits(4, 10, canvas=32, digit_size=(6, 30), noise=0.0, seed=2)
    for i in range(10):
        img = task.x_test[i, 0].numpy().astype(np.float32) / 255
        src = int(task.sources_test[i, 0])
        size = task.info["sizes_test"][i]
        assert _placements(img, _resized_all(size)[src]) >= 1, (i, size)
        for other in (size - 1, size + 1):
            if 6 <= other <= 30 and _resized_all(other)[src].max() > 0:
                assert _placements(img, _resized_all(other)[src]) == 0, (i, size, other)


def test_recording_the_sizes_changes_nothing_else():
    """Same seed, same task; and the source digits are still test digits only."""
    a = multiscale_digits(30, 20, noise=0.3, digit_size=(6, 38), seed=1)
    b = multiscale_digits(30, 20, noise=0.3, digit_size=(6, 38), seed=1)
    for f in ("x_train", "y_train", "x_test", "y_test", "sources_train", "sources_test"):
        assert torch.equal(getattr(a, f), getattr(b, f))
    assert a.info == b.info
    test_idx = set(source_digits("test")[2].tolist())
    assert set(a.sources_test.flatten().tolist()) <= test_idx
    import json
    json.dumps(a.info)                               # the runner writes task.info into the results JSON


# --------------------------------------------------------------------------- statistics
def test_size_trend_matches_scipy_spearman_with_ties():
    stats = pytest.importorskip("scipy.stats")
    gen = torch.Generator().manual_seed(0)
    sizes = torch.randint(6, 12, (80,), generator=gen)          # many ties
    w = 0.02 * sizes.double() + 0.05 * torch.randn(80, generator=gen, dtype=torch.float64)
    w[::7] = w[0]                                                # ties in the weights too
    got = size_trend(w, sizes, n_permutations=500)
    assert got["rho"] == pytest.approx(stats.spearmanr(sizes.numpy(), w.numpy()).statistic, abs=1e-12)
    assert got["n"] == 80


def test_size_trend_finds_a_trend_and_no_trend():
    gen = torch.Generator().manual_seed(1)
    sizes = torch.rand(200, generator=gen) * 30 + 6
    up = size_trend(sizes * 0.01 + 0.02 * torch.randn(200, generator=gen), sizes)
    assert up["rho"] > 0.5 and up["p_value"] < 0.01
    down = size_trend(-sizes, sizes)
    assert down["rho"] == pytest.approx(-1.0) and down["p_value"] < 0.01
    none = size_trend(torch.randn(200, generator=gen), sizes)
    assert abs(none["rho"]) < 0.2 and none["p_value"] > 0.01
    flat = size_trend(torch.full((50,), 0.3), sizes[:50])
    assert flat["rho"] == 0.0 and flat["p_value"] == 1.0
    with pytest.raises(ValueError, match="size_trend"):
        size_trend(torch.zeros(5), torch.zeros(6))


def test_weight_by_size_bins():
    w = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9, 0.2])
    s = torch.tensor([6, 7, 10, 12, 14, 14])
    out = weight_by_size(w, s, edges=[6, 10, 14])
    assert out["count"] == [2, 4]                                 # 14 falls in the last bin (right edge included)
    assert out["centers"] == [8.0, 12.0]
    assert out["mean"] == pytest.approx([0.2, (0.5 + 0.7 + 0.9 + 0.2) / 4])
    assert out["sem"][0] == pytest.approx(float(torch.tensor([0.1, 0.3]).double().std() / 2 ** 0.5))
    empty_bin = weight_by_size(w, s, edges=[0, 5, 10, 20])        # [0, 5) is empty: skipped
    assert empty_bin["centers"] == [7.5, 15.0]
    with pytest.raises(ValueError, match="weight_by_size"):
        weight_by_size(w, s, edges=[10, 6])


def test_branch_weights_of_an_sk_resnet_give_one_weight_per_image_and_stage():
    torch.manual_seed(0)
    model = BranchResNet(conv="sk", conv_kwargs={"groups": 2, "reduction": 4, "min_reduced": 8})
    x = torch.rand(6, 1, 40, 40)
    w = branch_weights(model, x)
    assert list(w) == ["stages.0.0.conv2", "stages.1.0.conv2", "stages.2.0.conv2"]
    for v in w.values():
        assert v.shape == (6,) and ((v > 0) & (v < 1)).all()
    first = branch_weights(model, x, branch=0)
    for k in w:                                                   # two branches: the weights sum to 1
        torch.testing.assert_close(w[k] + first[k], torch.ones(6))
