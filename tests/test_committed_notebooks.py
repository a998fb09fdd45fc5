"""What the committed notebooks show is what a learner on the website sees.

The website renders the notebooks as committed, so they are executed the way the site should show them:

- the course's results come from the recorded full-profile runs, and their training curves show every seed
  (``ac.plot_recorded_curves``), never the first seed alone;
- every live training run is executed at the ``demo`` budget (the default when no profile is set), and prints
  its budget and its measured time with ``ac.demo_note``;
- no output says ``smoke``: that profile is for CI, which executes the notebooks without writing them back.
"""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
LIVE_FIT = re.compile(r"^(?!\s*#).*\bac\.fit\(", re.M)


def src(cell) -> str:
    return "".join(cell["source"])


def output_text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        parts.append("".join(out.get("text", "")))
        for mime, value in out.get("data", {}).items():
            if mime.startswith("text/"):
                parts.append("".join(value) if isinstance(value, list) else str(value))
    return "\n".join(parts)


def code_cells(path):
    return [c for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]


def smoke_outputs(path) -> list[str]:
    return [output_text(c)[:120] for c in code_cells(path) if re.search(r"\bsmoke\b", output_text(c), re.I)]


def undocumented_live_runs(path) -> list[str]:
    """Code cells that train live (``ac.fit`` outside an ``else:`` fallback) and whose committed output does not
    carry the demo note at the ``demo`` budget."""
    bad = []
    for c in code_cells(path):
        code = src(c)
        if not LIVE_FIT.search(code) or re.search(r"^\s*else:", code, re.M) or "def " in code:
            continue  # a fallback for an unrecorded experiment, or a helper definition
        if "Live run at the `demo` budget" not in output_text(c):
            bad.append(code.splitlines()[0])
    return bad


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_committed_output_was_made_in_the_smoke_profile(path):
    assert not smoke_outputs(path), f"{path.name}: outputs from a smoke-profile execution: {smoke_outputs(path)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_live_run_is_executed_at_the_demo_budget_and_says_so(path):
    assert not undocumented_live_runs(path), (f"{path.name}: live training cells without a demo-budget note in "
                                              f"their outputs: {undocumented_live_runs(path)}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_recorded_curves_show_every_seed(path):
    for c in code_cells(path):
        assert '["runs"][0]["history"]' not in src(c), f"{path.name}: a recorded curve of the first seed alone"


def test_the_checks_catch_each_defect(tmp_path):
    def notebook(code: str, output: str) -> Path:
        p = tmp_path / "nb.ipynb"
        p.write_text(json.dumps({"cells": [{"cell_type": "code", "source": [code], "metadata": {},
                                            "outputs": [{"output_type": "stream", "name": "stdout", "text": [output]}]}]}))
        return p

    assert smoke_outputs(notebook("print(profile.name)", "smoke cpu\n"))
    assert not smoke_outputs(notebook("print(profile.name)", "demo cpu\n"))
    assert undocumented_live_runs(notebook("h = ac.fit(model, task)", "History(1 epochs)\n"))
    assert not undocumented_live_runs(notebook("h = ac.fit(model, task)\nprint(ac.demo_note(profile, h, 10))",
                                               "Live run at the `demo` budget: 10 training images\n"))
    assert not undocumented_live_runs(notebook("if r:\n    pass\nelse:\n    h = ac.fit(m, t)", ""))
