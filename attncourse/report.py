"""The book's results page, written from the recorded results (``python -m attncourse report``).

Every number on the page comes from a results file; the page names each file's device, profile, seeds
and git commit. Only ``full``-profile runs are the course's evidence and only they are tabled (with the shift
evaluations of ``recorded/shifts/``, which test such runs on harder variants of their task); experiments
recorded at a reduced profile alone are listed as still to run. ``tests/test_report.py`` fails when the
committed page is out of date with the files.
"""
from __future__ import annotations

import json
from pathlib import Path

from .experiments.core import effects, metric_label
from .benchmark_tables import benchmark_tables_dir
from .experiments.recorded import results_dir

__all__ = ["render_results_page", "write_capstone_figure", "results_stamp", "CAPSTONE_FIGURE"]

#: the capstone's Pareto plot, beside the results page (``book/``), written by :func:`write_capstone_figure`
CAPSTONE_FIGURE = "capstone_pareto.png"

HEADER = """# Results

Every table on this page is written by `python -m attncourse report` from the results that
`python -m attncourse run-all --profile full` records in `attncourse/recorded/` (they ship with the package). Each
table says on which device and with which profile its numbers were measured. Each table's metric is the final-epoch
test value of its task's primary metric (accuracy; mIoU for segmentation; mAP for re-identification), mean ± sample
standard deviation over seeds, and the mean final *training* accuracy beside it. *Δ* is the difference to the
experiment's baseline (its first arm) in points, seed by seed (*per-seed Δ*) and on average, with its **95 % interval**
over seeds *and* the finite, paired test set; the label is a **clear gain** when the interval lies above 0, a **clear
loss** when it lies below 0, and **inconclusive** otherwise (always with one seed). [How to read a result](methods.md)
explains the interval, the labels and what *test-set noise* means. *+params* is the parameter cost over the baseline.
"""


def _effect_cells(row: dict) -> list[str]:
    """Δ, its interval, the label and the per-seed differences of an :func:`effects` row (empty for the baseline)."""
    if row["arm"] == row["baseline"]:
        return ["", "", "baseline", ""]
    per_seed = ", ".join(f"{100 * d:+.1f}" for d in row["per_seed"])
    interval = "— (1 seed)" if row["n"] < 2 else f"[{100 * row['ci_low']:+.1f}, {100 * row['ci_high']:+.1f}]"
    label = f"**{row['label']}**" if row["label"] != "inconclusive" else row["label"]
    return [f"{100 * row['delta']:+.1f}", interval, label, per_seed]


def _metric_name(res: dict) -> str:
    return metric_label(res).strip() or "accuracy"


def _seeds_per_arm(res: dict) -> str:
    """``" (3–5 per arm)"`` when the arms hold different numbers of seeds, else ``""``."""
    counts = sorted({len(arm["runs"]) for arm in res["arms"].values()})
    return f" ({counts[0]}–{counts[-1]} per arm)" if len(counts) > 1 else ""


