"""The instructor's grader, fast parts (no workers): reading files, the command line, source analysis,
the wire format's limits, and the fidelity of grading through the worker protocol.

The sandboxed batch runs (hostile fixtures, honest rows alone and in the batch, no survivors) are in
``tests/test_grading_batch.py``.
"""
from __future__ import annotations

import csv
import io
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from attncourse import grading
from attncourse.exercises import EXERCISES, grade
from attncourse.grading import files, wire
from attncourse.grading.remote import GraderPeer
from attncourse.grading.worker import WorkerPeer


def _nb(*sources: str) -> dict:
    return {"cells": [{"cell_type": "code", "source": s, "metadata": {}, "outputs": []} for s in sources]}


# ---- source analysis --------------------------------------------------------------------------------
def test_find_check_calls_last_call_wins():
    nb = _nb("%matplotlib inline\nfrom attncourse.exercises import check",
             'check("00.reweight", reweight)',
             'import attncourse as ac\nac.exercises.check("00.conv_params", learner=my_params)',
             '!echo hi\ncheck("00.reweight", reweight_v2)\ncheck("00.x")\ncheck(key, f)')
    assert grading.find_check_calls(nb) == {"00.reweight": "reweight_v2", "00.conv_params": "my_params"}


def test_find_check_calls_keywords_and_aliases():
    nb = _nb("from attncourse.exercises import check as chk\nimport attncourse as ac",
             'check(key="00.channel_stat", learner=f1)', 'chk("00.reweight", learner=f2)',
             'c = chk\nc("00.conv_params", f3)', 'ac.exercises.check(learner=f4, key="00.conv_flops")',
             'print("00.x", f5)')
    assert grading.find_check_calls(nb) == {"00.channel_stat": "f1", "00.reweight": "f2", "00.conv_params": "f3",
                                            "00.conv_flops": "f4"}


def test_find_check_calls_survives_broken_and_deep_cells():
    nb = _nb("def (:", "x = " + "(" * 5000 + ")" * 5000, 'check("00.conv_flops", lambda *a: 0)')
    assert grading.find_check_calls(nb) == {"00.conv_flops": "lambda *a: 0"}


def test_scan_source_flags_tampering_but_not_ordinary_code():
    clean = _nb("import torch\nimport torch.nn.functional as F\nfrom attncourse.exercises import check",
                "torch.backends.cudnn.benchmark = True\nmodel.modules()\nx = F.relu(torch.ones(1))",
                "import attncourse as ac\ncheck = ac.exercises.check\ncheck('05.channel_mlp', f)")
    assert grading.scan_source(clean) == []
    bad = _nb("import attncourse.exercises.core as core\nimport gc, sys",
              "core.EXERCISES['00.reweight'].points = 100\nsys.modules['torch'] = None",
              "def check(k, f):\n    print('✅')", "setattr(core, 'grade', print)", "grade = lambda *a: 9",
              "round.__self__.round = None\nimport os\nos.setsid()")
    reasons = " | ".join(grading.scan_source(bad))
    for phrase in ("imports gc", "modifies the package: core.EXERCISES", "sys.modules", "defines its own check()",
                   "calls setattr()", "rebinds grade", "__self__", "setsid"):
        assert phrase in reasons


def test_status_lists_every_problem_most_severe_first():
    assert grading._status([]) == "ok"
    assert grading._status(["errors", "review", "timeout"]) == "review+timeout+errors"


def test_columns_follow_the_modules_the_submissions_check():
    registry = {k: {"title": "", "points": 1.0} for k in ["00.a", "00.b", "02.a", "05.a"]}
    assert grading._columns(registry, [{"00.a": "f"}, {}], None) == ["00.a", "00.b"]
    assert grading._columns(registry, [{"00.a": "f"}], ["02.", "05."]) == ["02.a", "05.a"]
    assert grading._columns(registry, [], ["all"]) == list(registry)


def test_the_assignment_fixes_the_columns_not_what_one_submission_calls():
    """Issue 26: one submission that also checks 05.* (say with the package's reference solutions) must not add
    05's columns to every row nor raise every row's maximum; the call is noted on its row, never scored."""
    from attncourse.grading.batch import assignment_modules, columns_for, declared_module

    reg = {k: {"title": "", "points": 1.0} for k in ["00.a", "00.b", "05.a", "05.b"]}
    honest = {"00.a": "f", "00.b": "g"}
    cheater = {"00.a": "f", "00.b": "g", "05.a": "ref_a", "05.b": "ref_b"}
    assert assignment_modules([honest, honest, cheater], set(reg)) == ["00"]
    assert assignment_modules([honest, cheater], set(reg)) == ["00"]
    assert columns_for(reg, [honest, honest, {}, cheater], None) == ["00.a", "00.b"]
    # the module a student copy records wins over what its calls say; --exercises wins over both
    assert assignment_modules([cheater], set(reg), ["00"]) == ["00"]
    assert assignment_modules([cheater], set(reg)) == ["00", "05"]  # nothing else to go by: what it checks
    assert columns_for(reg, [honest, cheater], ["05."]) == ["05.a", "05.b"]
    assert declared_module({"metadata": {"attncourse": {"assignment": {"module": "05"}}}}) == "05"
    assert declared_module({"metadata": {"attncourse": {"assignment": {"module": "../x"}}}}) is None
    assert declared_module({"metadata": []}) is None


