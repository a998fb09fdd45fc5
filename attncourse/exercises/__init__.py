"""Graded exercises: ``check(key, learner)`` gives instant feedback; see :mod:`.core`.

Each course module keeps its exercises in ``mNN_<topic>.py`` in this folder (``m00_foundations.py``,
…). Every such file is imported here, so importing :mod:`attncourse.exercises` registers all of them::

    from attncourse.exercises import check, score_summary
    check("00.channel_stat", channel_stat)
    score_summary("00.")

Predict-first and interpret questions are registered with :func:`register_question` (see :mod:`.core`)
and checked with the same ``check(key, answer)``; ``score_summary`` counts them apart.
"""
from __future__ import annotations

import importlib
import pkgutil
import re
import warnings

from .core import (EXERCISES, NOT_IMPLEMENTED_HINT, CaseResult, Exercise, check, compare_gradient, compare_number_cases, compare_numbers,
                   compare_tensors, describe_exception, deterministic, grade, join_hints, list_exercises, match_mistakes,
                   MLPWeights, gradient_flow, mlp_readings, register_exercise, reset_scores, run_case, score_summary, seeded_generator,
                   NOT_ANSWERED_HINT, QUESTIONS, Question, bucket, list_questions, recorded, recorded_gain, recorded_note,
                   register_question)
from .side_properties import side_property

__all__ = [
    "check", "grade", "score_summary", "list_exercises", "reset_scores", "register_exercise", "EXERCISES",
    "Exercise", "CaseResult", "run_case", "compare_tensors", "compare_numbers", "compare_number_cases", "match_mistakes",
    "join_hints", "MLPWeights", "mlp_readings", "gradient_flow", "compare_gradient",
    "describe_exception",
    "seeded_generator", "deterministic", "NOT_IMPLEMENTED_HINT", "EXERCISE_MODULES",
    "Question", "QUESTIONS", "register_question", "list_questions", "NOT_ANSWERED_HINT", "bucket", "recorded",
    "recorded_gain", "recorded_note", "side_property",
]

_MODULE_NAME = re.compile(r"m\d\d_\w+")


def _discover() -> list[str]:
    """Import every ``mNN_*.py`` module of this package (a placeholder file simply registers nothing)."""
    loaded = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not _MODULE_NAME.fullmatch(info.name):
            continue
        try:
            importlib.import_module(f"{__name__}.{info.name}")
        except Exception as err:  # one broken module must not take the other modules' exercises down
            warnings.warn(f"attncourse.exercises: could not import {info.name}: {type(err).__name__}: {err}",
                          RuntimeWarning, stacklevel=2)
            continue
        loaded.append(info.name)
    return loaded


EXERCISE_MODULES: list[str] = _discover()
