"""The book's results page, written from ``results/*.json`` (``python -m attncourse report``).

Every number on the page comes from a results file; the page names each file's device, profile, seeds
and git commit. ``tests/test_report.py`` fails when the committed page is out of date with the files.
"""
from __future__ import annotations

import json
from pathlib import Path

from .experiments.recorded import results_dir

__all__ = ["render_results_page"]

HEADER = """# Results

Every table on this page is written by `python -m attncourse report` from the JSON files in `results/`, which
the experiment runs write (`python -m attncourse run NAME --profile PROFILE`). Each table says on which device
and with which profile its numbers were measured. **`cpu` profile** runs are reduced runs (a few thousand
images, a few epochs) made on a 2-core CPU without a GPU; they are not the `full` runs the experiments are sized
for, and short training can leave every arm near chance. Accuracy is the final-epoch test accuracy, mean ± sample
standard deviation over seeds.
"""


def _experiment_table(res: dict, name: str) -> list[str]:
    lines = [f"## `{res['experiment']}` — {res['profile']} profile", "",
             res.get("description", "").strip(), "",
             f"Task `{res['task']}`, {res['n_train']} training / {res['n_test']} test images, {res['epochs']} epochs, "
             f"batch {res['batch_size']}, seeds {res['seeds']}. Device: {res['device']}; torch {res['torch']}; "
             f"commit `{res['git_commit'][:12]}`; file `results/{name}`.", "",
             "| arm | test accuracy (%) | per seed (%) | params | FLOPs / image |", "|---|---|---|---|---|"]
    for arm, a in res["arms"].items():
        per_seed = ", ".join(f"{100 * r['final_test_acc']:.1f}" for r in a["runs"])
        lines.append(f"| {arm} | {100 * a['mean_test_acc']:.1f} ± {100 * a['std_test_acc']:.1f} | {per_seed} | "
                     f"{a['params']:,} | {a['flops'] / 1e6:.1f} M |")
    return lines + [""]


def _benchmark_section(path: Path) -> list[str]:
    text = path.read_text().strip()
    body = text.split("\n", 1)[1] if text.startswith("# ") else text  # drop the file's own H1 title
    return [f"## Benchmark: `results/{path.name}`", "", body.replace("\n## ", "\n### ").replace("\n# ", "\n### "), ""]


def render_results_page(folder: str | Path | None = None) -> str:
    """The markdown of ``book/results.md`` for the results in ``folder`` (default ``results/``)."""
    folder = Path(folder) if folder is not None else results_dir()
    lines = [HEADER]
    experiments, benchmarks = [], []
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "arms" in data and "experiment" in data:
            experiments.append((path.name, data))
    for path in sorted(folder.glob("*.md")):
        benchmarks.append(path)
    if not experiments and not benchmarks:
        lines.append("No results have been recorded yet.\n")
    by_module: dict[str, list] = {}
    for name, res in experiments:
        by_module.setdefault(res.get("module") or "other", []).append((name, res))
    for module in sorted(by_module):
        lines += [f"## Module {module}", ""]
        for name, res in by_module[module]:
            lines += ["#" + l if l.startswith("## ") else l for l in _experiment_table(res, name)]
    for path in benchmarks:
        lines += _benchmark_section(path)
    return "\n".join(lines).rstrip() + "\n"
