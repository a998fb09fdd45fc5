"""The exercise machinery: check() never raises, scoring arithmetic, hints, determinism, discovery."""
from __future__ import annotations

import importlib
import random
import sys
import warnings

import numpy as np
import pytest
import torch

import attncourse.exercises as exercises
from attncourse.exercises import core
from attncourse.exercises.core import (EXERCISES, NOT_IMPLEMENTED_HINT, CaseResult, check, compare_number_cases,
                                       compare_numbers, compare_tensors,
                                       deterministic, describe_exception, grade, list_exercises, register_exercise, run_case,
                                       score_summary, seeded_generator)


def _double(x):
    return 2 * x


@pytest.fixture
def toy():
    """A throw-away exercise ``99.double`` with three cases (removed afterwards)."""

    @register_exercise("99.double", title="Double a tensor", points=3, solution=_double)
    def _check(learner):
        gen = seeded_generator(0)
        for shape in [(2, 3), (4, 1, 5), (3,)]:
            x = torch.randn(shape, generator=gen)
            yield run_case(f"shape {list(shape)}", lambda: compare_tensors(learner(x), 2 * x))

    saved = dict(core._SCOREBOARD)
    core._SCOREBOARD.clear()
    yield "99.double"
    EXERCISES.pop("99.double", None)
    core._REFERENCE_CASES.pop("99.double", None)
    core._SCOREBOARD.clear()
    core._SCOREBOARD.update(saved)


@pytest.fixture
def aborting():
    """``99.abort``: a checker that calls the learner outside run_case, so an exception ends it early."""

    @register_exercise("99.abort", title="Identity on ints", points=2, solution=lambda i: i)
    def _check(learner):
        for i in range(4):
            yield CaseResult(f"case {i}", learner(i) == i, "" if learner(i) == i else "wrong")

    yield "99.abort"
    EXERCISES.pop("99.abort", None)
    core._REFERENCE_CASES.pop("99.abort", None)


def _stub(x):
    raise NotImplementedError


# ---- check never raises --------------------------------------------------------------------------
@pytest.mark.parametrize("learner", [_stub, lambda x: 1 / 0, lambda x: sys.exit(3), 42, None, "double", torch.ones(3),
                                     lambda: None, lambda x: None, lambda x: "text", lambda x: [2 * x]])
def test_check_never_raises_and_scores_zero(toy, learner, capsys):
    assert check(toy, learner) == 0.0
    out = capsys.readouterr().out
    assert "❌" in out and "Points: 0 / 3" in out


@pytest.mark.parametrize("key", ["99.doubel", "nope", None, 3, ("99.double",)])
def test_check_unknown_key_names_close_keys(toy, key, capsys):
    assert check(key, _double) == 0.0
    out = capsys.readouterr().out
    assert "unknown exercise" in out
    if key == "99.doubel":
        assert "'99.double'" in out


def test_check_without_answer(toy, capsys):
    assert check(toy) == 0.0
    assert "pass your answer" in capsys.readouterr().out


def test_stub_says_not_implemented_once(toy, capsys):
    earned, total, results = grade(toy, _stub)
    assert (earned, total) == (0.0, 3.0)
    assert all(r.hint == NOT_IMPLEMENTED_HINT for r in results) and len(results) == 3
    check(toy, _stub)
    out = capsys.readouterr().out
    assert out.count("not implemented yet") == 1 and "all 3 cases" in out


def test_check_survives_a_broken_checker(capsys):
    @register_exercise("99.buggy", title="A checker with a bug", points=1, solution=_double)
    def _check(learner):
        raise RuntimeError("bug in the checker")
        yield  # pragma: no cover

    try:
        assert check("99.buggy", _double) == 0.0
        assert "❌" in capsys.readouterr().out
    finally:
        EXERCISES.pop("99.buggy")
        core._REFERENCE_CASES.pop("99.buggy", None)
        core._SCOREBOARD.pop("99.buggy", None)


