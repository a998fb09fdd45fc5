"""The instructor's grader and the predict-first / interpret questions.

Fast parts (no sandbox): how an answer travels (plain data only, never a proxy, nothing of the learner's
called in the grader), the columns, the CSV. Then one graded run of the question fixtures through the
command line (two sandboxed workers): an honest notebook answering right, wrong and not at all, and a
hostile one that tampers with the questions and its answers; each answer earns exactly what its plain
value earns when graded here, and question points never reach the exercise total.
"""
from __future__ import annotations

import csv
import io
import json
import os
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from attncourse import grading
from attncourse.exercises import QUESTIONS, grade
from attncourse.grading import questions, wire
from attncourse.grading.batch import columns_for
from attncourse.grading.remote import GraderPeer
from attncourse.grading.worker import WorkerPeer

FIX = Path(__file__).parent / "fixtures" / "grading"
sys.path.insert(0, str(FIX))
from make_questions import HONEST_ANSWERS, HOSTILE_ANSWERS, NOT_PLAIN  # noqa: E402


def _nb(*sources: str) -> dict:
    return {"cells": [{"cell_type": "code", "source": s, "metadata": {}, "outputs": []} for s in sources]}


# ---- source and columns -------------------------------------------------------------------------------
def test_question_calls_are_found_like_exercise_calls():
    nb = _nb("from attncourse.exercises import check as ask", 'q_a = None\nask("00.predict_pairs_growth", q_a)',
             'check(learner="b", key="00.interpret_channel_weights")', "c = ask\nc('00.predict_baseline_acc', q_b)")
    assert grading.find_check_calls(nb) == {"00.predict_pairs_growth": "q_a", "00.interpret_channel_weights": "'b'",
                                            "00.predict_baseline_acc": "q_b"}


def test_question_columns_follow_the_modules_checked_by_exercises_or_questions():
    reg = {k: {} for k in ["00.a", "02.a"]}
    qreg = {k: {} for k in ["00.q1", "00.q2", "02.q", "04.q"]}
    known = set(reg) | set(qreg)
    calls = [{"00.a": "f"}, {"02.q": "x"}]
    assert columns_for(qreg, calls, None, known) == ["00.q1", "00.q2", "02.q"]
    assert columns_for(reg, calls, None, known) == ["00.a", "02.a"]  # a module answered only by a question
    assert columns_for(qreg, calls, ["04."], known) == ["04.q"]
    assert columns_for(reg, [{"02.q": "x"}], None) == []  # without `known`: exercises only, as before


# ---- the answer as plain data ---------------------------------------------------------------------------
def test_decode_answer_takes_plain_values_and_refuses_everything_else():
    arrays = [np.array([16.0]), np.zeros(3)]
    for enc, want in [({"t": "none"}, None), ({"t": "bool", "v": True}, True), ({"t": "int", "v": "16"}, 16),
                      ({"t": "float", "v": "2.5"}, 2.5), ({"t": "str", "v": "b"}, "b"),
                      ({"t": "ndarray", "a": 0}, 16.0), ({"t": "tensor", "a": 0, "rg": True}, 16.0)]:
        assert questions.decode_answer(enc, arrays) == (want, ""), enc
    for enc, why in [({"t": "obj", "id": 1, "kind": "callable", "name": "f"}, "not plain data"),
                     ({"t": "module", "id": 1, "tree": []}, "not plain data"),
                     ({"t": "unplain", "type": "Everything"}, "object of type Everything"),
                     ({"t": "ndarray", "a": 1}, "array of 3 values"), ({"t": "tensor", "a": 7}, "malformed"),
                     ({"t": "int", "v": "9" * 5000}, "not plain data"), ({"t": "list", "v": []}, "not plain data"),
                     ({"t": "complex", "v": ["1", "0"]}, "not plain data"), ("b", "no answer")]:
        value, got = questions.decode_answer(enc, arrays)
        assert value is None and why in got, (enc, got)


class _Watched:
    """A learner's answer object that records every method the grader might call on it."""

    calls: list = []

    def __eq__(self, other):
        _Watched.calls.append("__eq__")
        return True

    __hash__ = object.__hash__

    def __str__(self):
        _Watched.calls.append("__str__")
        return "b"

    def __float__(self):
        _Watched.calls.append("__float__")
        return 16.0


def _ask(worker_ns: dict, expr: str):
    """The worker answers op 'answer' through real pipes and frames, serving in a thread of this process."""
    a_r, a_w = os.pipe()
    b_r, b_w = os.pipe()
    worker, grader = WorkerPeer(a_r, b_w), GraderPeer(b_r, a_w)
    worker.shell = SimpleNamespace(user_ns=worker_ns)

    def serve():
        try:
            msg, arrs = wire.recv(a_r)
        except (wire.WireError, OSError):
            return
        worker.serve_one(msg, arrs)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        grader.deadline = time.monotonic() + 30
        reply, arrays = grader.request({"op": "answer", "expr": expr})
        thread.join(5)
        return questions.decode_answer(reply.get("result"), arrays)
    finally:
        for fd in (a_r, a_w, b_r, b_w):
            os.close(fd)


