"""The instructor's grader: fixture submissions for every failure mode go through the CLI.

The CLI test executes real notebooks in real kernels (about 8 s each here) and is marked slow; the
time each notebook took is printed (``pytest -s``), never asserted.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from attncourse import grading
from attncourse.exercises import EXERCISES

FIXTURES = Path(__file__).parent / "fixtures" / "grading"
KEYS = sorted(k for k in EXERCISES if k.startswith("00."))

# file -> (points per 00.* exercise, a word the status must contain, a phrase the notes must contain)
EXPECTED = {
    "good.ipynb": ({"00.channel_stat": 2, "00.conv_flops": 2, "00.conv_params": 2, "00.reweight": 3}, "ok", ""),
    "partial.ipynb": ({"00.channel_stat": 2, "00.conv_flops": 0, "00.conv_params": 0.4, "00.reweight": 0.5}, "ok", ""),
    "raises.ipynb": ({"00.channel_stat": 2, "00.conv_params": 2}, "errors", "raised ValueError"),
    "sys_exit.ipynb": ({"00.channel_stat": 2, "00.conv_params": 2}, "errors", "raised SystemExit"),
    "os_exit.ipynb": ({"00.channel_stat": 2}, "kernel died", "re-ran the first"),
    "memory_hog.ipynb": ({"00.channel_stat": 2, "00.conv_params": 2}, "memory", "ran out of memory"),
    "cheater.ipynb": ({}, "review", "library objects replaced by notebook code: torch.allclose"),
    "not_a_notebook.ipynb": ({}, "failed", "unreadable notebook"),
    "infinite_loop.ipynb": ({"00.conv_params": 2}, "timeout", "time limit of 3s reached"),
}


def _grade_cli(args: list[str], out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "attncourse", "grade", *args, "--out", str(out), "--memory-mb", "6144",
                             "--grade-timeout", "60"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_grading_the_fixture_folder(tmp_path):
    t0 = time.monotonic()
    # the folder (not recursive: slow/ is left out) with a generous time budget, and the infinite
    # loop with a short one, side by side
    main = _grade_cli([str(FIXTURES), "--timeout", "120", "--jobs", "2"], tmp_path / "grades.csv")
    loop = _grade_cli([str(FIXTURES / "slow" / "infinite_loop.ipynb"), "--timeout", "3"], tmp_path / "loop.csv")
    logs = [p.communicate(timeout=600)[0] for p in (main, loop)]
    wall = time.monotonic() - t0
    assert main.returncode == 0 and loop.returncode == 0, logs

    rows = {}
    for name in ("grades.csv", "loop.csv"):
        with open(tmp_path / name, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            assert reader.fieldnames == ["file", *KEYS, "total", "max", "status", "seconds", "notes"]
            rows.update({Path(r["file"]).name: r for r in reader})
    assert set(rows) == set(EXPECTED)
    for name, (points, status, note) in EXPECTED.items():
        row = rows[name]
        for key in KEYS:
            assert float(row[key]) == pytest.approx(points.get(key, 0.0)), (name, key, row)
        assert float(row["total"]) == pytest.approx(sum(points.values())), (name, row)
        assert float(row["max"]) == 9.0
        assert status in row["status"], (name, row)
        assert note in row["notes"], (name, row)
    assert rows["good.ipynb"]["notes"] == "" and rows["partial.ipynb"]["notes"] == ""
    assert "defines its own check()" in rows["cheater.ipynb"]["notes"]

    report = json.loads((tmp_path / "grades.json").read_text())
    assert report["max_total"] == 9.0 and sorted(report["exercises"]) == KEYS
    partial = next(s for s in report["submissions"] if s["file"].endswith("partial.ipynb"))
    hints = [c["hint"] for c in partial["exercises"]["00.reweight"]["cases"]]
    assert any("torch.sigmoid" in h for h in hints)
    assert partial["exercises"]["00.conv_flops"]["cases"][0]["hint"].startswith("not implemented yet")

    print(f"\ngrading the fixtures took {wall:.1f}s wall (folder with --jobs 2, infinite loop alongside):")
    for name, row in sorted(rows.items()):
        print(f"  {name:24s} {float(row['seconds']):5.1f}s  {row['status']}")


# ---- fast unit tests of the pieces (no kernels) -------------------------------------------------
def _nb(*sources: str) -> dict:
    return {"cells": [{"cell_type": "code", "source": s, "metadata": {}, "outputs": []} for s in sources]}


def test_find_check_calls_last_call_wins():
    nb = _nb("%matplotlib inline\nfrom attncourse.exercises import check",
             'check("00.reweight", reweight)',
             'import attncourse as ac\nac.exercises.check("00.conv_params", learner=my_params)',
             '!echo hi\ncheck("00.reweight", reweight_v2)\ncheck("00.x")\ncheck(key, f)')
    assert grading.find_check_calls(nb) == {"00.reweight": "reweight_v2", "00.conv_params": "my_params"}


def test_find_check_calls_survives_broken_cells():
    nb = _nb("def (:", 'check("00.conv_flops", lambda *a: 0)')
    assert grading.find_check_calls(nb) == {"00.conv_flops": "lambda *a: 0"}


def test_scan_source_flags_tampering_but_not_ordinary_code():
    clean = _nb("import torch\nimport torch.nn.functional as F\nfrom attncourse.exercises import check",
                "torch.backends.cudnn.benchmark = True\nmodel.modules()\nx = F.relu(torch.ones(1))",
                "import attncourse as ac\ncheck = ac.exercises.check\ncheck('05.channel_mlp', f)")
    assert grading.scan_source(clean) == []
    bad = _nb("import attncourse.exercises.core as core\nimport gc, sys",
              "core.EXERCISES['00.reweight'].points = 100\nsys.modules['torch'] = None",
              "def check(k, f):\n    print('✅')", "setattr(core, 'grade', print)", "grade = lambda *a: 9")
    reasons = " | ".join(grading.scan_source(bad))
    for phrase in ("imports gc", "modifies the package: core.EXERCISES", "sys.modules", "defines its own check()",
                   "calls setattr()", "rebinds grade"):
        assert phrase in reasons


def test_scores_are_clamped_to_the_registered_points():
    registry = {"00.reweight": {"title": "t", "points": 3.0}}
    sub = {"flags": [], "notes": [], "exercises": {"00.reweight": {"points": 3.0, "earned": 0.0, "answer": "f",
                                                                   "cases": [], "note": ""}},
           "cells": {"code": 1, "ran": 0, "errors": []}, "review": [], "phases": {}}
    grading._merge(sub, {"exercises": {"00.reweight": {"earned": 99, "cases": []}, "99.fake": {"earned": 5}}}, registry)
    assert sub["exercises"]["00.reweight"]["earned"] == 3.0 and "99.fake" not in sub["exercises"]
    grading._merge(sub, {"exercises": {"00.reweight": {"earned": float("nan")}}}, registry)
    assert sub["exercises"]["00.reweight"]["earned"] == 0.0


def test_columns_follow_the_modules_the_submissions_check():
    registry = {k: {"title": "", "points": 1.0} for k in ["00.a", "00.b", "02.a", "05.a"]}
    assert grading._columns(registry, [{"00.a": "f"}, {}], None) == ["00.a", "00.b"]
    assert grading._columns(registry, [{"00.a": "f"}], ["02.", "05."]) == ["02.a", "05.a"]
    assert grading._columns(registry, [], ["all"]) == list(registry)


def test_status_lists_every_problem_most_severe_first():
    assert grading._status([]) == "ok"
    assert grading._status(["errors", "review", "timeout"]) == "review+timeout+errors"


def test_cli_without_notebooks_is_a_usage_error(tmp_path, capsys):
    from attncourse.__main__ import main

    assert main(["grade", str(tmp_path), "--out", str(tmp_path / "g.csv")]) == 2
    assert "no .ipynb files" in capsys.readouterr().err
    assert main(["grade", str(tmp_path / "missing.ipynb")]) == 2
    assert "no such notebook" in capsys.readouterr().err


def test_worker_file_imports_only_the_standard_library():
    # the worker runs grading.py as a script (python -I) and must not need torch or the package
    code = ("import runpy, sys; runpy.run_path(sys.argv[1], run_name='not_main'); "
            "print('torch' in sys.modules, 'attncourse' in sys.modules)")
    res = subprocess.run([sys.executable, "-I", "-c", code, grading.__file__], capture_output=True, text=True,
                         timeout=60, env={**os.environ})
    assert res.stdout.split() == ["False", "False"], res.stderr
