"""Graded exercises: the registry, ``check`` for learners, ``grade`` for the grader, helpers for checkers.

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

import contextlib
import difflib
import math
import os
import random
import re
import traceback
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch

from .side_properties import earned_points, side_note

__all__ = [
    "CaseResult", "Exercise", "EXERCISES", "register_exercise", "grade", "check", "score_summary",
    "list_exercises", "reset_scores", "run_case", "compare_tensors", "compare_numbers", "compare_number_cases",
    "match_mistakes", "join_hints", "MLPWeights", "mlp_readings", "gradient_flow", "compare_gradient",
    "tensor_type_hint", "describe_exception", "seeded_generator", "deterministic", "NOT_IMPLEMENTED_HINT",
    "Question", "QUESTIONS", "register_question", "list_questions", "NOT_ANSWERED_HINT", "bucket", "recorded",
    "recorded_gain", "recorded_note",
]

NOT_IMPLEMENTED_HINT = "not implemented yet (the stub still raises NotImplementedError)"
NOT_ANSWERED_HINT = "not answered yet (the answer is still None)"
_MAX_HINT = 300  # characters; longer exception messages are cut


@dataclass
class CaseResult:
    """The outcome of one test case: ``hint`` says what went wrong (empty when it passed)."""

    name: str
    passed: bool
    hint: str = ""
    side: bool = False  # a side property: counts only once every value case passed (see side_properties.py)


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


# --------------------------------------------------------------------------------------------------
# determinism
# --------------------------------------------------------------------------------------------------
def seeded_generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed``: draw checker inputs from it, not the global RNG."""
    return torch.Generator().manual_seed(int(seed))


@contextlib.contextmanager
def deterministic(seed: int) -> Iterator[None]:
    """Seed Python, NumPy and torch (CPU) for the block, then restore the caller's RNG states.

    ``grade`` runs every checker inside this, so results do not depend on what the notebook did
    before, and checking does not disturb the learner's own random streams.
    """
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


# --------------------------------------------------------------------------------------------------
# helpers for checkers
# --------------------------------------------------------------------------------------------------
def _short(text: str, limit: int = _MAX_HINT) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _learner_frame(tb) -> str:
    """' (in f, line 3)' for the innermost traceback frame of the learner's code (not a library's)."""
    skip = (_PKG_DIR, os.path.dirname(torch.__file__), os.path.dirname(os.__file__))
    found = ""
    for frame in traceback.extract_tb(tb):
        name = frame.filename
        if not name.startswith(skip) and "site-packages" not in name and "dist-packages" not in name:
            found = f" (in {frame.name}, line {frame.lineno})"
    return found


def describe_exception(err: BaseException) -> str:
    """A one-line hint for an exception raised by learner code: type, message, and where."""
    if isinstance(err, NotImplementedError):
        return NOT_IMPLEMENTED_HINT
    if isinstance(err, SystemExit):
        return "your code called sys.exit() / exit(); return a value instead"
    msg = str(err)
    where = _learner_frame(err.__traceback__) if err.__traceback__ is not None else ""
    return _short(f"{type(err).__name__}: {msg}{where}" if msg else f"{type(err).__name__}{where}")