def test_a_call_outside_the_assignment_is_noted_never_scored():
    from attncourse.grading.batch import grade_one

    reg = {"00.a": {"title": "", "points": 2.0}, "05.a": {"title": "", "points": 4.0}}
    sub = grade_one({}, 0, Path("x.ipynb"), None, "unreadable", {"00.a": "f", "05.a": "ref", "99.z": "h"},
                    ["00.a"], reg)
    assert list(sub["exercises"]) == ["00.a"] and sub["max"] == 2.0
    assert any("'05.a'" in n and "not scored" in n for n in sub["notes"])
    assert any("'99.z'" in n and "not a registered" in n for n in sub["notes"])


# ---- files --------------------------------------------------------------------------------------------
def test_collect_refuses_fifos_devices_folders_and_escaping_symlinks(tmp_path):
    good = tmp_path / "good.ipynb"
    good.write_text('{"cells": []}')
    os.mkfifo(tmp_path / "fifo.ipynb")
    (tmp_path / "folder.ipynb").mkdir()
    os.symlink("/dev/zero", tmp_path / "zero.ipynb")
    os.symlink(good, tmp_path / "inside.ipynb")  # a symlink within the folder is fine
    outside = tmp_path.parent / f"{tmp_path.name}-outside.ipynb"
    outside.write_text('{"cells": []}')
    os.symlink(outside, tmp_path / "escape.ipynb")
    (tmp_path / "--json=x.ipynb").write_text('{"cells": []}')
    paths, refused = files.collect([str(tmp_path)])
    assert sorted(p.name for p in paths) == ["--json=x.ipynb", "good.ipynb", "inside.ipynb"]
    why = {p.name: w for p, w in refused}
    assert "FIFO" in why["fifo.ipynb"] and "folder" in why["folder.ipynb"]
    assert "leaves its folder" in why["zero.ipynb"] and "leaves its folder" in why["escape.ipynb"]
    with pytest.raises(files.Refused, match="FIFO"):  # even when handed straight to the reader: no hang
        files.read_notebook(tmp_path / "fifo.ipynb")
    with pytest.raises(FileNotFoundError):
        files.collect([str(tmp_path / "missing.ipynb")])


def test_read_notebook_limits_depth_and_size(tmp_path, monkeypatch):
    deep = tmp_path / "deep.ipynb"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(files.Refused, match="nested deeper"):
        files.read_notebook(deep)
    big = tmp_path / "big.ipynb"
    big.write_text('{"cells": [], "x": "' + "a" * 5000 + '"}')
    monkeypatch.setattr(files, "MAX_BYTES", 1000)
    with pytest.raises(files.Refused, match="limit"):
        files.read_notebook(big)
    (tmp_path / "list.ipynb").write_text("[1, 2]")
    with pytest.raises(files.Refused, match="not a notebook"):
        files.read_notebook(tmp_path / "list.ipynb")


def test_csv_cells_are_never_formulas(tmp_path):
    report = {"exercises": {"00.a": {}}, "submissions": [
        {"file": '=HYPERLINK("http://x")', "exercises": {"00.a": {"earned": 1.0}}, "total": 1.0, "max": 2.0,
         "status": "ok", "seconds": 1.0, "notes": ["+cmd", "@SUM(A1)", "-2+3"]}]}
    grading.write_csv(report, tmp_path / "g.csv")
    rows = list(csv.reader(io.StringIO((tmp_path / "g.csv").read_text())))
    assert rows[1][0] == "'=HYPERLINK(\"http://x\")" and rows[1][-1].startswith("'+cmd")
    assert all(not c or c[0] not in "=+-@" for row in rows for c in row)


def test_cli_usage_errors(tmp_path, capsys):
    from attncourse.__main__ import main

    assert main(["grade", str(tmp_path), "--out", str(tmp_path / "g.csv")]) == 2
    assert "no .ipynb files" in capsys.readouterr().err
    assert main(["grade", str(tmp_path / "missing.ipynb")]) == 2
    assert "no such notebook" in capsys.readouterr().err
    # a submission named like an option, expanded by a shell in front of the real paths
    assert main(["grade", "--json=x.ipynb", str(tmp_path)]) == 2
    assert "read as an option" in capsys.readouterr().err
    assert main(["grade", "--exercises=evil.ipynb", str(tmp_path)]) == 2
    assert "not an exercise prefix" in capsys.readouterr().err


# ---- the wire format ------------------------------------------------------------------------------------
def _pipe_roundtrip(header, arrays=()):
    r, w = os.pipe()
    try:
        wire.send(w, header, arrays)
        return wire.recv(r, time.monotonic() + 5)
    finally:
        os.close(r)
        os.close(w)


