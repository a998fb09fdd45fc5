import json

import pytest

from attncourse.experiments import effects, verdict
from attncourse.report import render_results_page
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_results_page_is_up_to_date_with_the_results_files():
    page = (ROOT / "book" / "results.md").read_text()
    assert page == render_results_page(), "run: python -m attncourse report"


def _res(profile="full", base=(0.4, 0.6, 0.5), se=(0.7, 0.8, 0.75), params=(1000, 1100)):
    def arm(vals, p):
        import statistics
        return {"mean_test_acc": statistics.fmean(vals), "std_test_acc": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                "params": p, "flops": 2e6, "runs": [{"final_test_acc": v} for v in vals]}
    return {"experiment": "demo", "description": "d", "module": "02_senet", "task": "channel_cue_digits",
            "profile": profile, "n_train": 10, "n_test": 5, "epochs": 2, "batch_size": 4, "seeds": [0, 1, 2],
            "device": "cpu (x86_64, 2 threads)", "torch": "2.x", "git_commit": "abc123",
            "arms": {"baseline": arm(base, params[0]), "se": arm(se, params[1])}}


def test_results_page_tables_full_runs_with_their_effect(tmp_path):
    (tmp_path / "demo.json").write_text(json.dumps(_res()))
    page = render_results_page(tmp_path, tmp_path)
    assert "cpu (x86_64, 2 threads)" in page and "full profile" in page
    assert "| baseline | 50.0 ± 10.0 | 40.0, 60.0, 50.0 |" in page
    assert "| se | 75.0 ± 5.0 | 70.0, 80.0, 75.0 | +25.0 | 2.5 | **yes** | 1,100 | +10.0 % |" in page
    assert "No results" in render_results_page(tmp_path / "empty_nonexistent", tmp_path / "none")
    (tmp_path / "demo.json").write_text(json.dumps(_res(se=(0.1, 0.2, 0.15))))   # worse by 3.5 spreads
    assert "| -35.0 | -3.5 | no — a clear loss |" in render_results_page(tmp_path, tmp_path)


def test_reduced_profile_runs_are_not_tabled_as_evidence(tmp_path):
    (tmp_path / "demo.cpu.json").write_text(json.dumps(_res("cpu")))
    page = render_results_page(tmp_path, tmp_path)
    assert "| se |" not in page and "Not yet recorded at the full profile" in page
    assert "`cbam_order`" in page  # every registered experiment without a full run is listed


def test_effects_and_verdicts_follow_the_two_spread_rule():
    rows = {r["arm"]: r for r in effects(_res())}
    assert rows["se"]["delta"] == pytest.approx(0.25) and rows["se"]["spread"] == pytest.approx(0.1)
    assert rows["se"]["clears"] and not rows["baseline"]["clears"]
    assert rows["se"]["extra_params"] == pytest.approx(0.1)
    assert "clear win" in verdict(_res(), "se") and "+25.0 points" in verdict(_res(), "se")
    close = _res(se=(0.55, 0.65, 0.6))  # +10 points, spread 10: within 2 spreads
    assert not effects(close)[1]["clears"] and "not a clear win" in verdict(close, "se")
    worse = _res(se=(0.1, 0.2, 0.15))           # far below, beyond 2 spreads
    assert "a clear loss" in verdict(worse, "se") and "no gain" not in verdict(worse, "se")
    assert effects(worse)[1]["clear_loss"] and not effects(worse)[1]["clears"] and not effects(worse)[0]["clear_loss"]
    slightly = _res(se=(0.4, 0.5, 0.45))         # below, but within 2 spreads
    assert "no gain" in verdict(slightly, "se") and "clear" not in verdict(slightly, "se")
    assert not effects(slightly)[1]["clear_loss"] and not effects(_res())[1]["clear_loss"]
    one_seed = _res(base=(0.5,), se=(0.9,))
    assert not effects(one_seed)[1]["clears"] and "one seed" in verdict(one_seed, "se")
    with pytest.raises(ValueError, match="no arm"):
        verdict(_res(), "cbam")


def test_findings_state_each_arm_from_the_recorded_run(tmp_path, monkeypatch):
    from attncourse.experiments import findings
    res = _res()
    res["experiment"] = "mixed_compare"
    (tmp_path / "mixed_compare.smoke.json").write_text(json.dumps(res))
    monkeypatch.setenv("ATTNCOURSE_RESULTS", str(tmp_path))
    lines = findings("mixed_compare", profile="smoke")
    assert lines == [verdict(res, "se")] and "clear win" in lines[0]
    lines = findings("mixed_compare", ["cbam", "se"], profile="smoke")   # cbam is planned but not in this run
    assert "not in the recorded mixed_compare run" in lines[0] and lines[1] == verdict(res, "se")
    assert "baseline reaches" in findings("mixed_compare", ["baseline"], baseline="se", profile="smoke")[0]
    with pytest.raises(ValueError, match="no arm"):
        findings("mixed_compare", ["no_such_arm"], profile="smoke")
    with pytest.raises(ValueError, match="no baseline arm"):
        findings("mixed_compare", baseline="cbam", profile="smoke")
    assert "no cpu-profile run is recorded" in findings("mixed_compare", profile="cpu")[0]


def test_results_page_tables_shift_evaluations_with_their_module(tmp_path):
    (tmp_path / "demo.json").write_text(json.dumps(_res()))
    shift = {"evaluation": "clutter_shift", "description": "tested with more clutter", "module": "02_senet",
             "vary": "n_clutter", "trained_at": 6, "levels": [6, 24], "n_test": 100, "test_seed": 1,
             "profile": "full", "seeds": [0, 1, 2], "device": "cpu (x86_64, 2 threads)", "torch": "2.x",
             "git_commit": "abc123", "arms": {
                 "baseline": {"source": ["mixed_compare", "baseline"], "params": 100,
                              "accuracy": {"6": [0.9, 0.92, 0.91], "24": [0.40, 0.42, 0.41]}},
                 "spatial_only": {"source": ["cbam_order", "spatial_only"], "params": 101,
                                  "accuracy": {"6": [0.9, 0.91, 0.92], "24": [0.50, 0.51, 0.52]}}}}
    (tmp_path / "shifts").mkdir()
    (tmp_path / "shifts" / "clutter_shift.json").write_text(json.dumps(shift))
    page = render_results_page(tmp_path, tmp_path)
    assert "### Shift evaluation `clutter_shift`" in page
    assert page.index("## Module 02_senet") < page.index("### Shift evaluation `clutter_shift`")
    assert "| spatial_only | cbam_order/spatial_only | 91.0 ± 1.0 | 51.0 ± 1.0 | +10.0 | 10.0 | **yes** |" in page
    assert "| baseline | mixed_compare/baseline | 91.0 ± 1.0 | 41.0 ± 1.0 |  |  |  |" in page
    shift["profile"] = "cpu"
    (tmp_path / "shifts" / "clutter_shift.json").write_text(json.dumps(shift))
    assert "clutter_shift" not in render_results_page(tmp_path, tmp_path)
