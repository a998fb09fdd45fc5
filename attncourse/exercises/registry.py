"""The registries of graded exercises and questions, and how to register one.

``EXERCISES`` maps a key (``"00.channel_stat"``) to an :class:`Exercise` (a checker and its reference
solution); ``QUESTIONS`` maps a key to a :class:`Question` (a choice or a number, counted apart). The two share
one key space. The session's best scores are kept here too (``_SCOREBOARD``, ``_QUESTION_BOARD``).
"""
from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np
import torch

from .cases import CaseResult, _num


@dataclass
class Exercise:
    """A registered exercise. ``checker(learner)`` yields :class:`CaseResult`; ``solution`` is the reference."""

    key: str
    title: str
    points: float
    checker: Callable[[Any], Iterable[CaseResult]]
    solution: Any
    expects: str = "callable"  # "callable" (function or class) or "any" (no type pre-check)

    @property
    def seed(self) -> int:
        """A stable per-exercise seed (the same in every process and Python version)."""
        return zlib.crc32(self.key.encode("utf-8")) & 0x7FFFFFFF


EXERCISES: dict[str, Exercise] = {}


_REFERENCE_CASES: dict[str, list[str]] = {}  # key -> case names the reference solution produces


_SCOREBOARD: dict[str, tuple[float, float]] = {}  # key -> (best earned, total) in this session


_QUESTION_BOARD: dict[str, tuple[float, float]] = {}  # the same for questions, kept apart


def register_exercise(key: str, *, title: str, points: float, solution: Any, expects: str = "callable"):
    """Decorator registering ``checker(learner) -> Iterable[CaseResult]`` under ``key`` (e.g. ``"00.reweight"``).

    A second registration of the same key raises ``ValueError`` — unless it is the same checker
    re-executed (a module reloaded with ``importlib.reload``), which replaces the old one.
    """
    if not isinstance(key, str) or not re.fullmatch(r"[0-9A-Za-z_]+(\.[0-9A-Za-z_]+)+", key):
        raise ValueError(f"register_exercise: key must look like '00.name', got {key!r}")
    if not (isinstance(points, (int, float)) and points > 0):
        raise ValueError(f"register_exercise({key!r}): points must be positive, got {points!r}")
    if expects not in ("callable", "any"):
        raise ValueError(f"register_exercise({key!r}): expects must be 'callable' or 'any', got {expects!r}")

    if key in QUESTIONS:
        raise ValueError(f"register_exercise: {key!r} is already registered as a question")

    def decorator(checker: Callable[[Any], Iterable[CaseResult]]):
        old = EXERCISES.get(key)
        if old is not None and (_qualname(old.checker) != _qualname(checker)):
            raise ValueError(f"exercise {key!r} is already registered (by {_qualname(old.checker)})")
        EXERCISES[key] = Exercise(key, title, float(points), checker, solution, expects)
        _REFERENCE_CASES.pop(key, None)
        return checker

    return decorator


def _qualname(fn: Any) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def list_exercises(prefix: str | None = None) -> list[str]:
    """The registered exercise keys (those starting with ``prefix``, e.g. ``"00."``), sorted."""
    return sorted(k for k in EXERCISES if prefix is None or k.startswith(prefix))


