"""The learner's entry point and the report: :func:`check` prints ✅/❌ per case and the points, :func:`grade`
scores silently (for the grader), :func:`score_summary` prints the session's board.

Neither ever raises: a bug in a checker becomes a failed case saying so.
"""
from __future__ import annotations

import difflib
from typing import Any

from .cases import CaseResult, NOT_IMPLEMENTED_HINT, _MISSING, _Points, _fmt, _say, describe_exception, deterministic
from .questions import _check_question, _grade_question
from .side_properties import earned_points, side_note
from .registry import (EXERCISES, QUESTIONS, Exercise, _QUESTION_BOARD, _REFERENCE_CASES, _SCOREBOARD,
                       list_exercises, list_questions)


def _close_keys(key: Any) -> list[str]:
    return difflib.get_close_matches(str(key), list(EXERCISES) + list(QUESTIONS), n=3, cutoff=0.5)


def _unknown_key_message(key: Any) -> str:
    close = _close_keys(key)
    hint = f"; did you mean {', '.join(repr(k) for k in close)}?" if close else ""
    return f"unknown exercise {key!r}{hint} (list_exercises() and list_questions() show them all)"


def _reference_cases(ex: Exercise) -> list[str]:
    """The case names the reference solution produces (cached): they fix the total number of cases."""
    if ex.key not in _REFERENCE_CASES:
        names: list[str] = []
        try:
            with deterministic(ex.seed):
                for res in ex.checker(ex.solution):
                    names.append(res.name if isinstance(res, CaseResult) else str(res))
        except Exception:  # a checker bug: fall back to counting the learner's cases
            names = []
        _REFERENCE_CASES[ex.key] = names
    return _REFERENCE_CASES[ex.key]


def grade(key: str, learner: Any) -> tuple[float, float, list[CaseResult]]:
    """Score ``learner`` on exercise ``key``: ``(earned, total points, results per case)``.

    Silent and never raises. A case that raises inside the checker (outside :func:`run_case`) fails,
    and so do the cases that did not run after it. Points are ``points × passed / cases``.
    A question key (:func:`register_question`) gives one case, ``"answer"``, worth the question's points.
    """
    try:
        if isinstance(key, str) and key in QUESTIONS:
            return _grade_question(QUESTIONS[key], learner)
        return _grade(key, learner)
    except Exception as err:  # a bug in a checker must not reach the learner as a traceback
        item = (EXERCISES.get(key) or QUESTIONS.get(key)) if isinstance(key, str) else None
        total = float(item.points) if item is not None else 0.0
        return 0.0, total, [CaseResult("checker", False, f"internal checker error, please report it: {describe_exception(err)}")]


def _grade(key: str, learner: Any) -> tuple[float, float, list[CaseResult]]:
    ex = EXERCISES.get(key) if isinstance(key, str) else None
    if ex is None:
        return 0.0, 0.0, [CaseResult("exercise key", False, _unknown_key_message(key))]
    names = _reference_cases(ex)
    if ex.expects == "callable" and not callable(learner):
        hint = (f"expected a function or class, got {type(learner).__name__}"
                f" — pass the function itself, e.g. check({key!r}, my_function), not my_function(...)")
        cases = names or ["call"]
        return 0.0, ex.points, [CaseResult(n, False, hint) for n in cases]
    results: list[CaseResult] = []
    aborted = ""
    with deterministic(ex.seed):
        try:
            for res in ex.checker(learner):
                if not isinstance(res, CaseResult):
                    res = CaseResult(str(res), False, "checker yielded a non-CaseResult (a bug in the checker)")
                results.append(res)
        except (Exception, SystemExit) as err:
            aborted = describe_exception(err)
    if aborted:
        name = names[len(results)] if len(results) < len(names) else f"case {len(results) + 1}"
        results.append(CaseResult(name, False, aborted))
        rest = "not run: an earlier case failed" if aborted != NOT_IMPLEMENTED_HINT else NOT_IMPLEMENTED_HINT
        results.extend(CaseResult(n, False, rest) for n in names[len(results):])
    n_cases = max(len(names), len(results))
    results.extend(CaseResult(n, False, "not run") for n in names[len(results):])
    earned = earned_points(ex.points, results, n_cases)
    return earned, ex.points, results