def run_case(name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> CaseResult:
    """Run one case: ``fn(*args, **kwargs)`` returns ``None``/``True`` (passed), ``False`` (failed),
    a ``str`` (failed, the string is the hint) or a :class:`CaseResult`. An exception — typically
    raised by the learner's code inside ``fn`` — fails the case with its type, message and line."""
    try:
        out = fn(*args, **kwargs)
    except (Exception, SystemExit) as err:  # learner code: report, never propagate
        return CaseResult(name, False, describe_exception(err))
    if isinstance(out, CaseResult):
        return out
    if out is None or out is True:
        return CaseResult(name, True)
    if out is False:
        return CaseResult(name, False, "wrong result")
    return CaseResult(name, False, _short(str(out)))


def _as_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    return None


def tensor_type_hint(value: Any, what: str = "output") -> str | None:
    """The hint for a value that should be a tensor but is not (``None`` for a tensor)."""
    if isinstance(value, torch.Tensor):
        return None
    if isinstance(value, np.ndarray):
        return f"{what} is a NumPy array; return a torch.Tensor (torch ops keep autograd and the device)"
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return f"{what} is a {type(value).__name__} of {len(value)} tensors; return a single tensor"
    return f"{what} should be a torch.Tensor, got {type(value).__name__}"


def _fmt_shape(shape) -> str:
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def compare_tensors(actual: Any, expected: torch.Tensor, what: str = "output", *, atol: float = 1e-5,
                    rtol: float = 1e-4, mistakes: dict[str, Any] | None = None) -> str | None:
    """``None`` when ``actual`` matches ``expected``; otherwise a specific hint.

    The hint distinguishes: not a tensor; a known mistake (``mistakes`` maps a hint to the output
    that mistake would produce, e.g. ``{"mean taken over channels, not space": x.mean(1, keepdim=True)}``);
    a missing ``keepdim``; a shape mismatch (and whether only the layout differs); integer dtype;
    NaN/inf; values off by a constant factor; otherwise the largest error and where it is.
    """
    if not isinstance(expected, torch.Tensor):
        raise TypeError("compare_tensors: expected must be a tensor (a bug in the checker)")
    if isinstance(actual, np.ndarray):
        return f"{what} is a NumPy array; return a torch.Tensor (torch ops keep autograd and the device)"
    if isinstance(actual, (tuple, list)) and actual and isinstance(actual[0], torch.Tensor):
        return f"{what} is a {type(actual).__name__} of {len(actual)} tensors; return a single tensor"
    got = _as_tensor(actual)
    if got is None:
        return f"{what} should be a torch.Tensor of shape {_fmt_shape(expected.shape)}, got {type(actual).__name__}"
    got = got.detach()
    exp = expected.detach()
    hint = match_mistakes(got, exp, mistakes, atol=atol, rtol=rtol)
    if hint:  # a known mistake gives the most specific hint
        return f"{what}: {hint}"
    if got.shape != exp.shape:
        msg = f"{what} has shape {_fmt_shape(got.shape)}, expected {_fmt_shape(exp.shape)}"
        squeezed = [s for s in exp.shape if s != 1]
        if list(got.shape) == squeezed or (got.dim() < exp.dim() and got.numel() == exp.numel()):
            return msg + " — the reduced dimensions were dropped; did you forget keepdim=True?"
        if got.numel() == exp.numel():
            return msg + " — same number of elements: check your view/reshape/permute"
        if got.dim() == exp.dim():
            diff = [i for i, (a, b) in enumerate(zip(got.shape, exp.shape)) if a != b]
            return msg + f" — dimension {', '.join(map(str, diff))} differs"
        return msg
    if exp.is_floating_point() and not (got.is_floating_point() or got.is_complex()):
        return f"{what} has dtype {got.dtype}, expected a floating-point tensor (integer division or an int tensor?)"
    if got.is_floating_point() and not torch.isfinite(got).all():
        return f"{what} contains NaN or inf"
    g64, e64 = got.to(torch.float64).cpu(), exp.to(torch.float64).cpu()
    if torch.allclose(g64, e64, atol=atol, rtol=rtol):
        return None
    err = (g64 - e64).abs()
    idx = tuple(int(i) for i in np.unravel_index(int(err.argmax()), tuple(err.shape))) if err.dim() else ()
    denom = float((e64 * e64).sum())
    if denom > 0 and e64.numel() > 1:  # a single number is always "off by a factor": no diagnosis in that
        factor = float((g64 * e64).sum()) / denom
        if abs(factor) > 1e-6 and abs(factor - 1) > 1e-3 and torch.allclose(g64, factor * e64, atol=atol, rtol=rtol):
            return f"{what} is off by a constant factor ≈ {factor:.4g} (a missing or extra scale/normalisation?)"
    at = f" at index {list(idx)}" if idx else ""
    return (f"{what} values differ: max |error| {float(err.max()):.3g}{at} "
            f"(got {float(g64[idx]):.4g}, expected {float(e64[idx]):.4g})")


def _pairs(mistakes: Any) -> list[tuple[str, Any]]:
    if not mistakes:
        return []
    items = mistakes.items() if hasattr(mistakes, "items") else mistakes
    return [(str(h), v) for h, v in items if v is not None]


def join_hints(hints: list[str]) -> str:
    """One hint, or several that all explain the same result (named together, never one picked at random)."""
    unique = list(dict.fromkeys(h for h in hints if h))
    if len(unique) <= 1:
        return unique[0] if unique else ""
    return (f"{len(unique)} known mistakes give this same result: "
            + "; or ".join(f"({i}) {h}" for i, h in enumerate(unique, 1)))


def match_mistakes(actual: Any, expected: torch.Tensor | None, mistakes: Any, *, atol: float = 1e-5,
                   rtol: float = 1e-4) -> str | None:
    """The hint(s) of the known mistakes whose output ``actual`` reproduces (``None`` when none does).

    ``mistakes`` maps a hint to the output that mistake gives (or is a list of ``(hint, output)`` pairs,
    so the same hint may come with several outputs). A mistake whose output equals ``expected`` on this
    input is ignored (``expected=None``: the caller has filtered them); when several mistakes give
    ``actual``, all of them are named.
    """
    got = _as_tensor(actual)
    if got is None:
        return None
    found = [hint for hint, wrong in _pairs(mistakes)
             if isinstance(wrong, torch.Tensor) and (expected is None or not _close(wrong, expected, atol, rtol))
             and _close(got, wrong, atol, rtol)]
    return join_hints(found) or None


def _close(a: torch.Tensor, b: torch.Tensor, atol: float, rtol: float) -> bool:
    try:
        return a.shape == b.shape and torch.allclose(a.detach().to(torch.float64).cpu(), b.detach().to(torch.float64).cpu(),
                                                     atol=atol, rtol=rtol)
    except (RuntimeError, TypeError):
        return False


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e18 else f"{x:.6g}"


def compare_numbers(actual: Any, expected: float, what: str = "result", *, rel: float = 1e-9,
                    integer: bool = False, mistakes: dict[str, float] | None = None) -> str | None:
    """``None`` when the number ``actual`` equals ``expected`` (within ``rel``); otherwise a hint.

    ``integer=True`` marks a count: any number with the right value is accepted (``12``, ``12.0``,
    ``np.int64(12)``, a one-element tensor), since what a count teaches is its value, not a Python type;
    a value that is not a whole number gets a hint saying so. ``mistakes`` maps a hint to the value a
    known mistake would give, e.g. ``{"the bias adds c_out parameters": count_without_bias}``; when
    several mistakes give the value, all are named.
    """
    actual = _scalar(actual)
    if isinstance(actual, bool) or not isinstance(actual, (int, float, np.integer, np.floating)):
        return f"{what} should be a number, got {type(actual).__name__}"
    value = float(actual)
    if not math.isfinite(value):
        return f"{what} is {value}"
    if _same_number(value, expected, rel):
        return None
    want = _num(expected)
    found = [hint for hint, wrong in _pairs(mistakes)
             if not _same_number(float(wrong), expected, rel) and _same_number(value, float(wrong), rel)]
    if found:
        return f"{what} is {_show(actual)}, expected {want}: {join_hints(found)}"
    msg = f"{what} is {_show(actual)}, expected {want}"
    if integer and not float(value).is_integer():
        msg += " (a count is a whole number)"
    if expected and value and abs(value / expected - round(value / expected)) < 1e-9 and round(value / expected) > 1:
        msg += f" (exactly {round(value / expected)}× too large)"
    elif expected and value and abs(expected / value - round(expected / value)) < 1e-9 and round(expected / value) > 1:
        msg += f" (exactly {round(expected / value)}× too small)"
    return msg


def _scalar(actual: Any) -> Any:
    """A one-element tensor or NumPy array as the Python number it holds; anything else unchanged."""
    if isinstance(actual, torch.Tensor) and actual.numel() == 1:
        return actual.item()
    if isinstance(actual, np.ndarray) and actual.size == 1:
        return actual.item()
    return actual


def _same_number(a: float, b: float, rel: float) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=0.0 if b else 1e-12)


