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
                "params": p, "flops": 2e6, "runs": [{"seed": i, "final_test_acc": v} for i, v in enumerate(vals)]}
    return {"experiment": "demo", "description": "d", "module": "02_senet", "task": "channel_cue_digits",
            "profile": profile, "n_train": 10, "n_test": 2000, "epochs": 2, "batch_size": 4, "seeds": [0, 1, 2],
            "device": "cpu (x86_64, 2 threads)", "torch": "2.x", "git_commit": "abc123",
            "arms": {"baseline": arm(base, params[0]), "se": arm(se, params[1])}}


def test_results_page_tables_full_runs_with_their_effect(tmp_path):
    (tmp_path / "demo.json").write_text(json.dumps(_res(base=(0.4, 0.6, 0.5), se=(0.7, 0.86, 0.77))))
    page = render_results_page(tmp_path, tmp_path)
    assert "cpu (x86_64, 2 threads)" in page and "full profile" in page and "methods.md" in page
    assert "| baseline | 50.0 ± 10.0 |  |  |  | baseline |  |" in page
    row = next(r for r in effects(_res(base=(0.4, 0.6, 0.5), se=(0.7, 0.86, 0.77))) if r["arm"] == "se")
    assert (f"| se | 77.7 ± 8.0 |  | +27.7 | [{100 * row['ci_low']:+.1f}, {100 * row['ci_high']:+.1f}] | **clear gain** | "
            "+30.0, +26.0, +27.0 | 1,100 | +10.0 % |") in page
    assert "binomial bound" in page  # no per-item outcomes: the page says which estimate it used
    assert "No results" in render_results_page(tmp_path / "empty_nonexistent", tmp_path / "none")
    (tmp_path / "demo.json").write_text(json.dumps(_res(se=(0.1, 0.25, 0.12))))
    assert "| **clear loss** |" in render_results_page(tmp_path, tmp_path)
    for banned in ("spread", "clears"):
        assert banned not in render_results_page(tmp_path, tmp_path)


def test_reduced_profile_runs_are_not_tabled_as_evidence(tmp_path):
    (tmp_path / "demo.cpu.json").write_text(json.dumps(_res("cpu")))
    page = render_results_page(tmp_path, tmp_path)
    assert "| se |" not in page and "Not yet recorded at the full profile" in page
    assert "`cbam_order`" in page  # every registered experiment without a full run is listed


def test_effects_and_verdicts_carry_the_interval_and_one_of_three_labels():
    rows = {r["arm"]: r for r in effects(_res(se=(0.7, 0.86, 0.77)))}
    se = rows["se"]
    assert se["delta"] == pytest.approx((0.3 + 0.26 + 0.27) / 3) and se["per_seed"] == pytest.approx([0.3, 0.26, 0.27])
    assert se["ci_low"] < se["delta"] < se["ci_high"] and se["ci_low"] > 0 and se["label"] == "clear gain"
    assert rows["baseline"]["label"] is None and se["extra_params"] == pytest.approx(0.1)
    assert se["item_source"] == "binomial bound"  # runs without per-item outcomes
    text = verdict(_res(se=(0.7, 0.86, 0.77)), "se")
    assert "clear gain" in text and "+27.7 points" in text and "95 % interval" in text and "+30.0, +26.0, +27.0" in text
    worse = _res(se=(0.1, 0.25, 0.12))
    assert effects(worse)[1]["label"] == "clear loss" and "clear loss" in verdict(worse, "se")
    noisy = _res(base=(0.4, 0.6, 0.5), se=(0.62, 0.45, 0.58))  # per-seed +22, −15, +8: the interval spans 0
    assert effects(noisy)[1]["label"] == "inconclusive" and "inconclusive" in verdict(noisy, "se")
    one_seed = _res(base=(0.5,), se=(0.9,))
    assert effects(one_seed)[1]["label"] == "inconclusive" and "one seed" in verdict(one_seed, "se")
    with pytest.raises(ValueError, match="no arm"):
        verdict(_res(), "cbam")


def test_the_test_set_term_widens_the_interval():
    """The same per-seed differences on a smaller test set give a wider interval (the binomial bound grows)."""
    big, small = _res(se=(0.7, 0.86, 0.77)), _res(se=(0.7, 0.86, 0.77))
    small["n_test"] = 20
    wb, ws = (next(r for r in effects(x) if r["arm"] == "se") for x in (big, small))
    assert ws["ci_high"] - ws["ci_low"] > wb["ci_high"] - wb["ci_low"]