@dataclass
class Question:
    """A registered question with a definite answer: one of ``choices`` (``kind == "choice"``) or a number
    within ``tolerance`` (``kind == "number"``).

    ``answer`` is the correct letter or number, or a function of no arguments returning it — the form to
    use whenever the answer depends on recorded results (it reads them each time it is asked).
    ``explanation`` is a string, or a function taking the correct answer and returning one; it is shown
    once the learner has answered. ``when`` says where it stands in the notebook: ``"predict"`` (before an
    experiment or a computation) or ``"interpret"`` (after it).
    """

    key: str
    title: str
    kind: str
    when: str
    answer: Any
    explanation: Any
    choices: dict[str, str] | None = None
    tolerance: float = 0.0
    points: float = 1.0
    unit: str = ""

    def correct(self) -> Any:
        """The correct letter or number (computing it when ``answer`` is a function)."""
        value = self.answer() if callable(self.answer) else self.answer
        if self.kind == "choice":
            if value not in (self.choices or {}):
                raise ValueError(f"question {self.key!r}: the answer {value!r} is not one of its choices")
            return value
        number = _as_number(value)
        if number is None:
            raise ValueError(f"question {self.key!r}: the answer {value!r} is not a number")
        return number

    def explain(self, correct: Any) -> str:
        """The explanation, given the correct answer."""
        return str(self.explanation(correct) if callable(self.explanation) else self.explanation)

    def describe(self, value: Any) -> str:
        """``"b (1 to 5 points)"`` for a choice, ``"12.5 %"`` for a number."""
        if self.kind == "choice":
            return f"{value} ({self.choices[value]})" if value in (self.choices or {}) else repr(value)
        text = _num(value) if isinstance(value, (int, float)) else repr(value)
        return f"{text} {self.unit}".strip()


QUESTIONS: dict[str, Question] = {}


def register_question(key: str, *, title: str, answer: Any, explanation: Any, choices: dict[str, str] | None = None,
                      tolerance: float | None = None, when: str = "predict", points: float = 1, unit: str = "") -> Question:
    """Register a question under ``key`` (e.g. ``"02.predict_gain"``) and return it.

    Give ``choices`` (``{"a": "text", "b": "text", …}``: lower-case letters) for a choice question, or
    ``tolerance`` (absolute, ≥ 0) for a number question — exactly one of the two. ``answer`` and
    ``explanation`` may be functions (see :class:`Question`); a fixed ``answer`` is validated now.
    Registering the same key again with the same title and form replaces it (a reloaded module);
    anything else under a taken key raises ``ValueError``.
    """
    if not isinstance(key, str) or not re.fullmatch(r"[0-9A-Za-z_]+(\.[0-9A-Za-z_]+)+", key):
        raise ValueError(f"register_question: key must look like '00.name', got {key!r}")
    if key in EXERCISES:
        raise ValueError(f"register_question: {key!r} is already registered as an exercise")
    if not (isinstance(points, (int, float)) and points > 0):
        raise ValueError(f"register_question({key!r}): points must be positive, got {points!r}")
    if when not in ("predict", "interpret"):
        raise ValueError(f"register_question({key!r}): when must be 'predict' or 'interpret', got {when!r}")
    if (choices is None) == (tolerance is None):
        raise ValueError(f"register_question({key!r}): give either choices (a choice question) or tolerance "
                         "(a number question)")
    if choices is not None:
        if (not isinstance(choices, dict) or len(choices) < 2
                or not all(isinstance(k, str) and re.fullmatch(r"[a-z]", k) for k in choices)):
            raise ValueError(f"register_question({key!r}): choices must map two or more lower-case letters to texts")
        kind = "choice"
    else:
        if not isinstance(tolerance, (int, float)) or isinstance(tolerance, bool) or not tolerance >= 0:
            raise ValueError(f"register_question({key!r}): tolerance must be a number ≥ 0, got {tolerance!r}")
        kind = "number"
    q = Question(key, title, kind, when, answer, explanation, dict(choices) if choices else None,
                 float(tolerance or 0.0), float(points), unit)
    if not callable(answer):
        q.correct()  # raises ValueError for a fixed answer that is not a choice or not a number
    old = QUESTIONS.get(key)
    if old is not None and (old.title, old.kind, old.choices) != (q.title, q.kind, q.choices):
        raise ValueError(f"question {key!r} is already registered (as {old.title!r})")
    QUESTIONS[key] = q
    return q


def list_questions(prefix: str | None = None) -> list[str]:
    """The registered question keys (those starting with ``prefix``, e.g. ``"00."``), sorted."""
    return sorted(k for k in QUESTIONS if prefix is None or k.startswith(prefix))


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, torch.Tensor) or isinstance(value, np.ndarray):
        if value.size == 1 if isinstance(value, np.ndarray) else value.numel() == 1:
            value = value.item()
        else:
            return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str):
        try:
            value = float(value.strip().replace(",", "").replace("_", ""))
        except ValueError:
            return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None
