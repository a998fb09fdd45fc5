"""Grading the predict-first and interpret questions of a submission, apart from its exercises.

A question's answer is plain data: a letter or a number (``q_gain = "b"; check("02.predict_gain", q_gain)``).
The worker evaluates the answer expression at the end of the notebook and sends back only that value
(:func:`attncourse.grading.worker.plain_answer`); here it is decoded by :func:`decode_answer`, which
accepts ``None``, booleans, numbers, strings and one-element arrays, and never builds a proxy, so
grading a question never calls back into the worker. The value is graded by the grader's own
:data:`attncourse.exercises.QUESTIONS` (the worker's copy of the package has none), and the points
go to their own columns and total, never into the exercise total.
"""
from __future__ import annotations

import math

MAX_TEXT = 200  # characters of an answer or a hint kept in the report


def registry() -> dict:
    """The grader's own questions: key -> title, points, when (predict / interpret), kind (choice / number)."""
    from ..exercises import QUESTIONS

    return {k: {"title": q.title, "points": float(q.points), "when": q.when, "kind": q.kind}
            for k, q in sorted(QUESTIONS.items())}


def _short(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "…"


def decode_answer(enc, arrays: list):
    """``(value, "")`` for a plain answer, ``(None, why)`` for anything else (nothing is ever called)."""
    from . import wire

    if not isinstance(enc, dict):
        return None, "the worker sent no answer"
    t, v = enc.get("t"), enc.get("v")
    if t == "none":
        return None, ""
    if t == "bool":
        return v is True, ""
    if t == "int" and isinstance(v, str) and len(v) <= 400:
        try:
            return int(v), ""
        except ValueError:
            return None, "the worker sent a malformed number"
    if t == "float" and isinstance(v, str):
        try:
            return float(v[:64]), ""
        except ValueError:
            return None, "the worker sent a malformed number"
    if t == "str" and isinstance(v, str):
        return v, ""
    if t in ("tensor", "ndarray"):
        idx = enc.get("a")
        if not isinstance(idx, int) or not 0 <= idx < len(arrays):
            return None, "the worker sent a malformed array"
        arr = arrays[idx]
        size = math.prod(arr[1]) if isinstance(arr, tuple) else arr.size
        if size != 1:
            return None, f"the answer is an array of {size} values, not one letter or number"
        value = wire.raw_to_tensor(arr).reshape(()).item()
        return value, ""
    if t == "unplain":
        name = enc.get("type") if isinstance(enc.get("type"), str) else "object"
        return None, f"the answer is an object of type {name[:80]}, not plain data (a letter or a number)"
    return None, "the answer is not plain data (a letter or a number)"


def _blank(points: float, expr) -> dict:
    return {"points": points, "earned": 0.0, "answer": expr, "value": None, "result": "no check call", "note": ""}


def new_rows(columns: list[str], qreg: dict, calls: dict[str, str]) -> dict:
    rows = {k: _blank(qreg[k]["points"], calls.get(k)) for k in columns}
    for k in columns:
        if k not in calls:
            rows[k]["note"] = f"no check({k!r}, …) call in the notebook"
    return rows


def grade_question(run, key: str, expr: str, sub: dict, qreg: dict, lock) -> None:
    """Fetch the learner's answer to question ``key`` from the worker as plain data and grade it here."""
    from ..exercises import core
    from .peer import RemoteError

    row = sub["questions"][key]
    try:
        if run.worker is None:
            run.exec_cell("pass", 60)  # restart and replay
        if run.worker is None:
            raise RemoteError("no working worker")
        reply, arrays = run.request({"op": "answer", "expr": expr}, run.ctx["grade_timeout"], arrays=True)
    except Exception as err:  # noqa: BLE001 — the learner's error (NameError…), a time limit, an odd reply
        row.update(result="not evaluated", note=_short(f"could not evaluate the answer `{expr}` at the end of the "
                                                       f"notebook: {type(err).__name__}: {err}"))
        if "time limit" in str(err) or type(err).__name__ == "KeyboardInterrupt":
            sub["flags"].append("timeout")
            sub["notes"].append(f"answering {key}: the learner's code hit the time limit")
        if run.peer is not None and run.peer.broken:
            run.stop()
        return
    value, why = decode_answer(reply.get("result"), arrays)
    if why:
        row.update(result="invalid", note=_short(why))
        return
    row["value"] = _short(repr(value))
    with lock:
        earned, total, results = core.grade(key, value)
    hint = str(results[0].hint) if results else ""
    try:
        earned = float(earned)
    except (TypeError, ValueError):
        earned = 0.0
    row["earned"] = round(min(max(earned if earned == earned else 0.0, 0.0), qreg[key]["points"]), 2)
    if value is None:
        row["result"] = "unanswered"
    elif results and results[0].passed:
        row["result"] = "right"
    elif hint.startswith("cannot be checked"):
        row["result"] = "not checkable"
    elif hint.startswith("answer with"):
        row["result"] = "invalid"
    else:
        row["result"] = "wrong"
    row["note"] = _short(hint)