def test_findings_state_each_arm_from_the_recorded_run(tmp_path, monkeypatch):
    from attncourse.experiments import findings
    res = _res()
    res["experiment"] = "mixed_compare"
    (tmp_path / "mixed_compare.smoke.json").write_text(json.dumps(res))
    monkeypatch.setenv("ATTNCOURSE_RESULTS", str(tmp_path))
    lines = findings("mixed_compare", profile="smoke")
    assert lines == [verdict(res, "se")] and "clear gain" in lines[0]
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
             "git_commit": "abc123", "metric": "accuracy", "arms": {
                 "baseline": {"source": ["mixed_compare", "baseline"], "params": 100,
                              "values": {"6": [0.9, 0.92, 0.91], "24": [0.40, 0.42, 0.41]}},
                 "spatial_only": {"source": ["cbam_order", "spatial_only"], "params": 101,
                                  "values": {"6": [0.9, 0.91, 0.92], "24": [0.50, 0.51, 0.52]}}}}
    (tmp_path / "shifts").mkdir()
    (tmp_path / "shifts" / "clutter_shift.json").write_text(json.dumps(shift))
    page = render_results_page(tmp_path, tmp_path)
    assert "### Shift evaluation `clutter_shift`" in page
    assert page.index("## Module 02_senet") < page.index("### Shift evaluation `clutter_shift`")
    # +10 points on every seed, but on 100 test images: the test-set term keeps it inconclusive
    assert "| spatial_only | cbam_order/spatial_only | 91.0 ± 1.0 | 51.0 ± 1.0 | +10.0 | [" in page
    assert "| inconclusive | +10.0, +9.0, +11.0 |" in page
    assert "| baseline | mixed_compare/baseline | 91.0 ± 1.0 | 41.0 ± 1.0 |  |  | baseline |  |" in page
    shift["profile"] = "cpu"
    (tmp_path / "shifts" / "clutter_shift.json").write_text(json.dumps(shift))
    assert "clutter_shift" not in render_results_page(tmp_path, tmp_path)


def test_the_committed_capstone_figure_is_drawn_from_the_recorded_results():
    """book/capstone_pareto.png exists exactly when capstone_blocks is recorded, and carries its results' stamp."""
    from PIL import Image

    from attncourse import load_results
    from attncourse.report import CAPSTONE_FIGURE, results_stamp

    res, figure = load_results("capstone_blocks"), ROOT / "book" / CAPSTONE_FIGURE
    if res is None:
        assert not figure.exists(), f"{figure} is committed but capstone_blocks is not recorded"
        return
    assert figure.exists(), "capstone_blocks is recorded: run `python -m attncourse report` to draw the figure"
    assert Image.open(figure).text.get("Source") == f"attncourse capstone_blocks {results_stamp(res)}", \
        "the figure was drawn from other results: run `python -m attncourse report`"


def test_the_header_says_when_arms_hold_different_numbers_of_seeds():
    from attncourse.report import _seeds_per_arm

    even = {"arms": {"baseline": {"runs": [{}] * 3}, "se": {"runs": [{}] * 3}}}
    uneven = {"arms": {"baseline": {"runs": [{}] * 5}, "se": {"runs": [{}] * 3}, "sk": {"runs": [{}] * 4}}}
    assert _seeds_per_arm(even) == "" and _seeds_per_arm(uneven) == " (3–5 per arm)"


def test_segmentation_results_get_one_size_sentence_per_arm_when_every_run_scored_sizes():
    from attncourse.report import _size_lines

    def run(seed, large, small=None):
        final = {"scene_miou_large": large} if small is None else {"scene_miou_large": large, "scene_miou_small": small}
        return {"seed": seed, "history": {"test_metrics": [final]}}

    res = {"metric": "miou", "arms": {"add": {"runs": [run(0, 0.9, 0.7), run(1, 0.9, 0.7)]},
                                      "aff": {"runs": [run(0, 0.95, 0.5), run(1, 0.94, 0.55)]}}}
    lines = _size_lines(res)
    assert len(lines) == 2 and lines[1].startswith("- By digit size, `aff` against `add`")
    assert _size_lines({**res, "metric": "accuracy"}) == []
    older = {"metric": "miou", "arms": {**res["arms"], "cam": {"runs": [run(0, 0.9), run(1, 0.9)]}}}
    assert _size_lines(older) == []                    # a run recorded before the sizes were scored: no sentence