def test_wire_refuses_what_it_cannot_check():
    r, w = os.pipe()
    os.write(w, b"ACG1" + (2**31).to_bytes(4, "big"))
    with pytest.raises(wire.WireError, match="over the limit"):
        wire.recv(r, time.monotonic() + 5)
    text = ("[" * 200 + "]" * 200).encode()
    os.write(w, b"ACG1" + len(text).to_bytes(4, "big") + text)
    with pytest.raises(wire.WireError, match="nested"):
        wire.recv(r, time.monotonic() + 5)
    text = b'{"_arrays": [["object", [1], 8]]}'
    os.write(w, b"ACG1" + len(text).to_bytes(4, "big") + text)
    with pytest.raises(wire.WireError, match="malformed array"):
        wire.recv(r, time.monotonic() + 5)
    text = b'{"_arrays": [["float32", [4], 8]]}'
    os.write(w, b"ACG1" + len(text).to_bytes(4, "big") + text)
    with pytest.raises(wire.WireError, match="byte count"):
        wire.recv(r, time.monotonic() + 5)
    with pytest.raises(wire.WireTimeout):
        wire.recv(r, time.monotonic() + 0.2)  # nothing more: a silent worker is a timeout, not a hang
    os.close(r)
    os.close(w)


def test_a_tensor_subclass_arrives_as_plain_values():
    class Agree(torch.Tensor):
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            if func in (torch.allclose, torch.equal):
                return True
            return super().__torch_function__(func, types, args, kwargs or {})

    sent = torch.zeros(2, 3).as_subclass(Agree)
    header, arrays = _pipe_roundtrip({"x": 1}, [wire.tensor_to_raw(sent)])
    got = wire.raw_to_tensor(arrays[0])
    assert type(got) is torch.Tensor and not torch.allclose(got, torch.ones(2, 3))


# ---- grading through the protocol gives the in-process grades ------------------------------------------
def _loopback():
    """A worker peer serving in a thread of this process, talking through real pipes and frames."""
    a_r, a_w = os.pipe()
    b_r, b_w = os.pipe()
    worker, grader = WorkerPeer(a_r, b_w), GraderPeer(b_r, a_w)

    def serve():
        while True:
            try:
                msg, arrs = wire.recv(a_r)
            except (wire.WireError, OSError):
                return
            worker.serve_one(msg, arrs)

    threading.Thread(target=serve, daemon=True).start()
    return worker, grader, (a_r, a_w, b_r, b_w)


def _through(worker, grader, obj):
    worker.handles.clear()
    arrays: list = []
    enc = worker.encode(obj, arrays, [])
    r, w = os.pipe()
    try:
        wire.send(w, {"v": 0}, arrays)
        _, arrs = wire.recv(r, time.monotonic() + 5)
    finally:
        os.close(r)
        os.close(w)
    return grader.decode(enc, arrs)


def test_every_fairness_answer_grades_the_same_through_the_worker_protocol():
    """Functions, classes, modules (mirrored: torch.nn layers found by type, weights edited by the checker,
    BatchNorm statistics, deep copies), callbacks into the grader, gradients both ways and in-place
    changes: every correct answer and named mistake of the fairness suite gets the same points and
    the same hints when graded through proxies as when graded in-process."""
    from test_exercises_fairness import FAIRNESS

    worker, grader, fds = _loopback()
    try:
        compared = 0
        for key, fair in FAIRNESS.items():
            answers = list(fair.correct.items()) + [(n, m.answer) for n, m in fair.mistakes.items()]
            for name, answer in answers:
                here = grade(key, answer)
                grader.deadline = time.monotonic() + 120
                there = grade(key, _through(worker, grader, answer))
                assert there[0] == here[0], (key, name)
                assert [(r.name, r.passed, r.hint) for r in there[2]] == [(r.name, r.passed, r.hint) for r in here[2]]
                compared += 1
        assert compared >= 2 * len(EXERCISES)
    finally:
        for fd in fds:
            os.close(fd)


def test_the_worker_never_receives_the_checker_or_the_expected_values():
    """Everything the worker is sent while grading is listed: inputs only (the answer is called on them)."""
    worker, grader, fds = _loopback()
    seen: list = []
    original = worker.serve_one

    def spy(msg, arrs):
        seen.append((msg, [np.asarray(a) if not isinstance(a, tuple) else a for a in arrs]))
        return original(msg, arrs)

    worker.serve_one = spy
    try:
        grader.deadline = time.monotonic() + 60

        def channel_stat(x):
            return x.mean(dim=(2, 3), keepdim=True)

        earned, total, _ = grade("00.channel_stat", _through(worker, grader, channel_stat))
        assert earned == total
        ops = {m["op"] for m, _ in seen}
        assert ops <= {"call", "backward", "release"}
        for msg, arrs in seen:  # every array sent is an input of shape [N, C, H, W] or a gradient of an output
            for a in arrs:
                assert np.asarray(a).ndim in (4,), msg["op"]
    finally:
        for fd in fds:
            os.close(fd)
