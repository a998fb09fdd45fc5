"""Graded exercises: the registry, ``check`` for learners, ``grade`` for the grader, helpers for checkers.

This file is the face of the checking machinery; each job lives in its own file and every name is importable
from here: :mod:`.checking` (``check``, ``grade``, the score board), :mod:`.cases` (``run_case`` and the
comparisons), :mod:`.mistakes` (naming a known mistake), :mod:`.readings` (a learner's MLP read by role,
gradient cases), :mod:`.registry` (``register_exercise``, ``register_question``) and :mod:`.questions`.

A learner writes a function (or an ``nn.Module`` class) in a stub cell and runs::

    check("00.channel_stat", channel_stat)

which prints one line per test case (✅ or ❌ with a specific hint) and ``Points: x / y``. ``check``
**never raises**: a stub that still raises ``NotImplementedError``, a crash inside the learner's code,
an object of the wrong type or a mistyped key all score 0 with a message, so the notebook runs on.

An exercise is a *checker*: a generator taking the learner's object and yielding one
:class:`CaseResult` per case. Checkers compare against reference behaviour on seeded random inputs::

    @register_exercise("00.example", title="Double a tensor", points=2, solution=lambda x: 2 * x)
    def _check(learner):
        gen = seeded_generator(0)
        for shape in [(2, 3), (4, 1, 5)]:
            x = torch.randn(shape, generator=gen)
            yield run_case(f"shape {list(shape)}", lambda: compare_tensors(learner(x), 2 * x))

Scoring: ``points × passed cases / total cases`` (rounded to 0.01). The total number of cases is
the number the checker yields for the reference ``solution`` (computed once and cached), so a learner
whose code makes the checker stop early still gets the remaining cases marked as failed. A case marked
as a side property (``side_property(run_case(...))``: input unchanged, gradients flow, shape, range, …)
counts only once every value case of the exercise passed (:mod:`.side_properties`).

Fair checkers (issue 17; ``tests/test_exercises_fairness.py`` holds every registered exercise to this):

* judge what the exercise teaches, not how the answer is written: a count is its value
  (:func:`compare_numbers` with ``integer=True`` accepts ``12.0``); a learner's module is read by role
  (:func:`mlp_readings` accepts ``nn.Linear``, 1×1 / kernel-1 convs and raw matrices) or by behaviour,
  never by parameter order or shape alone, unless the statement asks for a structure;
* name a mistake only when it explains the answer: :func:`compare_number_cases` requires it to explain
  every input of the case, :func:`match_mistakes` names all mistakes that give the same output, and the
  specific diagnoses come before the generic "values differ";
* gradient cases test that gradients flow (:func:`gradient_flow`, :func:`compare_gradient`); a wrong
  output is the value cases' to report, once;
* every new exercise adds at least two correct answers in different styles and three named mistakes
  to ``FAIRNESS`` in that test file (the suite fails for an exercise without an entry).

Questions (predict first, interpret after) are registered apart, with :func:`register_question`, and
counted apart from the exercises' points: a *choice* question takes one letter, a *number* question a
number within a tolerance. An answer that depends on a recorded experiment is a function that reads it
(``answer=lambda: ...ac.load_results(...)...``), never a typed-in value::

    register_question("02.predict_gain", title="Predict: how much does SE add?", when="predict",
                      choices={"a": "less than 1 point", "b": "1 to 5 points", "c": "more than 5 points"},
                      answer=lambda: bucket(gain_from_recorded_results()),
                      explanation=lambda correct: f"... measured: ... so ({correct}) ...")

The learner writes ``answer = "b"`` and runs ``check("02.predict_gain", answer)``: ``check`` prints
whether it is right, then the explanation (only once an answer is given; ``None`` means not yet
answered). :func:`score_summary` lists questions in their own table with their own total, and
:func:`grade` scores them like exercises (one case, ``"answer"``) so a grader needs nothing new to run them.
"""
from __future__ import annotations

from .cases import (NOT_ANSWERED_HINT, NOT_IMPLEMENTED_HINT, CaseResult, compare_number_cases, compare_numbers,
                    compare_tensors, describe_exception, deterministic, run_case, seeded_generator, tensor_type_hint)
from .checking import check, grade, reset_scores, score_summary
from .mistakes import _close, join_hints, match_mistakes
from .questions import _grade_question, bucket, recorded, recorded_gain, recorded_note
from .readings import MLPWeights, compare_gradient, gradient_flow, mlp_readings
from .registry import (EXERCISES, QUESTIONS, Exercise, Question, _REFERENCE_CASES, _SCOREBOARD, list_exercises,
                       list_questions, register_exercise, register_question)

__all__ = [
    "CaseResult", "Exercise", "EXERCISES", "register_exercise", "grade", "check", "score_summary",
    "list_exercises", "reset_scores", "run_case", "compare_tensors", "compare_numbers", "compare_number_cases",
    "match_mistakes", "join_hints", "MLPWeights", "mlp_readings", "gradient_flow", "compare_gradient",
    "tensor_type_hint", "describe_exception", "seeded_generator", "deterministic", "NOT_IMPLEMENTED_HINT",
    "Question", "QUESTIONS", "register_question", "list_questions", "NOT_ANSWERED_HINT", "bucket", "recorded",
    "recorded_gain", "recorded_note",
]