def _show(actual: Any) -> str:
    whole = isinstance(actual, (int, np.integer, float, np.floating)) and math.isfinite(float(actual)) \
        and float(actual).is_integer()
    return _num(float(actual)) if whole else repr(actual)


def compare_number_cases(cases: Iterable[tuple[str, Any, float, Any]], *, rel: float = 1e-9,
                         integer: bool = False, evidence: Iterable[tuple[Any, float, Any]] = ()) -> str | None:
    """Check several answers of one case at once: ``cases`` holds ``(what, actual, expected, mistakes)``.

    ``None`` when every answer is right. Otherwise the hint for the first wrong answer, naming a known
    mistake only when that mistake explains *every* answer of the case (a mistake that happens to give
    the same number on one input, but not on the others, is not the learner's mistake). When several
    mistakes explain them all, ``evidence`` — more ``(actual, expected, mistakes)`` answers that are not
    graded — narrows them down to those that explain it too (if any does); the rest are named together.
    """
    cases = [(what, actual, float(expected), _pairs(mistakes)) for what, actual, expected, mistakes in cases]
    evidence = [("", actual, float(expected), _pairs(mistakes)) for actual, expected, mistakes in evidence]
    for i, (what, actual, expected, mistakes) in enumerate(cases):
        plain = compare_numbers(actual, expected, what, rel=rel, integer=integer)
        if plain is None:
            continue
        actual = _scalar(actual)
        if isinstance(actual, bool) or not isinstance(actual, (int, float, np.integer, np.floating)) \
                or not math.isfinite(float(actual)):
            return plain  # not a number: say so

        def explains(hint: str, answers=cases) -> bool:
            for _, a, e, ms in answers:
                a = _scalar(a)
                if isinstance(a, bool) or not isinstance(a, (int, float, np.integer, np.floating)):
                    return False
                predicted = [float(v) for h, v in ms if h == hint] or [e]
                if not any(_same_number(float(a), v, rel) for v in predicted):
                    return False
            return True

        found = [hint for hint, wrong in mistakes
                 if not _same_number(float(wrong), expected, rel) and _same_number(float(actual), float(wrong), rel)
                 and explains(hint)]
        if len(set(found)) > 1 and evidence:
            found = [hint for hint in found if explains(hint, evidence)] or found
        if found:
            return f"{what} is {_show(actual)}, expected {_num(expected)}: {join_hints(found)}"
        return plain
    return None


