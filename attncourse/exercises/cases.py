"""Running one case and comparing what it gives: the tools a checker is written with.

:func:`run_case` turns one comparison into a :class:`CaseResult` and never raises (a stub, a crash in the
learner's code, a wrong type become a hint); :func:`compare_tensors`, :func:`compare_numbers` and
:func:`compare_number_cases` return the hint (``None`` when right), naming a known mistake when one explains
the answer (:mod:`.mistakes`). :func:`seeded_generator` and :func:`deterministic` keep checks reproducible.
Also what ``check`` prints with (``_say``, ``_fmt``, ``_Points``).
"""
from __future__ import annotations

import contextlib
import math
import os
import random
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch

from .mistakes import _as_tensor, _pairs, join_hints, match_mistakes


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