def test_wrong_type_hint(toy):
    _, _, results = grade(toy, 42)
    assert "expected a function" in results[0].hint and "not my_function(...)" in results[0].hint


# ---- scoring arithmetic --------------------------------------------------------------------------
def test_full_marks_and_printed_lines(toy, capsys):
    assert check(toy, _double) == 3.0
    out = capsys.readouterr().out
    assert out.count("✅") == 3 and "Points: 3 / 3" in out


def test_partial_credit_is_points_times_fraction(toy, capsys):
    def two_d_only(x):
        if x.dim() != 2:
            raise ValueError("only 2-D, sorry")
        return 2 * x

    earned, total, results = grade(toy, two_d_only)
    assert (earned, total) == (1.0, 3.0)  # 3 points × 1/3
    assert [r.passed for r in results] == [True, False, False]
    assert "ValueError: only 2-D, sorry" in results[1].hint and "two_d_only" in results[1].hint
    assert check(toy, two_d_only) == 1.0
    assert "Points: 1 / 3" in capsys.readouterr().out


def test_rounding_to_cents(aborting):
    # 2 points × 1/4 = 0.5; with 3 of 4 right: 1.5
    assert grade(aborting, lambda i: i if i != 3 else -1)[0] == 1.5


def test_exception_outside_run_case_fails_that_case_and_the_rest(aborting):
    earned, total, results = grade(aborting, lambda i: i if i < 1 else 1 / 0)
    assert (earned, total) == (0.5, 2.0)
    assert [r.name for r in results] == ["case 0", "case 1", "case 2", "case 3"]  # names from the reference run
    assert [r.passed for r in results] == [True, False, False, False]
    assert results[1].hint.startswith("ZeroDivisionError") and "not run" in results[2].hint


@pytest.fixture
def with_side():
    """``99.side``: two value cases and two side properties (the input left unchanged, the output's shape)."""
    from attncourse.exercises import side_property

    @register_exercise("99.side", title="Double a tensor, with side properties", points=4, solution=_double)
    def _check(learner):
        gen = seeded_generator(0)
        for shape in [(2, 3), (4, 5)]:
            x = torch.randn(shape, generator=gen)
            yield run_case(f"values {list(shape)}", lambda: compare_tensors(learner(x.clone()), 2 * x))
        x = torch.randn(3, 2, generator=gen)
        before = x.clone()
        yield side_property(run_case("input left unchanged", lambda: learner(x) is None or torch.equal(x, before)))
        yield side_property(run_case("shape", lambda: learner(x).shape == x.shape))

    yield "99.side"
    EXERCISES.pop("99.side", None)
    core._REFERENCE_CASES.pop("99.side", None)


def test_side_properties_count_only_once_every_value_case_passed(with_side, capsys):
    assert grade(with_side, _double)[0] == 4.0
    earned, _, results = grade(with_side, torch.zeros_like)  # zeros of the right shape: both side cases pass
    assert [r.passed for r in results] == [False, False, True, True] and [r.side for r in results][2:] == [True, True]
    assert earned == 0.0
    half = lambda x: 2 * x if x.shape[0] == 2 else x  # noqa: E731  one value case right: still no side points
    assert grade(with_side, half)[0] == 1.0
    in_place = lambda x: x.mul_(2)  # noqa: E731  values right, a side property wrong: 3 of 4 cases
    assert grade(with_side, in_place)[0] == 3.0
    assert check(with_side, torch.zeros_like) == 0.0
    out = capsys.readouterr().out
    assert "✅ input left unchanged (counts once the values are right)" in out and "Points: 0 / 4" in out
    check(with_side, in_place)
    out = capsys.readouterr().out
    assert "counts once" not in out and "✅ shape" in out


def test_best_score_is_kept_in_the_scoreboard(toy, capsys):
    check(toy, _double)
    check(toy, _stub)
    board = score_summary()
    assert board[toy] == (3.0, 3.0) and board.earned == 3.0 and board.total == 3.0
    out = capsys.readouterr().out
    assert "Total" in out