# --------------------------------------------------------------------------------------------------
# reading a learner's two-layer MLP by role, whatever its layers
# --------------------------------------------------------------------------------------------------
@dataclass
class MLPWeights:
    """A two-layer MLP read from a learner's parameters: ``f(z) = W2 · act(W1 · z + b1) + b2`` on ``z [N, C_in]``.

    ``w1 [hidden, C_in]``, ``w2 [C_out, hidden]`` whatever layout the learner stored them in; a missing
    bias is zero. ``ids`` are the indices (in ``module.parameters()``) of the parameters it uses.
    """

    w1: torch.Tensor
    b1: torch.Tensor
    w2: torch.Tensor
    b2: torch.Tensor
    ids: tuple[int, ...] = ()

    @property
    def hidden(self) -> int:
        return int(self.w1.shape[0])

    def pre(self, z: torch.Tensor) -> torch.Tensor:
        """The hidden pre-activations ``W1 · z + b1``, ``[N, hidden]``."""
        return z.reshape(z.shape[0], -1) @ self.w1.t() + self.b1

    def __call__(self, z: torch.Tensor, act: Callable[[torch.Tensor], torch.Tensor] = torch.relu) -> torch.Tensor:
        return act(self.pre(z)) @ self.w2.t() + self.b2


def _matrix(p: torch.Tensor) -> torch.Tensor | None:
    """``p`` as a matrix: a Linear weight or raw matrix (2-D), a kernel-1 Conv1d/Conv2d weight ``[out, in, 1(, 1)]``."""
    if p.dim() == 2:
        return p
    if p.dim() > 2 and all(int(s) == 1 for s in p.shape[2:]):
        return p.reshape(p.shape[0], p.shape[1])
    return None