def check(key: str, learner: Any = _MISSING) -> float:
    """Check ``learner`` against exercise ``key``; print ✅/❌ per case and the points. Never raises.

    For a question ``key`` ``learner`` is the answer (a letter or a number; ``None``: not answered yet):
    prints whether it is right and, once answered, the explanation."""
    try:
        if isinstance(key, str) and key in QUESTIONS:
            return _check_question(QUESTIONS[key], learner)
        if not isinstance(key, str) or key not in EXERCISES:
            _say(f"❌ {_unknown_key_message(key)}")
            return _Points(0.0)
        ex = EXERCISES[key]
        if learner is _MISSING:
            _say(f"❌ {key}: pass your answer too, e.g. check({key!r}, my_function)")
            return _Points(0.0)
        earned, total, results = grade(key, learner)
        _say(f"{key} — {ex.title}")
        hints = {r.hint for r in results if not r.passed}
        if len(results) > 1 and not any(r.passed for r in results) and len(hints) == 1:  # one cause: say it once
            hint = hints.pop()
            if hint == NOT_IMPLEMENTED_HINT:
                hint += ": replace the `raise NotImplementedError` line with your code"
            _say(f"  ❌ all {len(results)} cases: {hint}")
        else:
            for r in results:
                _say(f"  ✅ {r.name}{side_note(r, results)}" if r.passed else f"  ❌ {r.name}: {r.hint or 'failed'}")
        _say(f"Points: {_fmt(earned)} / {_fmt(total)}")
        best = _SCOREBOARD.get(key, (0.0, total))[0]
        _SCOREBOARD[key] = (max(best, earned), total)
        return _Points(earned)
    except Exception as err:  # printing or bookkeeping failed: still never raise
        try:
            _say(f"❌ check({key!r}) failed internally: {describe_exception(err)}")
        except Exception:
            pass
        return _Points(0.0)


class Scoreboard(dict):
    """``{key: (best earned, total)}`` returned by :func:`score_summary` (Jupyter does not echo it).

    It holds the exercises; ``board.questions`` is a second ``Scoreboard`` with the questions, counted apart.
    """

    questions: "Scoreboard"

    @property
    def earned(self) -> float:
        return round(sum(e for e, _ in self.values()), 2)

    @property
    def total(self) -> float:
        return round(sum(t for _, t in self.values()), 2)

    def _ipython_display_(self) -> None:
        pass


def _board(scores: dict, keys: list[str], registry: dict, prefix: str | None) -> Scoreboard:
    board = {k: v for k, v in scores.items() if prefix is None or k.startswith(prefix)}
    if prefix is not None:
        for k in keys:
            board.setdefault(k, (0.0, registry[k].points))
    return Scoreboard(sorted(board.items()))


def _print_board(board: Scoreboard, scores: dict, total_label: str) -> None:
    width = max(len(k) for k in board) + 2
    for k, (earned, total) in board.items():
        mark = "✅" if earned >= total else ("—" if k not in scores else "❌")
        _say(f"{mark} {k:<{width}}{_fmt(earned):>6} / {_fmt(total)}")
    _say(f"   {total_label:<{width}}{_fmt(board.earned):>6} / {_fmt(board.total)}")


def score_summary(prefix: str | None = None) -> Scoreboard:
    """Print and return the best score of each exercise checked in this session, and of each question apart.

    With ``prefix`` (e.g. ``"00."``) only those exercises and questions are shown, and the ones not checked
    yet are listed with 0 points, so a module's summary shows what is left. The returned board holds the
    exercises (its ``earned`` and ``total`` are the exercise points); ``board.questions`` the questions.
    """
    board = _board(_SCOREBOARD, list_exercises(prefix) if prefix is not None else [], EXERCISES, prefix)
    board.questions = _board(_QUESTION_BOARD, list_questions(prefix) if prefix is not None else [], QUESTIONS, prefix)
    if not board and not board.questions:
        _say("No exercises checked yet in this session.")
        return board
    if board:
        _print_board(board, _SCOREBOARD, "Total")
    if board.questions:
        _say("Questions (predict and interpret; counted apart from the exercises):")
        _print_board(board.questions, _QUESTION_BOARD, "Questions total")
    return board


def reset_scores() -> None:
    """Forget the session's scoreboard (exercises and questions)."""
    _SCOREBOARD.clear()
    _QUESTION_BOARD.clear()