def test_score_summary_prefix_lists_unchecked(toy, aborting, capsys):
    check(toy, _double)
    board = score_summary("99.")
    assert board == {"99.abort": (0.0, 2.0), "99.double": (3.0, 3.0)}
    assert board.earned == 3.0 and board.total == 5.0


def test_check_return_value_is_not_echoed_by_jupyter(toy):
    value = check(toy, _double)
    assert isinstance(value, float) and hasattr(value, "_ipython_display_")


# ---- registration --------------------------------------------------------------------------------
def test_duplicate_key_raises(toy):
    with pytest.raises(ValueError, match="already registered"):
        @register_exercise(toy, title="again", points=1, solution=None)
        def other_checker(learner):  # a different checker under the same key
            yield CaseResult("x", True)


@pytest.mark.parametrize("kwargs", [dict(key="nodot"), dict(key="99.x", points=0), dict(key="99.x", expects="module")])
def test_bad_registration_raises(kwargs):
    args = dict(title="t", points=1, solution=None) | kwargs
    with pytest.raises(ValueError):
        register_exercise(args.pop("key"), **args)


def test_list_exercises(toy):
    assert toy in list_exercises("99.")
    assert all(k.startswith("00.") for k in list_exercises("00."))
    assert list_exercises() == sorted(EXERCISES)


# ---- determinism ---------------------------------------------------------------------------------
def test_grading_is_deterministic_and_leaves_the_learners_rng_alone(toy):
    @register_exercise("99.noise", title="uses the global RNG", points=1, solution=lambda: torch.rand(3))
    def _check(learner):
        x = torch.rand(4)  # global RNG: deterministic() seeds it per exercise
        yield run_case("same draw", lambda: compare_tensors(x, torch.tensor(x.tolist())))
        yield CaseResult(f"value {x[0].item():.6f}", True)

    try:
        torch.manual_seed(123)
        random.seed(5)
        np.random.seed(5)
        expected = (torch.rand(2), random.random(), np.random.rand())
        torch.manual_seed(123)
        random.seed(5)
        np.random.seed(5)
        first = grade("99.noise", lambda: None)
        second = grade("99.noise", lambda: None)
        assert first == second
        assert grade(toy, lambda x: 2.0001 * x) == grade(toy, lambda x: 2.0001 * x)
        after = (torch.rand(2), random.random(), np.random.rand())
        assert torch.equal(after[0], expected[0]) and after[1:] == expected[1:]
    finally:
        EXERCISES.pop("99.noise")
        core._REFERENCE_CASES.pop("99.noise", None)


def test_deterministic_context_restores_state():
    torch.manual_seed(1)
    before = torch.random.get_rng_state()
    with deterministic(7):
        a = torch.rand(3)
    with deterministic(7):
        b = torch.rand(3)
    assert torch.equal(a, b) and torch.equal(torch.random.get_rng_state(), before)


# ---- helpers -------------------------------------------------------------------------------------
def test_compare_tensors_hints():
    x = torch.randn(2, 3, 4, 5, generator=seeded_generator(0))
    want = x.mean(dim=(2, 3), keepdim=True)
    assert compare_tensors(want.clone(), want) is None
    assert "keepdim" in compare_tensors(x.mean(dim=(2, 3)), want)
    assert "view/reshape/permute" in compare_tensors(want.view(3, 2, 1, 1), want)
    assert "dimension 1 differs" in compare_tensors(torch.zeros(2, 5, 1, 1), want)
    assert "NumPy" in compare_tensors(want.numpy(), want)
    assert "got list" in compare_tensors([1, 2], want)
    assert "constant factor ≈ 20" in compare_tensors(want * 20, want)
    assert "NaN" in compare_tensors(want * float("nan"), want)
    assert "dtype" in compare_tensors(want.long(), want)
    assert "max |error|" in compare_tensors(want + torch.randn(want.shape, generator=seeded_generator(1)), want)
    assert compare_tensors(x.amax(dim=(2, 3), keepdim=True), want, mistakes={"max, not mean": x.amax(dim=(2, 3), keepdim=True)}) \
        == "output: max, not mean"
    assert compare_tensors(want.double(), want) is None  # float64 vs float32 is fine


