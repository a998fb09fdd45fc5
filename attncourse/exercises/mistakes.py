"""Naming a learner's mistake: which known wrong formula explains an output (graded exercises' hint machinery).

An exercise lists its named mistakes as ``{hint: wrong output}``; :func:`match_mistakes` names every mistake
whose output the learner's matches (all of them when several give the same output), and :func:`join_hints`
says them in one line. The comparisons of :mod:`.cases` call it before their generic "values differ".
"""
from __future__ import annotations

from typing import Any

import torch


def _as_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    return None


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
