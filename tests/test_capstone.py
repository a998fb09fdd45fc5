"""The capstone: one block per family on one task, its table, its Pareto front and the sentence computed from it."""
from __future__ import annotations

import math

import pytest

from attncourse.blocks import get_block_spec
from attncourse.config import get_profile
from attncourse.experiments import CAPSTONE_ARMS, capstone_table, get_experiment, pareto_front, pareto_sentence
from attncourse.experiments.runner import Job


def test_one_block_per_family_and_at_least_fifteen_blocks():
    exp = get_experiment("capstone_blocks")
    assert exp.task == "cluttered_digits" and exp.module == "09_position_fusion"
    blocks = [b.attention for a, b in exp.arms.items() if a != "baseline"]
    assert len(blocks) >= 15 and len(set(blocks)) == len(blocks)
    families = {get_block_spec(b).family for b in blocks}
    assert {"channel", "second_order", "gather_excite", "mixed", "position", "nonlocal", "dual", "branch"} <= families


@pytest.mark.parametrize("arm,source", [("baseline", "mixed_compare"), ("se", "mixed_compare"), ("cbam", "mixed_compare"),
                                        ("bam", "mixed_compare"), ("scse", "mixed_compare"),
                                        ("eca", "senet_cluttered"), ("sa", "sa_cluttered")])
def test_arms_shared_with_earlier_modules_are_the_same_runs(arm, source):
    full = get_profile("full")
    assert Job("capstone_blocks", arm, 2, full).id == Job(source, arm, 2, full).id


def _arm(values, params, flops):
    runs = [{"seed": s, "final_test_acc": v} for s, v in enumerate(values)]
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
    return {"mean_test_acc": mean, "std_test_acc": std, "params": params, "flops": flops, "runs": runs}


def _results(arms):
    return {"experiment": "capstone_blocks", "metric": "accuracy", "n_test": 2000, "arms": arms}


BASE = [0.80, 0.81, 0.82]


def _fixture():
    return _results({
        "baseline": _arm(BASE, 1000, 10),
        "se": _arm([0.85, 0.86, 0.87], 1100, 10),       # a clear gain, cheap
        "sk": _arm([0.87, 0.88, 0.89], 3000, 30),       # a larger clear gain, expensive
        "gc": _arm([0.84, 0.78, 0.79], 1050, 11),       # inconclusive, below the baseline's mean
        "nonlocal": _arm([0.70, 0.71, 0.72], 1200, 20),  # a clear loss, dominated
    })


def test_the_table_has_the_interval_label_costs_and_family_of_every_arm():
    rows = capstone_table(_fixture(), step_ms={"se": 12.0})
    by = {r["arm"]: r for r in rows}
    assert [r["arm"] for r in rows] == ["baseline", "se", "sk", "gc", "nonlocal"]
    assert by["baseline"]["label"] is None and by["baseline"]["family"] == "baseline"
    assert by["se"]["label"] == "clear gain" and by["se"]["ci_low"] > 0 and by["se"]["family"] == "channel"
    assert by["nonlocal"]["label"] == "clear loss" and by["gc"]["label"] == "inconclusive"
    assert by["sk"]["params"] == 3000 and by["sk"]["flops"] == 30 and by["sk"]["family"] == "branch"
    assert by["se"]["step_ms"] == 12.0 and math.isnan(by["sk"]["step_ms"])


def test_the_pareto_front_keeps_exactly_the_undominated_arms():
    rows = capstone_table(_fixture())
    assert pareto_front(rows, "params") == ["baseline", "se", "sk"]
    assert pareto_front(rows, "flops") == ["se", "sk"]         # SE: the baseline's FLOPs, more accurate
    # a tie in cost: the more accurate one dominates; a tie in both keeps both
    rows2 = [{"arm": "a", "params": 1, "mean": 0.5}, {"arm": "b", "params": 1, "mean": 0.6},
             {"arm": "c", "params": 2, "mean": 0.6}, {"arm": "d", "params": 2, "mean": 0.7},
             {"arm": "e", "params": 2, "mean": 0.7}, {"arm": "f", "params": math.nan, "mean": 0.99}]
    assert pareto_front(rows2, "params") == ["b", "d", "e"]
    assert pareto_front(capstone_table(_fixture()), "step_ms") == []     # no times shipped: nothing to rank
    with pytest.raises(ValueError, match="cost must be one of"):
        pareto_front(rows, "latency")


def test_the_sentence_follows_the_labels_and_the_front():
    text = pareto_sentence(capstone_table(_fixture()), "params")
    assert "2 of 4 blocks are clear gains" in text and "sk (+7.0 [" in text and "se (+5.0 [" in text
    assert text.index("sk (") < text.index("se (")                      # largest gain first
    assert "1 is a clear loss (nonlocal), 1 inconclusive" in text
    assert "Pareto front" in text and "is baseline, se, sk." in text
    assert "cheapest clear gain is se, at 1,100 parameters (+10.0 % against the baseline)" in text
    big = [{**r, "params": 80 * r["params"] + 3} for r in capstone_table(_fixture())]
    assert "at 88,003 parameters" in pareto_sentence(big, "params")  # not 8.8e+04
    # no gain at all: the sentence says so and does not call the front a gain
    flat = _results({"baseline": _arm(BASE, 1000, 10), "gc": _arm([0.84, 0.78, 0.79], 1050, 11)})
    text = pareto_sentence(capstone_table(flat), "params")
    assert "none of the 1 blocks is a clear gain" in text and "within the noise" in text and "beats" not in text