def test_compare_numbers_hints():
    assert compare_numbers(10, 10, integer=True) is None
    # a count is judged by its value: a whole-number float is as right as an int (issue 17)
    assert compare_numbers(10.0, 10, integer=True) is None
    assert compare_numbers(np.float64(10), 10, integer=True) is None and compare_numbers(np.int64(10), 10, integer=True) is None
    assert compare_numbers(np.array(10.0), 10, integer=True) is None and compare_numbers(torch.tensor([10]), 10) is None
    assert "whole number" in compare_numbers(10.5, 10, integer=True)
    assert "is 12, expected 10" in compare_numbers(12.0, 10, integer=True)
    assert compare_numbers(10.0, 10) is None
    assert "2× too large" in compare_numbers(20, 10)
    assert "3× too small" in compare_numbers(10, 30)
    assert compare_numbers(7, 10, "n", mistakes={"forgot the bias": 7}) == "n is 7, expected 10: forgot the bias"
    assert "should be a number" in compare_numbers("10", 10)
    assert "should be a number" in compare_numbers(True, 1)
    assert compare_numbers(torch.tensor(10), 10) is None
    # several mistakes giving the same value are named together, never one of them at random
    both = compare_numbers(6, 10, "n", mistakes=[("forgot A", 6), ("forgot B", 6)])
    assert "forgot A" in both and "forgot B" in both


def test_compare_number_cases_names_a_mistake_only_when_it_explains_every_answer():
    cases = lambda got: [(f"f({i})", g, 2 * i, {"doubled": 4 * i, "plus two": 2 * i + 2}) for i, g in zip((1, 2, 3), got)]
    assert compare_number_cases(cases([2, 4, 6])) is None
    assert compare_number_cases(cases([2.0, 4.0, 6.0]), integer=True) is None
    assert "doubled" in compare_number_cases(cases([4, 8, 12]))
    # f(1) = 4 is both "doubled" and "plus two"; f(2) and f(3) say which one it is
    hint = compare_number_cases(cases([4, 6, 8]))
    assert "plus two" in hint and "doubled" not in hint
    hint = compare_number_cases(cases([4, 5, 6]))  # explained by neither: no mistake named
    assert "doubled" not in hint and "plus two" not in hint and "f(1) is 4, expected 2" in hint
    assert "should be a number" in compare_number_cases(cases(["2", 4, 6]))


def test_compare_tensors_names_every_mistake_that_gives_the_output():
    x = torch.randn(2, 3, generator=seeded_generator(0))
    hint = compare_tensors(x, 2 * x, mistakes=[("returned x", x), ("halved", x)])
    assert "returned x" in hint and "halved" in hint
    assert compare_tensors(x, 2 * x, mistakes={"returned x": x}) == "output: returned x"


def test_mlp_readings_read_every_layer_style_by_role():
    from torch import nn
    from attncourse.exercises.core import mlp_readings

    z = torch.randn(5, 8, generator=seeded_generator(0))
    lin = nn.Sequential(nn.Linear(8, 2), nn.ReLU(), nn.Linear(2, 8))
    conv2d = nn.Sequential(nn.Conv2d(8, 2, 1), nn.ReLU(), nn.Conv2d(2, 8, 1))
    conv1d = nn.Sequential(nn.Conv1d(8, 2, 1), nn.ReLU(), nn.Conv1d(2, 8, 1))
    raw = nn.ParameterList([nn.Parameter(torch.randn(8, 2)), nn.Parameter(torch.randn(2)),
                            nn.Parameter(torch.randn(2, 8)), nn.Parameter(torch.randn(8))])
    with torch.no_grad():
        outs = {"linear": lin(z), "conv2d": conv2d(z[:, :, None, None]).flatten(1), "conv1d": conv1d(z[:, :, None]).flatten(1),
                "raw": torch.relu(z @ raw[0] + raw[1]) @ raw[2] + raw[3]}
        for name, module in [("linear", lin), ("conv2d", conv2d), ("conv1d", conv1d), ("raw", raw)]:
            readings = mlp_readings(module, 8, 8)
            assert any(torch.allclose(f(z), outs[name], atol=1e-6) for f in readings), name
            assert {f.hidden for f in readings} == {2}
    assert mlp_readings(nn.Linear(8, 8), 8, 8) == []


