"""Student copies (``python -m attncourse release``): solutions removed, checks kept, outputs cleared.

Every course notebook is released and compared with its original: no line of reference code survives (the
distinctive lines of the ``<details>`` solution blocks, of ``solution``-tagged cells and of the package's
reference solutions that the original shows only in its solutions), every ``check`` key of the original is
still called, no output is left. One notebook, the cheapest (00), is then executed top to bottom in the
smoke profile, and its stubs score 0.
"""
from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pytest

from attncourse.__main__ import main
from attncourse.grading import release as rel
from attncourse.grading.source import find_check_calls

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _src(cell) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


def _lines(code: str) -> set[str]:
    """Distinctive code lines: comments cut, whitespace squeezed, no signature or boilerplate lines."""
    out = set()
    for line in code.splitlines():
        line = re.sub(r"\s+", " ", line.split("#")[0]).strip()
        if len(line) >= 16 and not line.startswith(("def ", "class ", "super().__init__", "import ", "from ")):
            out.add(line)
    return out


def _solution_blocks(nb: dict) -> list[str]:
    """The code the original shows as solutions: ``<details><summary>Solution`` blocks and cells tagged solution."""
    blocks = []
    for cell in nb["cells"]:
        src = _src(cell)
        if "solution" in cell.get("metadata", {}).get("tags", []):
            blocks.append(src)
        for body in re.findall(r"<details>\s*<summary>\s*Solution.*?</details>", src, re.S | re.I):
            blocks += re.findall(r"```python\n(.*?)```", body, re.S)
    return blocks


def _reference_lines(keys) -> set[str]:
    from attncourse.exercises import EXERCISES

    lines = set()
    for k in keys:
        sol = getattr(EXERCISES.get(k), "solution", None)
        try:
            lines |= _lines(inspect.getsource(sol))
        except (TypeError, OSError):
            pass
    return lines


def _shown_outside_solutions(nb: dict) -> set[str]:
    """Lines the lesson itself shows outside any solution (a derivation the exercise repeats is lesson text)."""
    shown = set()
    for cell in nb["cells"]:
        if "solution" in cell.get("metadata", {}).get("tags", []):
            continue
        src = re.sub(r"<details>.*?</details>", "", _src(cell), flags=re.S | re.I)
        shown |= _lines(src)
    return shown


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    out = tmp_path_factory.mktemp("released")
    assert main(["release", *map(str, NOTEBOOKS), "--out", str(out)]) == 0
    return {p.name: (json.loads(p.read_text()), json.loads((out / p.name).read_text()), out / p.name) for p in NOTEBOOKS}


def test_every_notebook_is_released(released):
    assert NOTEBOOKS and set(released) == {p.name for p in NOTEBOOKS}


@pytest.mark.parametrize("name", [p.name for p in NOTEBOOKS])
def test_no_reference_code_survives(released, name):
    original, copy, _ = released[name]
    keys = find_check_calls(original)
    secret = set().union(*map(_lines, _solution_blocks(original))) | _reference_lines(keys)
    secret -= _shown_outside_solutions(original)
    assert secret, f"{name}: no solution lines found: the test would prove nothing"
    text = "\n".join(_src(c) for c in copy["cells"])
    left = {line for line in secret if line in re.sub(r"[ \t]+", " ", text)}
    assert not left, f"{name}: reference code survives in the student copy: {sorted(left)[:5]}"
    assert not re.search(r"<summary>\s*Solution", text, re.I)