def test_the_worker_sends_plain_values_and_nothing_of_the_learner_runs_in_the_grader():
    class Str(str):
        def __eq__(self, other):
            return True

        __hash__ = str.__hash__

    class Liar(float):
        def __sub__(self, other):
            return 0.0

        def __rsub__(self, other):
            return 0.0

    class Agree(torch.Tensor):
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            return super().__torch_function__(func, types, args, kwargs or {})

    ns = {"q_str": Str("a"), "q_liar": Liar(3.0), "q_tensor": torch.tensor([16.0]).as_subclass(Agree),
          "q_np": np.float32(16.0), "q_obj": _Watched(), "q_fn": lambda: "b", "q_none": None, "q_many": torch.ones(4)}
    got = {k: _ask(ns, k) for k in list(ns)}
    assert got["q_str"] == ("a", "") and type(got["q_str"][0]) is str
    assert got["q_liar"] == (3.0, "") and type(got["q_liar"][0]) is float
    assert got["q_tensor"] == (16.0, "") and type(got["q_tensor"][0]) is float
    assert got["q_np"] == (16.0, "") and got["q_none"] == (None, "")
    assert got["q_obj"][0] is None and "object of type _Watched" in got["q_obj"][1]
    assert got["q_fn"][0] is None and "not plain data" in got["q_fn"][1]
    assert got["q_many"][0] is None and "array of 4 values" in got["q_many"][1]
    with pytest.raises(NameError):  # the worker's error comes back as an error, not as a value
        _ask(ns, "undefined_name")
    assert _Watched.calls == []  # the grader never called the learner's object


def test_csv_puts_questions_apart_from_the_exercise_total(tmp_path):
    report = {"exercises": {"00.a": {}}, "questions": {"00.q": {}, "00.r": {}}, "submissions": [
        {"file": "x.ipynb", "exercises": {"00.a": {"earned": 2.0}}, "total": 2.0, "max": 2.0,
         "questions": {"00.q": {"earned": 1.0}, "00.r": {"earned": 0.0}}, "questions_total": 1.0,
         "questions_max": 2.0, "status": "ok", "seconds": 1.0, "notes": []}]}
    grading.write_csv(report, tmp_path / "g.csv")
    rows = list(csv.DictReader(io.StringIO((tmp_path / "g.csv").read_text())))
    assert list(rows[0]) == ["file", "00.a", "total", "max", "Q:00.q", "Q:00.r", "questions_total", "questions_max",
                             "status", "seconds", "notes"]
    assert rows[0]["total"] == "2" and rows[0]["questions_total"] == "1" and rows[0]["Q:00.q"] == "1"


# ---- a graded run: honest and hostile answers through the sandbox ---------------------------------------
def _deserved(answers: dict) -> dict[str, float]:
    return {k: 0.0 if v is NOT_PLAIN else grade(k, v)[0] for k, v in answers.items()}


def test_questions_graded_through_the_sandbox(tmp_path, capsys):
    from attncourse.__main__ import main

    out = tmp_path / "grades.csv"
    paths = [FIX / "questions.ipynb", FIX / "hostile" / "questions_tamper.ipynb"]
    assert main(["grade", "--out", str(out), "--memory-mb", "6144", "--cell-timeout", "10", "--grade-timeout", "15",
                 "--timeout", "120", "--", *map(str, paths)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.with_suffix(".json").read_text())
    rows = {Path(r["file"]).name: r for r in csv.DictReader(io.StringIO(out.read_text()))}
    subs = {Path(s["file"]).name: s for s in report["submissions"]}
    qkeys = sorted(k for k in QUESTIONS if k.startswith("00."))
    assert list(report["questions"]) == qkeys and report["max_questions"] == len(qkeys)
    assert set(report["exercises"]).isdisjoint(report["questions"])
    for name, answers in (("questions.ipynb", HONEST_ANSWERS), ("questions_tamper.ipynb", HOSTILE_ANSWERS)):
        sub, row, deserved = subs[name], rows[name], _deserved(answers)
        assert set(deserved) == set(qkeys)
        for key, points in deserved.items():
            assert sub["questions"][key]["earned"] == points, (name, key, sub["questions"][key])
            assert float(row[f"Q:{key}"]) == points
        assert sub["questions_total"] == sum(deserved.values()) == float(row["questions_total"])
        # the exercise total holds the exercise only (channel_stat: 2 points), never a question point
        assert sub["total"] == sum(e["earned"] for e in sub["exercises"].values()) == 2.0 == float(row["total"])
        assert f"{name}: 2 / 9  questions {sum(deserved.values()):g} / 3" in printed
    honest = subs["questions.ipynb"]["questions"]
    assert [honest[k]["result"] for k in qkeys] == ["wrong", "unanswered", "right"]
    assert subs["questions.ipynb"]["status"] == "ok"  # an unanswered question is no error
    hostile = subs["questions_tamper.ipynb"]
    assert [hostile["questions"][k]["result"] for k in qkeys] == ["wrong", "invalid", "wrong"]
    assert "review" in hostile["status"] and "defines its own check()" in " ".join(hostile["notes"])
    # the honest value of the hostile answers, graded in this process, earns nothing: the tampering gained nothing
    assert sum(_deserved(HOSTILE_ANSWERS).values()) == 0.0