def test_describe_exception_points_at_the_learners_line():
    def learner_fn():
        return [][1]

    try:
        learner_fn()
    except IndexError as err:
        hint = describe_exception(err)
    assert hint.startswith("IndexError: list index out of range (in learner_fn, line")
    assert describe_exception(NotImplementedError()) == NOT_IMPLEMENTED_HINT
    assert "sys.exit" in describe_exception(SystemExit(1))


def test_run_case_outcomes():
    assert run_case("a", lambda: None).passed and run_case("b", lambda: True).passed
    assert run_case("c", lambda: False).hint == "wrong result"
    assert run_case("d", lambda: "a hint") == CaseResult("d", False, "a hint")
    assert run_case("e", lambda: CaseResult("e", True, "")).passed
    assert run_case("f", _stub, 1).hint == NOT_IMPLEMENTED_HINT


# ---- discovery -----------------------------------------------------------------------------------
def test_discovery_imports_modules_and_tolerates_placeholders(tmp_path, monkeypatch):
    (tmp_path / "m98_placeholder.py").write_text('"""A module whose exercises are not written yet."""\n')
    (tmp_path / "m97_broken.py").write_text("raise ImportError('half-written module')\n")
    (tmp_path / "helpers.py").write_text("raise AssertionError('not an exercise module: never imported')\n")
    monkeypatch.setattr(exercises, "__path__", [*exercises.__path__, str(tmp_path)])
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loaded = exercises._discover()
        assert "m98_placeholder" in loaded and "m00_foundations" in loaded
        assert "m97_broken" not in loaded and "helpers" not in loaded
        assert any("m97_broken" in str(w.message) for w in caught)
    finally:
        for name in ("m98_placeholder", "m97_broken"):
            sys.modules.pop(f"attncourse.exercises.{name}", None)


def test_reloading_an_exercise_module_is_not_a_duplicate():
    module = importlib.import_module("attncourse.exercises.m00_foundations")
    importlib.reload(module)
    assert EXERCISES["00.reweight"].checker.__module__ == module.__name__


# ---- every registered exercise (all modules) -----------------------------------------------------
@pytest.mark.parametrize("key", sorted(EXERCISES))
def test_every_solution_scores_full_marks_deterministically(key):
    ex = EXERCISES[key]
    first = grade(key, ex.solution)
    assert first[0] == first[1] == ex.points, [r for r in first[2] if not r.passed]
    assert grade(key, ex.solution) == first


@pytest.mark.parametrize("key", sorted(EXERCISES))
def test_every_exercise_gives_a_stub_zero(key):
    earned, total, results = grade(key, _stub if EXERCISES[key].expects == "callable" else None)
    assert earned == 0.0 and total == EXERCISES[key].points and results


@pytest.mark.parametrize("key", sorted(EXERCISES))
def test_every_exercise_checks_several_cases_and_check_reports_a_stub(key, capsys):
    ex = EXERCISES[key]
    assert len(grade(key, ex.solution)[2]) >= 3, "an exercise needs at least three cases"
    assert check(key, _stub if ex.expects == "callable" else None) == 0
    out = capsys.readouterr().out
    assert "Points: 0 /" in out
