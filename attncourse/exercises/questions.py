"""Grading and checking a question (predict first, interpret after), and the helpers that compute answers
from recorded results (:func:`bucket`, :func:`recorded`, :func:`recorded_gain`, :func:`recorded_note`).
"""
from __future__ import annotations

from typing import Any, Iterable

from .cases import CaseResult, NOT_ANSWERED_HINT, _MISSING, _Points, _fmt, _num, _say, describe_exception
from .registry import Question, _QUESTION_BOARD, _as_number


def _read_answer(q: Question, given: Any) -> tuple[Any, str]:
    """``(normalised answer, "")`` or ``(None, why it is not an answer)``."""
    if given is None or given is Ellipsis or given is _MISSING:
        return None, NOT_ANSWERED_HINT
    if q.kind == "choice":
        letters = ", ".join(q.choices)
        if isinstance(given, str):
            text = given.strip().lower().strip("()[]. ")
            if text in q.choices:
                return text, ""
            for letter, option in q.choices.items():
                if text == option.strip().lower().rstrip("."):
                    return letter, ""
        return None, f"answer with one of the letters {letters} (a string, e.g. \"{next(iter(q.choices))}\"), got {given!r}"
    number = _as_number(given)
    if number is None:
        return None, f"answer with a number, got {given!r}"
    return number, ""


def _is_right(q: Question, mine: Any, correct: Any) -> bool:
    if q.kind == "choice":
        return mine == correct
    return abs(mine - correct) <= q.tolerance + 1e-12 * max(1.0, abs(correct))


def _grade_question(q: Question, given: Any) -> tuple[float, float, list[CaseResult]]:
    mine, why = _read_answer(q, given)
    if mine is None:
        return 0.0, q.points, [CaseResult("answer", False, why)]
    try:
        correct = q.correct()
    except Exception as err:  # e.g. the recorded results it reads are missing
        return 0.0, q.points, [CaseResult("answer", False, f"cannot be checked here: {describe_exception(err)}")]
    if _is_right(q, mine, correct):
        return q.points, q.points, [CaseResult("answer", True)]
    within = f" (± {_num(q.tolerance)})" if q.kind == "number" and q.tolerance else ""
    return 0.0, q.points, [CaseResult("answer", False, f"you answered {q.describe(mine)}; the answer is "
                                                       f"{q.describe(correct)}{within}")]


def _check_question(q: Question, given: Any) -> float:
    _say(f"{q.key} — {q.title} (question: counted apart from the exercises)")
    earned, total, (res,) = _grade_question(q, given)
    mine, why = _read_answer(q, given)
    if mine is None:
        what = f"one of {', '.join(q.choices)}" if q.kind == "choice" else "a number"
        _say(f"  ❓ {why}: set your answer ({what}) and run this cell again" if why == NOT_ANSWERED_HINT
             else f"  ❌ {why}")
    elif res.passed:
        _say(f"  ✅ {q.describe(mine)}")
    else:
        _say(f"  ❌ {res.hint}")
    if mine is not None and not res.hint.startswith("cannot be checked"):
        _say(f"  Why: {q.explain(q.correct())}")
    _say(f"Question points: {_fmt(earned)} / {_fmt(total)}")
    best = _QUESTION_BOARD.get(q.key, (0.0, total))[0]
    _QUESTION_BOARD[q.key] = (max(best, earned), total)
    return _Points(earned)


def bucket(value: float, edges: Iterable[float], letters: str = "abcdefghij") -> str:
    """The letter of the interval ``value`` falls in: ``edges`` ascending, ``value < edges[0]`` → ``"a"``,
    ``edges[0] ≤ value < edges[1]`` → ``"b"``, …, ``value ≥ edges[-1]`` → the last letter.

    For choice questions whose options are ranges ("less than 1 point", "1 to 5 points", …) and whose answer
    is computed from recorded results: ``answer=lambda: bucket(gain, [1, 5])``.
    """
    edges = list(edges)
    if any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"bucket: edges must be ascending, got {edges}")
    return letters[sum(1 for e in edges if value >= e)]


def recorded(name: str) -> dict:
    """The recorded full-profile results of experiment ``name`` (``attncourse.load_results``), or a
    ``LookupError`` saying how to make them — for question answers that read recorded results."""
    from ..experiments import load_results  # experiments sit above exercises: imported when asked, not at import

    res = load_results(name)
    if res is None:
        raise LookupError(f"no recorded results of {name!r} (make them with: python -m attncourse run-all "
                          f"--only {name} --profile full)")
    return res


def recorded_gain(name: str, arm: str, baseline: str | None = None) -> float:
    """``arm``'s mean test accuracy minus ``baseline``'s (default: the first arm), in percentage points,
    from the recorded results of experiment ``name``."""
    res = recorded(name)
    arms = res["arms"]
    base = baseline if baseline is not None else next(iter(arms))
    for a in (arm, base):
        if a not in arms:
            raise LookupError(f"no arm {a!r} in the recorded results of {name!r}; arms: {list(arms)}")
    return 100 * (arms[arm]["mean_test_acc"] - arms[base]["mean_test_acc"])


def recorded_note(name: str) -> str:
    """Where the recorded results of ``name`` come from, for an explanation: ``"full profile, 3 seeds, cpu (…)"``."""
    res = recorded(name)
    n = len(res.get("seeds", []))
    return f"{res['profile']} profile, {n} seed{'s' if n != 1 else ''}, {res['device']}"