def _layer_options(p: torch.Tensor, *, c_in: int | None = None, c_out: int | None = None) -> list[tuple[int, torch.Tensor]]:
    """``(width, weight in [out, in] layout)`` for every way ``p`` can be a layer from ``c_in`` (or to ``c_out``)."""
    m = _matrix(p)
    if m is None:
        return []
    rows, cols = int(m.shape[0]), int(m.shape[1])
    out = []
    if c_in is not None:
        if cols == c_in:
            out.append((rows, m))  # [out, in]: nn.Linear, 1×1 conv, kernel-1 Conv1d, W @ z
        if rows == c_in:
            out.append((cols, m.t()))  # [in, out]: a raw matrix used as z @ W
    else:
        if rows == c_out:
            out.append((cols, m))
        if cols == c_out:
            out.append((rows, m.t()))
    return out


def mlp_readings(module: Any, c_in: int, c_out: int, hidden: int | None = None, *, limit: int = 48) -> list[MLPWeights]:
    """Every way to read ``module``'s parameters as one two-layer MLP ``c_in → hidden → c_out`` (by role, not by name).

    Accepts ``nn.Linear``, 1×1 ``nn.Conv2d``, kernel-1 ``nn.Conv1d`` and raw weight matrices in either
    orientation (``z @ W`` or ``W @ z``); biases are the parameters with ``hidden`` and ``c_out`` elements,
    any shape. ``hidden=None`` accepts any hidden width. Checkers compute the reference with each
    reading and keep the one that reproduces the learner's output, so no parameter layout is favoured.
    An empty list means the parameters cannot be read as such an MLP (check by behaviour only).
    """
    try:
        params = [p.detach() for p in module.parameters()]
    except Exception:
        return []
    readings: list[MLPWeights] = []
    for i, p in enumerate(params):
        for h, w1 in _layer_options(p, c_in=c_in):
            if hidden is not None and h != hidden:
                continue
            for j, q in enumerate(params):
                if j == i:
                    continue
                for h2, w2 in _layer_options(q, c_out=c_out):
                    if h2 != h:
                        continue
                    b1s = [k for k, t in enumerate(params) if k not in (i, j) and t.numel() == h] or [None]
                    b2s = [k for k, t in enumerate(params) if k not in (i, j) and t.numel() == c_out] or [None]
                    for k1 in b1s:
                        for k2 in b2s:
                            if k1 is not None and k1 == k2:
                                continue
                            b1 = params[k1].reshape(h) if k1 is not None else torch.zeros(h, dtype=w1.dtype)
                            b2 = params[k2].reshape(c_out) if k2 is not None else torch.zeros(c_out, dtype=w2.dtype)
                            ids = tuple(k for k in (i, j, k1, k2) if k is not None)
                            readings.append(MLPWeights(w1, b1, w2, b2, ids))
                            if len(readings) >= limit:
                                return readings
    return readings


