"""Side properties: cases that earn their points only once the values are right.

An exercise's *value* cases compare what the learner's answer computes with the reference. Its *side* cases
check a property a wrong answer can have too: the input is left unchanged, gradients flow, the output has the
right shape or range, the rows sum to 1, the module holds the right parameters, the block is the identity at
initialisation. A function returning zeros of the right shape passes several of them; it must not earn points
for it. So a side case counts only when every value case of the same exercise passed::

    yield side_property(run_case("gradient flows back to x", _case_grad, learner))

:func:`earned_points` scores a list of results by that rule; :func:`side_note` is the remark ``check`` prints on a
side case that passed but does not count yet.
"""
from __future__ import annotations

from typing import Any, Iterable

__all__ = ["SIDE_NOTE", "side_property", "values_right", "counts", "earned_points", "side_note"]

SIDE_NOTE = "counts once the values are right"


def side_property(result: Any) -> Any:
    """Mark a case result (a ``CaseResult``) as a side property and return it."""
    result.side = True
    return result


def _is_side(result: Any) -> bool:
    return bool(getattr(result, "side", False))


def values_right(results: Iterable[Any]) -> bool:
    """Whether every value case (every case not marked side) passed."""
    return all(r.passed for r in results if not _is_side(r))


def counts(result: Any, results: list[Any]) -> bool:
    """Whether ``result`` earns its share: it passed and, for a side case, the values are right."""
    return bool(result.passed) and (not _is_side(result) or values_right(results))


def earned_points(points: float, results: list[Any], n_cases: int) -> float:
    """``points × counted cases / n_cases`` (rounded to 0.01), side cases counted only once the values are right."""
    if not n_cases:
        return 0.0
    return round(points * sum(1 for r in results if counts(r, results)) / n_cases, 2)


def side_note(result: Any, results: list[Any]) -> str:
    """``" (counts once the values are right)"`` for a side case that passed but does not count yet, else ``""``."""
    return f" ({SIDE_NOTE})" if result.passed and not counts(result, results) else ""
