"""One comparison, one answer: wherever two recorded experiments hold the very same runs of an arm and of its
baseline (the same job ids, which name what was trained), their effects rows agree — the same Δ, the same interval,
the same label. A results file merged before its runs gained per-item outcomes would state a different interval
for the same comparison than its neighbour; this test catches that (re-merge it: ``run-all --merge-only``)."""
import itertools

import numpy as np
import pytest

import attncourse as ac
from attncourse.experiments import list_experiments


def _recorded():
    out = {}
    for name in list_experiments():
        res = ac.load_results(name)
        if res is not None:
            out[name] = res
    return out


def _jobs(arm: dict) -> tuple:
    return tuple(r.get("job") for r in arm["runs"])


def shared_comparisons(recorded: dict):
    """(experiment A, arm A, experiment B, arm B, baseline A, baseline B) where both arms and both baselines are
    the same runs (every run has a job id)."""
    index = {}
    for name, res in recorded.items():
        for arm, a in res["arms"].items():
            jobs = _jobs(a)
            if all(jobs):
                index.setdefault(jobs, []).append((name, arm))
    for name, res in recorded.items():
        base = next(iter(res["arms"]))
        for arm in list(res["arms"])[1:]:
            for (n2, a2), (n3, b2) in itertools.product(index.get(_jobs(res["arms"][arm]), []),
                                                          index.get(_jobs(res["arms"][base]), [])):
                if n2 == n3 and n2 > name:
                    yield name, arm, base, n2, a2, b2


def disagreements(recorded: dict) -> list[str]:
    """Every shared comparison whose two results files state different labels or intervals."""
    bad = []
    for name, arm, base, other, arm2, base2 in shared_comparisons(recorded):
        one = next(r for r in ac.effects(recorded[name], baseline=base) if r["arm"] == arm)
        two = next(r for r in ac.effects(recorded[other], baseline=base2) if r["arm"] == arm2)
        if (one["label"], one["item_source"]) != (two["label"], two["item_source"]) or \
                abs(one["ci_low"] - two["ci_low"]) > 1e-9 or abs(one["ci_high"] - two["ci_high"]) > 1e-9:
            bad.append(f"{name}:{arm} vs {base} [{one['ci_low']:+.4f}, {one['ci_high']:+.4f}] {one['label']} "
                       f"({one['item_source']}) but {other}:{arm2} vs {base2} [{two['ci_low']:+.4f}, "
                       f"{two['ci_high']:+.4f}] {two['label']} ({two['item_source']})")
    return bad


def test_the_same_runs_give_the_same_effect_in_every_results_file():
    recorded = _recorded()
    assert list(shared_comparisons(recorded)), "no two recorded experiments share runs: nothing to compare"
    assert not disagreements(recorded)


def test_a_stale_results_file_is_caught():
    from attncourse.metrics.effect import correct_items

    rng = np.random.default_rng(0)

    def run(job, seed, p):
        hits = rng.random(400) < p
        return {"job": job, "seed": seed, "final_test_acc": float(hits.mean()), "items": correct_items(hits)}

    arms = {"base": [run(f"b{s}", s, 0.80) for s in range(3)], "block": [run(f"k{s}", s, 0.83) for s in range(3)]}

    def results(name, with_items=True):
        return {"experiment": name, "metric": "accuracy", "n_test": 400, "arms": {
            arm: {"mean_test_acc": float(np.mean([r["final_test_acc"] for r in runs])), "std_test_acc": 0.01,
                  "params": 10, "runs": [r if with_items else {**r, "items": None} for r in runs]}
            for arm, runs in arms.items()}}

    assert not disagreements({"a": results("a"), "b": results("b")})
    assert disagreements({"a": results("a"), "b": results("b", with_items=False)})