def test_the_pareto_plot_draws_every_block_the_front_and_an_extra_star():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import attncourse as ac

    rows = capstone_table(_fixture())
    fig = ac.plot_pareto(rows, "params", extra=[{"arm": "my_block", "delta": 0.01, "params": 1500,
                                                  "note": "your block (demo budget)"}])
    ax = fig.axes[0]
    labels = {t.get_text() for t in ax.texts}
    assert {"baseline", "se", "sk", "gc", "nonlocal", "my_block"} <= labels
    assert ax.get_xscale() == "symlog" and "your block (demo budget)" in [t.get_text() for t in ax.get_legend().texts]
    assert "added to the baseline's 1,000" in ax.get_xlabel()
    step = [l for l in ax.lines if l.get_label() == "Pareto front (mean accuracy)"]
    assert len(step) == 1 and list(step[0].get_xdata()) == [0, 100, 2000]    # the cost each block adds
    star = [c for c in ax.collections if c.get_label() == "your block (demo budget)"]
    assert star[0].get_offsets().tolist() == [[500, 1.0]]
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])   # no label hides another
    plt.close(fig)
    with pytest.raises(ValueError, match="baseline's row"):
        ac.plot_pareto([r for r in rows if r["arm"] != "baseline"], "params")
    with pytest.raises(ValueError, match="no row has a 'step_ms' value"):
        ac.plot_pareto(rows, "step_ms")


def test_step_times_come_from_a_quiet_shipped_benchmark_only(monkeypatch, tmp_path):
    import json

    from attncourse import benchmark_tables
    from attncourse.experiments import capstone_step_ms

    monkeypatch.setattr(benchmark_tables, "benchmark_tables_dir", lambda: tmp_path)
    assert capstone_step_ms() == {}
    data = {"name": "capstone_cost", "device": "cpu", "env": {"machine": "loaded"}, "markdown": "",
            "rows": [{"arm": "baseline", "median_ms": 10.0}, {"arm": "se", "median_ms": 11.0}]}
    (tmp_path / "capstone_cost_cpu.json").write_text(json.dumps(data))
    assert capstone_step_ms() == {}
    data["env"]["machine"] = "quiet"
    (tmp_path / "capstone_cost_cpu.json").write_text(json.dumps(data))
    assert capstone_step_ms() == {"baseline": 10.0, "se": 11.0}


def test_the_results_page_tables_the_capstone_with_its_sentences_and_figure(tmp_path):
    import json

    from attncourse.report import CAPSTONE_FIGURE, render_results_page, write_capstone_figure

    res = {**_fixture(), "profile": "full", "module": "09_position_fusion", "seeds": [0, 1, 2], "epochs": 15,
           "device": "cpu (x86_64, 1 threads)", "torch": "2.x", "git_commit": "abc123def456", "task": "cluttered_digits",
           "description": "every block", "n_train": 8000, "n_test": 2000, "batch_size": 128}
    (tmp_path / "capstone_blocks.json").write_text(json.dumps(res))
    page = render_results_page(tmp_path, tmp_path / "no_benchmarks")
    assert "### Every block on one table (the capstone)" in page and f"]({CAPSTONE_FIGURE})" in page
    assert "| se | channel | 3 | 86.0 | +5.0 [" in page and "| clear gain | 1,100 |" in page
    assert "On accuracy against parameters, the Pareto front" in page
    assert "On accuracy against forward FLOPs per image, the Pareto front" in page
    from attncourse.experiments import capstone_step_ms

    step = capstone_step_ms()                    # the quiet benchmark the package ships, when it ships one
    if step:
        assert f"at {step['se']:,.4g} ms training-step time" in page and f"| {step['se']:.0f} ms |" in page
    else:
        assert "training-step time" not in page.split("| arm | family")[0]
    assert write_capstone_figure(tmp_path, tmp_path) == tmp_path / CAPSTONE_FIGURE
    assert (tmp_path / CAPSTONE_FIGURE).stat().st_size > 10_000
    from PIL import Image

    from attncourse.report import results_stamp

    assert Image.open(tmp_path / CAPSTONE_FIGURE).text["Source"] == f"attncourse capstone_blocks {results_stamp(res)}"
    assert write_capstone_figure(tmp_path, tmp_path / "empty") is None


def test_a_contract_keeping_learner_block_is_trained_and_placed_and_a_broken_one_is_not(capsys):
    import torch

    from attncourse.blocks import BLOCKS
    from attncourse.blocks._common import check_input
    from attncourse import place_block
    from test_exercises_position_fusion import RowGate

    class NoGradient(RowGate):
        def forward(self, x):
            check_input(self, x, self.channels)
            return x * torch.sigmoid(self.conv(x.mean(dim=3))).detach()[..., None]

    assert place_block(NoGradient, "smoke") is None
    assert "nothing trained" in capsys.readouterr().out
    try:
        row = place_block(RowGate, "smoke", device="cpu", progress=False)
        assert row["arm"].startswith("learner_block") and BLOCKS[row["arm"]].factory is RowGate
        assert row["delta"] == pytest.approx(row["accuracy"] - row["baseline_accuracy"])
        assert row["params"] > 77_754 and row["flops"] > 0 and "smoke budget" in row["note"]
        assert set(row["histories"]) == {"baseline", row["arm"]} and row["n_train"] == get_profile("smoke").n_train
        again = place_block(row["arm"], get_profile("smoke"), device="cpu", progress=False)   # by name; a Profile
        assert again["arm"] == row["arm"] and again["delta"] == pytest.approx(row["delta"])
    finally:
        for key in [k for k, s in BLOCKS.items() if s.factory in (RowGate, NoGradient)]:
            del BLOCKS[key]
