"""Shared assertions for the per-module exercise tests (imported by tests/test_exercises_*.py)."""
from attncourse.exercises import grade


def assert_scores_less(key, learner, hint_part=None):
    """``learner`` (a known-wrong mutant) must score less than full marks on ``key``; when ``hint_part`` is
    given, one of the failing cases' hints must contain it. Returns ``(earned, results)``."""
    earned, total, results = grade(key, learner)
    assert earned < total, f"mutant scored full marks on {key}"
    if hint_part is not None:
        hints = " | ".join(r.hint for r in results if not r.passed)
        assert hint_part in hints, hints
    return earned, results
