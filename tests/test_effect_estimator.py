"""The course's one effect estimator (attncourse.metrics.effect): it means what it says.

The coverage test simulates studies with a known Δ (seed noise plus test-item noise shared by every seed, as in the
course's runs: one test set for all seeds) and checks the 95 % interval covers it about 95 % of the time, and that
at Δ = 0 a "clear" label is rare. The simulations are seeded, so the test is deterministic.
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from attncourse.metrics.effect import (correct_items, decode_array, encode_array, iou_items, item_values, mean_items,
                                       paired_effect, simulate_coverage)


@pytest.mark.parametrize("delta", [0.0, 0.02])
def test_interval_covers_a_known_delta_90_to_98_percent_of_the_time(delta):
    out = simulate_coverage(delta, draws=300, seeds=5, n_items=500, rng_seed=11)
    assert 0.90 <= out["coverage"] <= 0.98, out


def test_three_seeds_and_a_small_seed_term_still_cover():
    out = simulate_coverage(0.01, draws=300, seeds=3, n_items=500, seed_sd=0.004, rng_seed=12)
    assert 0.90 <= out["coverage"] <= 0.98, out


def test_at_zero_effect_clear_labels_are_rare():
    out = simulate_coverage(0.0, draws=400, seeds=5, n_items=500, rng_seed=13)
    assert out["clear_rate"] <= 0.07, out


@pytest.mark.parametrize("items_for", ["first", "none"])
def test_fallbacks_for_runs_without_per_item_outcomes_are_conservative(items_for):
    """Seed 0 only (the recorded checkpoints) or no items at all (the binomial bound): never narrower."""
    out = simulate_coverage(0.02, draws=200, seeds=3, n_items=500, items_for=items_for, rng_seed=14)
    assert out["coverage"] >= 0.95, out


def test_a_real_effect_is_found():
    out = simulate_coverage(0.08, draws=100, seeds=5, n_items=500, rng_seed=15)
    assert out["clear_rate"] >= 0.9, out


def _runs(values, items=None):
    return [{"seed": s, "value": v, "items": None if items is None else items[s]} for s, v in enumerate(values)]


def test_labels_follow_the_interval():
    hit = np.ones(2000, bool)
    up = paired_effect(_runs([0.80, 0.81, 0.82]), _runs([0.70, 0.71, 0.72]), n_test=2000)
    assert up["label"] == "clear gain" and up["ci_low"] > 0 and up["per_seed"] == pytest.approx([0.1] * 3)
    down = paired_effect(_runs([0.70, 0.71, 0.72]), _runs([0.80, 0.81, 0.82]), n_test=2000)
    assert down["label"] == "clear loss" and down["ci_high"] < 0
    mixed = paired_effect(_runs([0.80, 0.70, 0.76]), _runs([0.75, 0.75, 0.75]), n_test=2000)
    assert mixed["label"] == "inconclusive" and mixed["ci_low"] < 0 < mixed["ci_high"]
    one = paired_effect(_runs([0.9]), _runs([0.5]), n_test=2000)
    assert one["label"] == "inconclusive" and math.isnan(one["ci_low"])
    assert hit.sum() == 2000


def test_pairs_by_seed_and_refuses_disjoint_seeds():
    a = [{"seed": 3, "value": 0.9}, {"seed": 0, "value": 0.8}, {"seed": 7, "value": 0.1}]
    b = [{"seed": 0, "value": 0.7}, {"seed": 3, "value": 0.6}]
    out = paired_effect(a, b, n_test=100)
    assert out["n"] == 2 and out["per_seed"] == pytest.approx([0.1, 0.3])
    with pytest.raises(ValueError, match="share no seed"):
        paired_effect([{"seed": 1, "value": 0.5}], [{"seed": 2, "value": 0.5}])


def test_paired_items_remove_what_the_arms_share():
    """Two arms that get the same images right have no test-set term; the binomial bound would not know."""
    rng = np.random.default_rng(0)
    same = [rng.random(1000) < 0.8 for _ in range(3)]
    a = _runs([x.mean() + 0.01 for x in same], [correct_items(x) for x in same])
    b = _runs([x.mean() for x in same], [correct_items(x) for x in same])
    assert paired_effect(a, b)["item_se"] == 0.0
    bound = paired_effect(_runs([x.mean() + 0.01 for x in same]), _runs([x.mean() for x in same]), n_test=1000)
    assert bound["item_source"] == "binomial bound" and bound["item_se"] > 0.015


def test_item_records_round_trip_and_malformed_ones_fail_clearly():
    bits = np.random.default_rng(1).random(2001) < 0.5
    assert np.array_equal(item_values(correct_items(bits)), bits.astype(float))
    ap = np.linspace(0, 1, 7, dtype=np.float32)
    assert np.allclose(item_values(mean_items(ap, "ap")), ap)
    inter, union = np.array([[1, 0], [2, 3]]), np.array([[2, 1], [4, 3]])
    i, u = item_values(iou_items(inter, union))
    assert np.array_equal(i, inter) and np.array_equal(u, union)
    with pytest.raises(ValueError, match="not an encoded array"):
        decode_array("garbage")
    with pytest.raises(ValueError, match="iou_items"):
        iou_items(inter, union[:1])
    with pytest.raises(ValueError, match="unknown per-item"):
        item_values({"kind": "mystery"})


def test_miou_items_give_a_paired_bootstrap_term():
    rng = np.random.default_rng(2)
    union = rng.integers(50, 100, (200, 3))
    runs_a, runs_b = [], []
    for s in range(3):
        ia = (union * rng.uniform(0.5, 0.9, (200, 3))).astype(int)
        ib = (union * rng.uniform(0.4, 0.8, (200, 3))).astype(int)
        miou = lambda i: float(np.mean(i.sum(0) / union.sum(0)))
        runs_a.append({"seed": s, "value": miou(ia), "items": iou_items(ia, union)})
        runs_b.append({"seed": s, "value": miou(ib), "items": iou_items(ib, union)})
    out = paired_effect(runs_a, runs_b, metric="miou")
    assert out["item_source"] == "paired" and out["item_se"] >= 0 and out["label"] == "clear gain"
    # with identical seeds only the test-set term is left: its degrees of freedom are the 200 images' (N − 1)
    same_a = [{**runs_a[0], "seed": s} for s in range(3)]
    same_b = [{**runs_b[0], "seed": s} for s in range(3)]
    only_items = paired_effect(same_a, same_b, metric="miou")
    assert only_items["seed_se"] == 0 and only_items["df"] == pytest.approx(199)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=2, max_size=6), st.floats(-0.2, 0.2))
def test_shifting_every_seed_shifts_the_interval(base, shift):
    arm = [min(1.0, max(0.0, v + shift)) for v in base]
    out = paired_effect(_runs(arm), _runs(base), n_test=500)
    d = np.array(arm) - np.array(base)
    assert out["delta"] == pytest.approx(d.mean())
    assert out["ci_low"] <= out["delta"] <= out["ci_high"]
