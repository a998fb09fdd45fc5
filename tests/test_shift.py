"""Shift evaluations: finished runs tested on a harder variant of their task, without training."""
import json

import numpy as np

import pytest
import torch

from attncourse.__main__ import main
from attncourse.config import get_profile
from attncourse.data import make_task
from attncourse.experiments import (Job, ShiftEvaluation, effects, get_shift, load_shift, record_shift, run_job,
                                    shift_results, verdict)
from attncourse.experiments import shift as shift_module
from attncourse.train import predict

SMOKE = get_profile("smoke")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A run store with two finished smoke-profile runs of the cluttered-digits task."""
    folder = tmp_path_factory.mktemp("store")
    for arm in ("baseline", "se"):
        run_job(Job("mixed_compare", arm, 0, SMOKE), folder)
    return folder


@pytest.fixture
def demo(monkeypatch):
    ev = ShiftEvaluation(name="demo_shift", description="d", module="05_cbam",
                         sources={"baseline": ("mixed_compare", "baseline"), "se": ("mixed_compare", "se")},
                         vary="n_clutter", levels=(0, 12), n_test=40, test_seed=3)
    monkeypatch.setitem(shift_module.SHIFTS, ev.name, ev)
    return ev


def test_record_shift_tests_every_arm_on_the_same_fresh_images(store, demo, tmp_path, monkeypatch):
    out = record_shift("demo_shift", seeds=(0,), profile="smoke", store=store, out_dir=tmp_path, device="cpu")
    assert out["levels"] == [0, 12] and out["trained_at"] == 6 and out["seeds"] == [0] and out["n_test"] == 40
    assert set(out["arms"]) == {"baseline", "se"}
    assert out["arms"]["se"]["jobs"] == [Job("mixed_compare", "se", 0, SMOKE).id]
    # the number is what the stored run's model scores on the generator's test images at that level
    fresh = make_task("cluttered_digits", SMOKE.with_(n_train=1, n_test=40), seed=3, n_clutter=12)
    model, _, settings = shift_module._trained_model(Job("mixed_compare", "baseline", 0, SMOKE), [store])
    logits = predict(model, fresh.x_test, device="cpu", amp=settings.get("amp_bf16"),
                     channels_last=settings.get("channels_last"))      # the speed settings the run trained with
    expected = float((logits.argmax(1) == fresh.y_test).float().mean())
    assert out["arms"]["baseline"]["values"]["12"] == [pytest.approx(expected)]
    assert out["metric"] == "accuracy" and set(out["arms"]["baseline"]) == {"source", "jobs", "params", "values", "items"}
    # per-item outcomes of every seed and level: the paired intervals resample them, not a binomial bound
    hits = out["arms"]["baseline"]["items"]["12"][0]
    assert hits["n"] == 40 and shift_module.metric_from_items(hits) == out["arms"]["baseline"]["values"]["12"][0]
    row = next(r for r in effects(shift_results(out, 12)) if r["arm"] == "se")
    assert row["item_source"] != "binomial bound"
    assert out["arms"]["baseline"]["params"] < out["arms"]["se"]["params"]
    # written where load_shift finds it, and deterministic
    monkeypatch.setenv("ATTNCOURSE_RESULTS", str(tmp_path))
    assert load_shift("demo_shift", profile="smoke") == json.loads(json.dumps(out))
    again = record_shift("demo_shift", seeds=(0,), profile="smoke", store=store, out_dir=tmp_path / "b", device="cpu")
    assert again["arms"] == out["arms"]


def test_a_level_reads_like_an_experiment_for_effects_and_verdicts(demo):
    shift = {"evaluation": "demo_shift", "vary": "n_clutter", "levels": [0, 12], "seeds": [0, 1, 2], "n_test": 2000,
             "profile": "full", "device": "cpu", "metric": "accuracy", "arms": {
                 "baseline": {"params": 100, "values": {"0": [0.9, 0.92, 0.91], "12": [0.50, 0.52, 0.51]}},
                 "se": {"params": 110, "values": {"0": [0.9, 0.91, 0.92], "12": [0.60, 0.61, 0.62]}}}}
    res = shift_results(shift, 12)
    row = next(r for r in effects(res) if r["arm"] == "se")
    assert row["delta"] == pytest.approx(0.10) and row["label"] == "clear gain" and row["extra_params"] == pytest.approx(0.1)
    assert "clear gain" in verdict(res, "se") and row["item_source"] == "binomial bound"
    assert next(r for r in effects(shift_results(shift, 0)) if r["arm"] == "se")["label"] == "inconclusive"
    with pytest.raises(ValueError, match="no level"):
        shift_results(shift, 6)


def test_metric_from_items_reads_every_task_kind():
    from attncourse.metrics.effect import correct_items, iou_items, mean_items

    assert shift_module.metric_from_items(correct_items(np.array([1, 0, 1, 1], dtype=bool))) == pytest.approx(0.75)
    assert shift_module.metric_from_items(mean_items([0.5, 1.0, 0.0], kind="ap")) == pytest.approx(0.5)
    inter, union = np.array([[1, 0], [1, 2]]), np.array([[2, 0], [2, 2]])   # class 0: 2/4, class 1: 2/2
    assert shift_module.metric_from_items(iou_items(inter, union)) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="no per-item"):
        shift_module.metric_from_items(None)


def test_missing_runs_and_bad_arms_fail_clearly(store, demo, tmp_path):
    with pytest.raises(FileNotFoundError, match="mixed_compare:baseline:seed1"):
        record_shift("demo_shift", seeds=(0, 1), profile="smoke", store=store, out_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown arms"):
        record_shift("demo_shift", seeds=(0,), profile="smoke", store=store, out_dir=tmp_path, arms=["cbam"])
    with pytest.raises(ValueError, match="test_split"):
        ShiftEvaluation(name="bad", description="d", module="05_cbam", vary="n_clutter", levels=(0,),
                        sources={"a": ("mixed_compare", "baseline")}, test_split="train")
    with pytest.raises(ValueError, match="same task"):
        ShiftEvaluation(name="bad", description="d", module="05_cbam", vary="n_clutter", levels=(0,),
                        sources={"a": ("mixed_compare", "baseline"), "b": ("clutter_heavy", "baseline")})
    with pytest.raises(ValueError, match="does not have"):
        ShiftEvaluation(name="bad", description="d", module="05_cbam", vary="n_clutter", levels=(0,),
                        sources={"a": ("mixed_compare", "spatial_only")})
    assert main(["shift", "demo_shift", "--seeds", "2", "--profile", "smoke", "--store", str(store),
                 "--out-dir", str(tmp_path)]) == 2


def test_the_course_registers_clutter_shift_on_the_main_task():
    ev = get_shift("clutter_shift")
    assert ev.task == "cluttered_digits" and ev.vary == "n_clutter" and 6 in ev.levels and max(ev.levels) > 6
    assert {"baseline", "spatial_only"} <= set(ev.sources)


def test_the_occlusion_split_of_reid_runs_records_map_with_per_query_outcomes(tmp_path):
    """sta_occlusion: the experiment's own test split, as trained and without occluders; mAP per seed and each
    query's AP, so the paired intervals resample the queries."""
    for arm in ("tap", "temporal_attention", "sta"):
        run_job(Job("sta_tracklets", arm, 0, SMOKE), tmp_path / "runs", device="cpu")
    out = record_shift("sta_occlusion", seeds=(0,), profile="smoke", store=tmp_path / "runs", out_dir=tmp_path,
                       device="cpu")
    assert out["metric"] == "map" and out["test_split"] == "experiment" and out["trained_at"] == 0.35
    for arm in ("tap", "temporal_attention", "sta"):
        for level in ("0.35", "0.0"):
            items = out["arms"][arm]["items"][level][0]
            assert items["kind"] == "ap" and 0.0 <= out["arms"][arm]["values"][level][0] <= 1.0
            assert shift_module.metric_from_items(items) == out["arms"][arm]["values"][level][0]
        assert "accuracy" not in out["arms"][arm]
    # the split as trained is the experiment's test split: the number equals the run's own recorded mAP
    rec = json.loads((tmp_path / "runs" / Job("sta_tracklets", "sta", 0, SMOKE).id / "run.json").read_text())
    assert out["arms"]["sta"]["values"]["0.35"][0] == pytest.approx(rec["final_test_acc"], abs=1e-6)
    assert shift_results(out, 0.0)["metric"] == "map"
