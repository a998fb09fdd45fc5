"""Per-item test outcomes: recorded by every run, kept by merges, re-created from existing weights."""
import json
import shutil

import numpy as np
import pytest

import attncourse as ac
from attncourse.experiments import Job, effects, get_experiment, merge_experiment, run_job
from attncourse.experiments.items import record_items
from attncourse.metrics.effect import item_values

TINY = ac.get_profile("smoke").with_(n_train=96, n_test=48, epochs=1, batch_size=32)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("items")
    for seed in (0, 1, 2, 3):
        for arm in ("baseline", "se"):
            if seed == 3 and arm == "se":
                continue
            run_job(Job("senet_cluttered", arm, seed, TINY), root / "store", device="cpu")
    return root


def test_a_run_records_which_test_images_it_got_right(store):
    rec = json.loads((store / "store" / Job("senet_cluttered", "se", 0, TINY).id / "run.json").read_text())
    hits = item_values(rec["items"])
    assert rec["items"]["kind"] == "correct" and len(hits) == TINY.n_test
    assert hits.mean() == pytest.approx(rec["final_test_acc"])  # the items are the recorded accuracy, image by image


def test_merge_keeps_items_every_arm_and_later_seeds(store, tmp_path):
    arms = ["baseline", "se"]
    res = merge_experiment("senet_cluttered", TINY, [0, 1, 2, 3], arms, store / "store", tmp_path)
    assert res is not None and list(res["arms"]) == arms  # arms with no run at all are left out, not required
    assert [r["seed"] for r in res["arms"]["baseline"]["runs"]] == [0, 1, 2, 3]  # seed 3 joins
    assert [r["seed"] for r in res["arms"]["se"]["runs"]] == [0, 1, 2]
    assert all(r.get("items") for a in res["arms"].values() for r in a["runs"])
    row = next(r for r in effects(res) if r["arm"] == "se")
    assert row["n"] == 3 and row["item_source"] == "paired"  # paired on the seeds both arms have
    # an arm asked for by name needs its first seeds
    assert merge_experiment("senet_cluttered", TINY, [0, 1, 2, 3], ["eca"], store / "store", tmp_path) is None


def test_record_items_reevaluates_existing_weights_and_checks_they_reproduce(store, tmp_path):
    arms = ["baseline", "se"]
    folder = tmp_path / "results"
    res = merge_experiment("senet_cluttered", TINY, [0, 1, 2], arms, store / "store", folder)
    path = folder / "senet_cluttered.smoke.json"
    data = json.loads(path.read_text())
    kept = {a: [r.pop("items") for r in v["runs"]] for a, v in data["arms"].items()}  # as recorded before items
    path.write_text(json.dumps(data))
    bare = tmp_path / "bare"  # a run store whose records have no items, but whose weights are there
    for job_dir in (store / "store").iterdir():
        shutil.copytree(job_dir, bare / job_dir.name)
        rec = json.loads((bare / job_dir.name / "run.json").read_text())
        rec.pop("items", None)
        (bare / job_dir.name / "run.json").write_text(json.dumps(rec))
    out = record_items(["senet_cluttered"], "smoke", store=bare, folder=folder, log=lambda *a: None)
    assert out["senet_cluttered"]["filled"] == 6 and out["senet_cluttered"]["mismatched"] == 0
    again = json.loads(path.read_text())
    for arm, items in kept.items():
        for run, old in zip(again["arms"][arm]["runs"], items):
            assert np.array_equal(item_values(run["items"]), item_values(old))
    # a recorded value the weights do not reproduce is reported and not used
    data = json.loads(path.read_text())
    for a in data["arms"].values():
        for r in a["runs"]:
            r.pop("items")
            r["final_test_acc"] += 0.25
    path.write_text(json.dumps(data))
    for job_dir in bare.iterdir():
        rec = json.loads((job_dir / "run.json").read_text())
        rec.pop("items", None)
        (job_dir / "run.json").write_text(json.dumps(rec))
    out = record_items(["senet_cluttered"], "smoke", store=bare, folder=folder, log=lambda *a: None)
    assert out["senet_cluttered"]["mismatched"] == 6 and out["senet_cluttered"]["with_items"] == 0
    assert res is not None