@pytest.mark.parametrize("name", [p.name for p in NOTEBOOKS])
def test_every_check_is_still_called_and_outputs_are_empty(released, name):
    original, copy, _ = released[name]
    before = find_check_calls(original)
    assert before, f"{name} has no check calls"
    assert find_check_calls(copy) == before
    for cell in copy["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
    assert copy["metadata"]["attncourse"]["assignment"]["module"] == name[:2]
    assert copy["metadata"]["attncourse"]["assignment"]["checks"] == sorted(before)
    # the statements and stubs stay: every exercise heading and every NotImplementedError stub is kept
    heads = lambda nb: [l for c in nb["cells"] for l in _src(c).splitlines() if l.startswith("### Exercise")]  # noqa: E731
    assert heads(copy) == heads(original)
    stubs = lambda nb: sum("raise NotImplementedError" in _src(c) for c in nb["cells"] if c["cell_type"] == "code")  # noqa: E731
    assert stubs(copy) == stubs(original)


def test_details_that_are_not_solutions_stay_and_the_rest_of_the_cell_too():
    md = ("intro\n<details><summary>Hint</summary>\nlook at dim\n</details>\n\n<details><summary>Solution</summary>\n\n"
          "```python\nsecret()\n```\n<details><summary>inner</summary>x</details>\n</details>\n\n### Exercise 2 — next")
    out = rel.strip_solution_details(md)
    assert "secret" not in out and "inner" not in out
    assert "look at dim" in out and out.endswith("### Exercise 2 — next") and out.startswith("intro")


def test_tagged_cells_and_marked_regions_go_and_broken_markup_is_refused():
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "code", "metadata": {"tags": ["solution"]}, "source": "def f(x):\n    return x * 42\n",
         "outputs": [], "execution_count": 3},
        {"cell_type": "code", "metadata": {}, "execution_count": 4,
         "outputs": [{"output_type": "stream", "name": "stdout", "text": "42"}],
         "source": "def g(x):\n    # BEGIN SOLUTION\n    return x * 43\n    # END SOLUTION\n"},
        {"cell_type": "code", "metadata": {}, "source": "check('00.conv_params', g)", "outputs": [], "execution_count": 5}]}
    out = rel.release_notebook(nb, "00_x.ipynb")
    srcs = [c["source"] for c in out["cells"]]
    assert srcs == ["def g(x):\n    raise NotImplementedError", "check('00.conv_params', g)"]
    assert out["cells"][0]["outputs"] == [] and out["cells"][0]["execution_count"] is None
    with pytest.raises(ValueError, match="never closed"):
        rel.strip_solution_details("<details><summary>Solution</summary> leak")
    with pytest.raises(ValueError, match="END SOLUTION"):
        rel.strip_solution_lines("# BEGIN SOLUTION\nleak")
    nb["cells"][2]["metadata"] = {"tags": ["solution"]}
    with pytest.raises(ValueError, match="lose the check"):
        rel.release_notebook(nb, "00_x.ipynb")


def test_release_refuses_to_overwrite_its_source_and_writes_nothing_when_one_notebook_is_refused(tmp_path, capsys):
    nb = tmp_path / "00_x.ipynb"
    nb.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}))
    assert main(["release", str(nb), "--out", str(tmp_path)]) == 2
    assert "overwrite" in capsys.readouterr().err
    leaky = tmp_path / "01_leaky.ipynb"
    leaky.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": "<details><summary>Solution</summary>secret"}]}))
    out = tmp_path / "out"
    assert main(["release", str(nb), str(leaky), "--out", str(out)]) == 2
    assert "never closed" in capsys.readouterr().err and not out.exists()


@pytest.mark.slow
def test_released_00_runs_top_to_bottom_and_its_stubs_score_0(released, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    _, _, path = released["00_foundations.ipynb"]
    monkeypatch.setenv("ATTNCOURSE_PROFILE", "smoke")
    nb = nbformat.read(str(path), as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}})
    client.execute()  # raises CellExecutionError if any cell fails
    points = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
        points += re.findall(r"^Points: (\S+) / (\S+)$", text, re.M)
    from attncourse.exercises import EXERCISES

    exercises = [k for k in find_check_calls(nb) if k in EXERCISES]
    assert len(points) == len(exercises) >= 4
    assert all(float(earned) == 0 and float(total) > 0 for earned, total in points)