def _experiment_table(res: dict, name: str) -> list[str]:
    settings = res.get("settings") or {}
    speed = (f" Training: bf16 autocast {settings.get('amp_bf16')}, channels_last {settings.get('channels_last')}."
             if settings else "")
    lines = [f"## `{res['experiment']}`", "",
             res.get("description", "").strip(), "",
             f"Task `{res['task']}`, {res['n_train']} training / {res['n_test']} test images, {res['epochs']} epochs, "
             f"batch {res['batch_size']}, seeds {res['seeds']}{_seeds_per_arm(res)}, {res['profile']} profile. Device: {res['device']}; "
             f"torch {res['torch']}; commit `{res['git_commit'][:12]}`; file `attncourse/recorded/{name}`.{speed}", "",
             f"| arm | test {_metric_name(res)} (%) | train acc. (%) | Δ (points) | 95 % interval | label | "
             "per-seed Δ | params | +params | FLOPs / input |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in effects(res):
        a = res["arms"][row["arm"]]
        extra = "" if row["arm"] == row["baseline"] else f"{100 * row['extra_params']:+.1f} %"
        acc = f"{100 * row['mean']:.1f} ± {100 * row['std']:.1f}" if len(a["runs"]) > 1 else f"{100 * row['mean']:.1f} (1 seed)"
        train = "" if row["train_acc"] is None else f"{100 * row['train_acc']:.1f}"
        lines.append(f"| {row['arm']} | {acc} | {train} | " + " | ".join(_effect_cells(row))
                     + f" | {a['params']:,} | {extra} | {a['flops'] / 1e6:.1f} M |")
    notes = sorted({r["item_source"] for r in effects(res) if r["item_source"] not in (None, "paired")})
    if notes:
        lines += ["", "Test-set noise: " + "; ".join(_SOURCE_NOTES[n] for n in notes)]
    return lines + _size_lines(res) + [""]


def _size_lines(res: dict) -> list[str]:
    """For a segmentation result whose runs all scored IoU by digit size: one sentence per arm against the first
    arm (:func:`~attncourse.experiments.danet.size_sentence`); nothing otherwise."""
    from .experiments.danet import size_sentence

    def scored(run):
        final = (run.get("history", {}).get("test_metrics") or [{}])[-1]
        return "scene_miou_large" in final and "scene_miou_small" in final

    arms = list(res["arms"])
    if res.get("metric") != "miou" or not all(scored(r) for a in res["arms"].values() for r in a["runs"]):
        return []
    return ["", *(f"- {size_sentence(res, arm, arms[0], f'`{arm}`', f'`{arms[0]}`')}" for arm in arms[1:])]


_SOURCE_NOTES = {
    "binomial bound": "some arms have no per-item test outcomes yet; their intervals use the unpaired binomial bound "
                      "on the test-set term (conservative: wider than the paired estimate).",
    "none": "some intervals have no test-set term (no per-item outcomes and no binomial bound for this metric): "
            "they are too narrow by that term.",
}


def _shift_table(shift: dict, name: str) -> list[str]:
    """A shift evaluation: the metric per test level, and each arm's effect at the last level."""
    from .experiments.shift import shift_results

    levels, top = shift["levels"], shift["levels"][-1]
    by_level = {n: shift_results(shift, n) for n in levels}
    top_effects = {r["arm"]: r for r in effects(by_level[top])}
    lines = [f"## Shift evaluation `{shift['evaluation']}`", "", shift.get("description", "").strip(), "",
             f"No training: trained runs (seeds {shift['seeds']}, {shift['profile']} profile, trained with "
             f"{shift['vary']} = {shift['trained_at']}) tested on "
             + (f"the experiment's own test split ({shift['n_test']:,} test items), with {shift['vary']} changed. "
                if shift.get("test_split") == "experiment" else f"{shift['n_test']} new test images per level. ")
             + f"Metric: {shift['metric']}. "
             f"Device: {shift['device']}; torch {shift['torch']}; commit `{shift['git_commit'][:12]}`; file "
             f"`attncourse/recorded/shifts/{name}`. Δ, its 95 % interval and the label at {shift['vary']} = {top}.", "",
             "| arm | trained runs of | " + " | ".join(f"{shift['vary']} = {n} (%)" for n in levels)
             + " | Δ (points) | 95 % interval | label | per-seed Δ |",
             "|---|---|" + "---|" * len(levels) + "---|---|---|---|"]
    for arm, a in shift["arms"].items():
        accs = [by_level[n]["arms"][arm] for n in levels]
        cells = [f"{100 * x['mean_test_acc']:.1f} ± {100 * x['std_test_acc']:.1f}" if len(x["runs"]) > 1
                 else f"{100 * x['mean_test_acc']:.1f} (1 seed)" for x in accs]
        tail = _effect_cells(top_effects[arm])
        lines.append(f"| {arm} | {'/'.join(a['source'])} | " + " | ".join(cells + tail) + " |")
    return lines + [""]


def _capstone_section(res: dict) -> list[str]:
    """Every block on one table: Δ with its interval and label, parameters, FLOPs, step time; the Pareto plot and
    the sentences computed from them."""
    from .experiments.capstone import CAPSTONE_COLUMNS, capstone_cells, capstone_step_ms, capstone_table, pareto_sentence

    step = capstone_step_ms()
    rows = capstone_table(res, step)
    lines = ["### Every block on one table (the capstone)", "",
             " ".join(t for t in (pareto_sentence(rows, "params"), pareto_sentence(rows, "flops", gains=False),
                                  pareto_sentence(rows, "step_ms", gains=False)) if t), "",
             f"![Δ test accuracy against the parameters each block adds, with the Pareto front]({CAPSTONE_FIGURE})", "",
             "| " + " | ".join(CAPSTONE_COLUMNS) + " |", "|" + "---|" * len(CAPSTONE_COLUMNS)]
    lines += ["| " + " | ".join(capstone_cells(r)) + " |" for r in rows]
    lines += ["", "FLOPs: the forward pass's convolutions and matrix products (torch's FLOP counter, `ac.cost_report`); "
              "pooling, normalisation, sigmoids and element-wise products count 0, so blocks made of them and "
              "per-channel weights (SA, SRM) add no FLOPs here although they cost time.",
              "", "Step: the median training-step time (batch 128, forward and backward) of "
              "`benchmarks/capstone_cost.py`, measured on a quiet machine (`ac.benchmark_table(\"capstone_cost\")`); "
              "blank where no quiet measurement is shipped.", ""]
    return lines


def results_stamp(results: dict) -> str:
    """A fingerprint of a results dict (SHA-256 of its canonical JSON), written into the figures drawn from it, so
    a test can tell a committed figure that no longer matches the recorded results."""
    import hashlib
    import json

    return "sha256:" + hashlib.sha256(json.dumps(results, sort_keys=True).encode()).hexdigest()


def write_capstone_figure(folder: str | Path, results: str | Path | None = None) -> Path | None:
    """Draw the capstone's Pareto plot (accuracy against parameters) into ``folder/capstone_pareto.png`` when
    ``capstone_blocks`` is recorded at the full profile; returns the path, or ``None`` when it is not.

    The PNG's ``Source`` text field holds :func:`results_stamp` of the results it was drawn from."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .experiments.capstone import capstone_step_ms, capstone_table
    from .experiments.recorded import load_results
    from .viz.capstone import plot_pareto

    res = load_results("capstone_blocks", "full", results if results is not None else results_dir())
    if res is None:
        return None
    fig = plot_pareto(capstone_table(res, capstone_step_ms()), "params")
    out = Path(folder) / CAPSTONE_FIGURE
    fig.savefig(out, dpi=110, metadata={"Source": f"attncourse capstone_blocks {results_stamp(res)}"})
    plt.close(fig)
    return out


def _benchmark_section(path: Path, data: dict) -> list[str]:
    text = data["markdown"].strip()
    body = text.split("\n", 1)[1] if text.startswith("# ") else text  # drop the table's own H1 title
    title = text.split("\n", 1)[0][2:] if text.startswith("# ") else path.stem
    call = (f'ac.benchmark_table("{data["name"]}")' if data["device"] == "cpu"
            else f'ac.benchmark_table("{data["name"]}", device="{data["device"]}")')
    return [f"## Benchmark: {title}", "",
            f"From `attncourse/recorded/benchmarks/{path.name}` (`{call}`); measured with "
            f"`python benchmarks/{data['name']}.py`.", "",
            body.replace("\n## ", "\n### ").replace("\n# ", "\n### "), ""]


def render_results_page(folder: str | Path | None = None, benchmarks: str | Path | None = None) -> str:
    """The markdown of ``book/results.md``: experiments from ``folder`` (default: the recorded results), benchmark
    tables from ``benchmarks`` (default: the ones the package ships, ``attncourse/recorded/benchmarks/``)."""
    folder = Path(folder) if folder is not None else results_dir()
    benchmarks = Path(benchmarks) if benchmarks is not None else benchmark_tables_dir()
    lines = [HEADER]
    full = []
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "arms" in data and "experiment" in data and data.get("profile") == "full":
            full.append((path.name, data))
    shifts = []
    for path in sorted((folder / "shifts").glob("*.json")):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "evaluation" in data and data.get("profile") == "full":
            shifts.append((path.name, data))
    bench = []
    for path in sorted(benchmarks.glob("*.json")) if benchmarks.exists() else []:
        data = json.loads(path.read_text())
        if isinstance(data, dict) and {"name", "device", "markdown"} <= set(data):  # a recorded benchmark table
            bench.append((path, data))
    if not full and not bench:
        lines.append("No results have been recorded yet.\n")
    by_module: dict[str, list] = {}
    for name, res in full:
        by_module.setdefault(res.get("module") or "other", []).append((name, res, _experiment_table))
    for name, shift in shifts:
        by_module.setdefault(shift.get("module") or "other", []).append((name, shift, _shift_table))
    for module in sorted(by_module):
        lines += [f"## Module {module}", ""]
        for name, res, table in by_module[module]:
            lines += ["#" + l if l.startswith("## ") else l for l in table(res, name)]
            if table is _experiment_table and res["experiment"] == "capstone_blocks":
                lines += _capstone_section(res)
    from .experiments import list_experiments

    missing = sorted(set(list_experiments()) - {res["experiment"] for _, res in full})
    if missing:
        lines += ["## Not yet recorded at the full profile", "",
                  "These registered experiments have no complete full-profile run yet (reduced-profile runs are too short "
                  "to be evidence): " + ", ".join(f"`{m}`" for m in missing) + ". Record them with "
                  "`python -m attncourse run-all --only NAME --profile full`.", ""]
    for path, data in bench:
        lines += _benchmark_section(path, data)
    return "\n".join(lines).rstrip() + "\n"