def compare_gradient(output: Any, reference: torch.Tensor, grad: Any, expected: torch.Tensor, what: str, *,
                     mistakes: Any = None, atol: float = 1e-5, rtol: float = 1e-4) -> str | None:
    """Compare a gradient with ``expected`` only when the ``output`` it comes from equals ``reference``.

    A wrong output is the value cases' business: its gradient differs too, and saying so again (or
    guessing a cause from it) would name a mistake twice or wrongly. Then only a known mistake the
    gradient reproduces is named; otherwise the gradient case passes (the gradient did flow).
    """
    if isinstance(output, torch.Tensor) and _close(output.detach(), reference.detach(), atol, rtol):
        return compare_tensors(grad, expected, what, atol=atol, rtol=rtol, mistakes=mistakes)
    hint = match_mistakes(grad, expected, mistakes, atol=atol, rtol=rtol)
    return f"{what}: {hint}" if hint else None


def gradient_flow(forward: Callable[[torch.Tensor], Any], inputs: Iterable[torch.Tensor], module: Any = None, *,
                  input_name: str = "x", output_name: str = "the output") -> str | None:
    """``None`` when gradients reach the input and every parameter of ``module`` on at least one of ``inputs``.

    Each input is tried in turn (a weighted sum of ``forward(input)`` is back-propagated). The hints
    tell apart what autograd can tell apart: an output outside the graph, an input whose gradient never
    arrives (detached), a gradient that arrives but is zero on every input tried (the output is flat in
    the input there: no graph problem), and parameters that get no gradient (unused) or only zero ones.
    """
    params = list(module.named_parameters()) if module is not None else []
    reached_x = nonzero_x = False
    reached = {name: False for name, _ in params}
    nonzero = {name: False for name, _ in params}
    for x in inputs:
        x = x.detach().clone().requires_grad_(True)
        for _, p in params:
            p.grad = None
        out = forward(x)
        if not isinstance(out, torch.Tensor):
            return tensor_type_hint(out, "the output")
        if not out.requires_grad:
            return (f"{output_name} is not connected to the autograd graph (no .detach(), .numpy(), .item() or "
                    "torch.no_grad() in forward)")
        weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
        (out * weights).sum().backward()
        if x.grad is not None:
            reached_x = True
            nonzero_x = nonzero_x or bool(torch.isfinite(x.grad).all()) and float(x.grad.abs().sum()) > 0
        for name, p in params:
            if p.grad is not None:
                reached[name] = True
                nonzero[name] = nonzero[name] or float(p.grad.abs().sum()) > 0
    for _, p in params:
        p.grad = None
    if not reached_x:
        return (f"no gradient reached {input_name}: the graph is cut between {input_name} and {output_name} "
                "(.detach(), .data, .numpy() or torch.no_grad() on the way?)")
    if not nonzero_x:
        return (f"the gradient reaching {input_name} is exactly zero on every input tried: {output_name} does not "
                f"change with {input_name} there")
    unused = [name for name in reached if not reached[name]]
    if unused:
        return f"no gradient reached these parameters: {', '.join(unused)} (are they used in forward?)"
    flat = [name for name in nonzero if not nonzero[name]]
    if flat:
        return (f"these parameters get a zero gradient on every input tried: {', '.join(flat)} "
                f"({output_name} does not change with them)")
    return None


# --------------------------------------------------------------------------------------------------
# grading
# --------------------------------------------------------------------------------------------------
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


class _Points(float):
    """The float ``check`` returns; Jupyter does not echo it (the ``Points:`` line already shows it)."""

    def _ipython_display_(self) -> None:
        pass


def _fmt(x: float) -> str:
    return f"{x:g}"


def _say(line: str) -> None:
    try:
        print(line)
    except UnicodeEncodeError:  # a console that cannot show emoji
        print(line.replace("✅", "[ok]").replace("❌", "[x]").encode("ascii", "replace").decode("ascii"))


_MISSING = object()


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


def list_exercises(prefix: str | None = None) -> list[str]:
    """The registered exercise keys (those starting with ``prefix``, e.g. ``"00."``), sorted."""
    return sorted(k for k in EXERCISES if prefix is None or k.startswith(prefix))


# --------------------------------------------------------------------------------------------------
# questions: predict first, interpret after (counted apart from the exercises)
# --------------------------------------------------------------------------------------------------
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
