"""The instructor's round trip around ``grade`` (issue 29): feedback files, LMS exports, answers built from the
package's reference solutions or blocks, and the assignment's columns (issue 26).

Unit tests first (the feedback's check lines against ``check``'s own output, hostile text against a Markdown
renderer, the export formats against their documented headers), then one graded run of four submissions through
the CLI (about 20 s on a 2-core CPU): an honest one, a partial one, one that borrows the package's code and also
checks module 05 (``borrower.ipynb``), and one with a hostile file name and hostile exception text.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from attncourse.exercises import EXERCISES, check, grade, reset_scores
from attncourse.grading import export, feedback

FIX = Path(__file__).parent / "fixtures" / "grading"
HOSTILE_TEXT = ("</code>``` [click me](javascript:alert(1)) <img src=x onerror=alert(1)> www.evil.example "
                "\r# Owned\n```\n# heading \u202egnp.exe")
HOSTILE_NAME = "s1004 [a](http:evil) <b>`x`\u202e.ipynb"


def _printed(key, answer) -> list[str]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        check(key, answer)
    reset_scores()  # check keeps a per-session scoreboard: leave it empty for other tests
    return buf.getvalue().splitlines()


def _rendered(key, answer) -> list[str]:
    earned, total, results = grade(key, answer)
    cases = [{"name": r.name, "passed": r.passed, "hint": r.hint, "side": r.side} for r in results]
    return feedback.check_lines(key, EXERCISES[key].title, earned, EXERCISES[key].points, cases)


def _stub(*args):
    raise NotImplementedError


@pytest.mark.parametrize("key, answer", [
    ("00.channel_stat", lambda x: x.mean(dim=(2, 3), keepdim=True)),           # every case passes
    ("00.channel_stat", _stub),                                                # one hint for all: said once
    ("00.reweight", lambda x, stat_fn: x * stat_fn(x)),                        # some pass, some fail
    ("00.conv_params", lambda c_in, c_out, k, bias=True: c_out * c_in * k * k),
    ("00.conv_flops", lambda *a: (_ for _ in ()).throw(ValueError(HOSTILE_TEXT))),
])
def test_feedback_shows_the_cases_hints_and_points_exactly_as_check_printed_them(key, answer):
    assert _rendered(key, answer) == _printed(key, answer)


def _html(markdown: str) -> str:
    markdown_it = pytest.importorskip("markdown_it")
    pytest.importorskip("linkify_it")  # gfm-like turns bare addresses into links: the strictest reading
    return markdown_it.MarkdownIt("gfm-like").render(markdown)


def test_a_submissions_text_never_becomes_markup_or_a_link():
    block = feedback.literal_block(HOSTILE_TEXT + "\n````````\n")
    html = _html("# Feedback\n\n" + block + "\n\nafter")
    assert "<a " not in html and "<img" not in html and "<b>" not in html and "<h1>Owned" not in html
    assert html.count("<pre>") == 1 and html.rstrip().endswith("<p>after</p>")
    assert "\\u202e" in block and "\r" not in block  # shown, not obeyed: a CR starts a line in Markdown
    assert "[click me](javascript:alert(1))" in block


def test_feedback_file_names_are_safe_and_unique(tmp_path):
    names = [HOSTILE_NAME, "../../etc/passwd.ipynb", ".hidden.ipynb", "=HYPERLINK(1).ipynb", "a/x.ipynb", "b/x.ipynb",
             "\u00e9l\u00e8ve.ipynb", "-" * 300 + ".ipynb"]
    safe = [feedback.safe_name(n) for n in names]
    assert len(set(safe)) == len(safe)
    for s in safe:
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,80}-[0-9a-f]{8}\.md|submission-[0-9a-f]{8}\.md", s), s


def _report(subs: list[dict]) -> dict:
    return {"exercises": {"00.a": {"title": "A", "points": 4.0}, "00.b": {"title": "B", "points": 5.0}}, "max_total": 9.0,
            "questions": {}, "assignment": {"modules": ["00"]}, "submissions": subs}


def _sub(file, total, flags=()):
    return {"file": file, "total": total, "max": 9.0, "flags": list(flags), "status": "+".join(flags) or "ok",
            "notes": [], "exercises": {}, "questions": {}}


def _read(path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def test_exports_follow_the_documented_headers(tmp_path):
    report = _report([_sub("subs/s1001_ada.ipynb", 9.0), _sub("subs/s1002_bob.ipynb", 2.5),
                      _sub("subs/s1003_eve.ipynb", 4.0, ["review"]), _sub("subs/no-id.ipynb", 1.0),
                      _sub("subs/s1005_x.ipynb", 1.0), _sub("other/s1005_y.ipynb", 2.0),
                      _sub("subs/=cmd|' calc'!A1_s1006_.ipynb", 3.0)])
    pattern = export.compile_pattern(r"(?P<id>s\d{4})_")
    problems = export.write_export(report, "canvas", tmp_path / "c.csv", pattern, "Module 00")
    rows = _read(tmp_path / "c.csv")
    # Canvas: Student, ID, SIS User ID, SIS Login ID, Section, then the assignment; a Points Possible row
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Module 00"]
    assert rows[1] == ["    Points Possible", "", "", "", "", "9"]
    assert rows[2:] == [["", "", "s1001", "", "", "9"], ["", "", "s1002", "", "", "2.5"], ["", "", "s1003", "", "", ""],
                        ["", "", "s1006", "", "", "3"]]
    assert any("no id" in p and "no-id" in p for p in problems) and any("s1005" in p and "2 submissions" in p
                                                                      for p in problems)
    assert any("held back" in p and "s1003" in p for p in problems)
    export.write_export(report, "moodle", tmp_path / "m.csv", pattern, "Module 00")
    rows = _read(tmp_path / "m.csv")
    assert rows[0] == ["ID number", "Module 00"] and rows[1:3] == [["s1001", "9"], ["s1002", "2.5"]]
    export.write_export(report, "plain", tmp_path / "p.csv", pattern)
    rows = _read(tmp_path / "p.csv")
    assert rows[0] == ["id", "points", "max"] and rows[1] == ["s1001", "9", "9"] and ["s1003", "", "9"] in rows
    # the default pattern: the name without .ipynb; a formula-like id is neutralised
    plain = export.export_rows(report, "plain", export.compile_pattern(None), "x")[1]
    assert ["s1001_ada", "9", "9"] in plain
    export.write_export(report, "plain", tmp_path / "d.csv", export.compile_pattern(None))
    assert all(not r[0].startswith(("=", "+", "-", "@")) for r in _read(tmp_path / "d.csv"))
    with pytest.raises(ValueError, match="--id-pattern"):
        export.compile_pattern("(unclosed")


def test_cli_refuses_a_bad_id_pattern(tmp_path, capsys):
    from attncourse.__main__ import main

    shutil.copy(FIX / "good.ipynb", tmp_path / "good.ipynb")
    assert main(["grade", "--out", str(tmp_path / "g.csv"), "--export", "plain", "--id-pattern", "(", "--",
                 str(tmp_path)]) == 2
    assert "--id-pattern" in capsys.readouterr().err


# ---- one graded run through the CLI ------------------------------------------------------------------------------
def _nb(*cells) -> dict:
    return {"cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source": c}
                      for c in cells], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


HOSTILE = _nb(
    "from attncourse.exercises import check",
    f"def channel_stat(x):\n    raise ValueError({HOSTILE_TEXT!r})",
    "check('00.channel_stat', channel_stat)",
    "import this_module_does_not_exist  # [x](http://evil.example) <b>bold</b>")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("roundtrip")
    subs, out = root / "subs", root / "out"
    subs.mkdir()
    shutil.copy(FIX / "good.ipynb", subs / "s1001_good.ipynb")
    shutil.copy(FIX / "partial.ipynb", subs / "s1002_partial.ipynb")
    shutil.copy(FIX / "borrower.ipynb", subs / "s1003_borrower.ipynb")
    (subs / HOSTILE_NAME).write_text(json.dumps(HOSTILE))
    cmd = [sys.executable, "-m", "attncourse", "grade", "--out", str(out / "grades.csv"), "--feedback", str(out / "fb"),
           "--export", "canvas", "--id-pattern", r"^(?P<id>s\d+)", "--cell-timeout", "60", "--timeout", "300",
           "--memory-mb", "6144", "--", str(subs)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads((out / "grades.json").read_text())
    return {"out": out, "report": report, "stdout": res.stdout,
            "rows": {Path(s["file"]).name: s for s in report["submissions"]}}


@pytest.mark.slow
def test_one_submission_checking_another_module_changes_no_one_elses_columns(graded):
    report, rows = graded["report"], graded["rows"]
    assert list(report["exercises"]) == ["00.channel_stat", "00.conv_flops", "00.conv_params", "00.reweight"]
    assert report["max_total"] == 9 and all(s["max"] == 9 for s in report["submissions"])
    borrower = rows["s1003_borrower.ipynb"]
    assert "05.bam_combine" not in borrower["exercises"] and borrower["total"] <= 4
    assert any("'05.bam_combine'" in n and "not scored" in n for n in borrower["notes"])


@pytest.mark.slow
def test_an_answer_built_from_the_package_is_flagged_for_review(graded):
    borrower = graded["rows"]["s1003_borrower.ipynb"]
    assert "review" in borrower["status"]
    assert "attncourse.count_params" in borrower["exercises"]["00.conv_params"]["review"]
    assert borrower["exercises"]["00.channel_stat"]["review"] == ""
    assert graded["rows"]["s1001_good.ipynb"]["status"] == "ok"


@pytest.mark.slow
def test_feedback_files_one_per_submission_with_cases_points_and_notes(graded):
    fb = graded["out"] / "fb"
    files = sorted(p.name for p in fb.iterdir())
    assert len(files) == 4 and all(re.fullmatch(r"[A-Za-z0-9._-]+\.md", f) for f in files)
    good = (fb / feedback.safe_name(graded["rows"]["s1001_good.ipynb"]["file"])).read_text()
    assert "Exercises: **9 / 9** points" in good and good.count("Points: ") == 4 and "✅" in good
    partial = (fb / feedback.safe_name(graded["rows"]["s1002_partial.ipynb"]["file"])).read_text()
    assert "❌" in partial and "Points: 0 / 2" in partial
    hostile_sub = graded["rows"][HOSTILE_NAME]
    text = (fb / feedback.safe_name(hostile_sub["file"])).read_text()
    assert "this_module_does_not_exist" in text  # the grader's note about the failed cell
    html = _html(text)
    assert "<a " not in html and "<img" not in html and "<b>" not in html and "Owned</h1>" not in html


@pytest.mark.slow
def test_the_canvas_export_holds_back_what_needs_review(graded):
    rows = _read(graded["out"] / "grades-canvas.csv")
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "attncourse 00"]
    by_id = {r[2]: r[5] for r in rows[2:]}
    assert by_id["s1001"] == "9" and by_id["s1003"] == "" and by_id["s1004"] == "0"
    assert "held back for review" in graded["stdout"]


# ---- answers built from the package ------------------------------------------------------------------------------
def _cells(*sources) -> dict:
    return {"cells": [{"cell_type": "code", "metadata": {}, "source": s} for s in sources]}


@pytest.mark.parametrize("cells, flagged", [
    (("from attncourse.exercises.m00_foundations import channel_stat", "check('00.channel_stat', channel_stat)"),
     "attncourse.exercises.m00_foundations.channel_stat"),
    (("import attncourse as ac", "se = ac.blocks.SEBlock", "check('02.excitation', se)"), "attncourse.blocks.SEBlock"),
    (("import attncourse as ac", "check('02.excitation', ac.blocks.channel.SEBlock)"), "attncourse.blocks.channel.SEBlock"),
    (("from attncourse.blocks import channel as ch", "def helper(x):\n    return ch.eca_kernel_size(x)",
      "def eca_kernel_size(c, gamma=2, beta=1):\n    return helper(c)", "check('02.eca_kernel_size', eca_kernel_size)"),
     "attncourse.blocks.channel.eca_kernel_size"),
    (("from attncourse.blocks.mixed import ChannelAttention", "class ChannelAttentionMap(ChannelAttention):\n    pass",
      "check('05.channel_mlp', ChannelAttentionMap)"), "attncourse.blocks.mixed.ChannelAttention"),
    (("import attncourse as ac\nfrom torch import nn", "class E(nn.Module):\n    def __init__(self, c, reduction=16):\n"
      "        super().__init__()\n        self.se = ac.create_block('se', c)\n    def forward(self, x):\n"
      "        return self.se(x)", "check('02.excitation', E)"), "attncourse.create_block"),
    (("import attncourse as ac", "check('00.channel_stat', lambda x: ac.blocks.channel.gap(x))"),
     "attncourse.blocks.channel.gap"),
    (("import attncourse.exercises as E", "f = E.EXERCISES['00.channel_stat'].solution", "check('00.channel_stat', f)"),
     ".solution"),
    # not flagged: the learner's own code after the lesson's import of the same name; a parameter that shadows
    (("from attncourse.blocks.channel import eca_kernel_size", "import math\ndef eca_kernel_size(c, gamma=2, beta=1):\n"
      "    t = int(abs((math.log2(c) + beta) / gamma))\n    return t if t % 2 else t + 1",
      "check('02.eca_kernel_size', eca_kernel_size)"), None),
    (("import attncourse as ac\nse = ac.create_block('se', 8)", "def f(x, branch, se, shortcut):\n"
      "    return torch.relu(se(branch(x)) + shortcut(x))", "check('02.se_resnet_block', f)"), None),
])
def test_answers_built_from_the_package_are_found(cells, flagged):
    from attncourse.grading import source

    nb = _cells(*cells)
    uses = source.reference_uses(nb, source.find_check_calls(nb))
    if flagged is None:
        assert uses == {}
    else:
        assert any(flagged in u for paths in uses.values() for u in paths), uses


def test_a_notebook_that_reaches_the_reference_solutions_is_flagged_whatever_it_answers():
    from attncourse.grading import source

    assert source.reaches_reference_solutions(_cells("import importlib\nm = importlib.import_module("
                                                     "'attncourse.exercises.m00_foundations')"))
    assert source.reaches_reference_solutions(_cells("from attncourse.exercises import EXERCISES"))
    assert source.reaches_reference_solutions(json.loads((FIX / "cheater.ipynb").read_text()))
    assert not source.reaches_reference_solutions(_cells("import attncourse as ac\ncheck = ac.exercises.check",
                                                         "from attncourse.exercises import check, score_summary"))


def test_released_notebooks_and_their_own_solutions_are_flagged_for_nothing():
    """No false alarm on the course itself: each released copy, and the copy with the notebook's solutions
    pasted into its stubs (an honest, complete submission)."""
    from attncourse.grading import release, source

    for path in sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        original = json.loads(path.read_text())
        copy = release.release_notebook(original, path.name)
        solutions = {}
        for cell in original["cells"]:
            src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            for body in re.findall(r"<details>\s*<summary>\s*Solution.*?</details>", src, re.S):
                for code in re.findall(r"```python\n(.*?)```", body, re.S):
                    m = re.search(r"^(?:def|class) (\w+)", code, re.M)
                    if m:
                        solutions[m.group(1)] = code
        assert solutions, path.name
        calls = source.find_check_calls(copy)
        assert source.reference_uses(copy, calls) == {} and source.reaches_reference_solutions(copy) == []
        filled = 0
        for cell in copy["cells"]:
            m = re.search(r"^(?:def|class) (\w+)", cell["source"], re.M) if cell["cell_type"] == "code" else None
            if m and m.group(1) in solutions and "NotImplementedError" in cell["source"]:
                cell["source"] = "import math\nimport torch\nfrom torch import nn\n" + solutions[m.group(1)]
                filled += 1
        assert filled == len(solutions), path.name
        assert source.reference_uses(copy, calls) == {}, path.name
        assert source.reaches_reference_solutions(copy) == [], path.name
