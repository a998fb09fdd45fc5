"""Module 03 exercises: the reference solutions earn full marks, known-wrong variants (mutants) earn less."""
import pytest
import torch
import torch.nn.functional as F

from attncourse.exercises import grade, list_exercises
from attncourse.exercises import m03_beyond_average as ex
from exercise_helpers import assert_scores_less

KEYS = ["03.style_pool", "03.covariance_pool", "03.ge_gather"]


def test_module_registers_three_exercises_and_the_references_score_full():
    assert set(KEYS) <= set(list_exercises("03."))
    for key, solution in zip(KEYS, (ex.style_pool, ex.covariance_pool, ex.ge_gather)):
        earned, total, results = grade(key, solution)
        assert earned == total, [r for r in results if not r.passed]


def test_the_references_equal_the_package():
    from attncourse.blocks.gather_excite import ge_gather
    from attncourse.blocks.second_order import covariance_pool, style_pool

    x = torch.randn(2, 5, 4, 3) + 0.4
    torch.testing.assert_close(ex.style_pool(x), style_pool(x))
    torch.testing.assert_close(ex.style_pool(x, 0.1), style_pool(x, 0.1))
    torch.testing.assert_close(ex.covariance_pool(x), covariance_pool(x))
    for e in (0, 2, 4, 8):
        torch.testing.assert_close(ex.ge_gather(x, e), ge_gather(x, e))


def _no_grad(fn):
    def answer(*args):
        with torch.no_grad():
            return fn(*args)
    return answer


def _zeros_like_reference(fn):
    return lambda *args: torch.zeros_like(fn(*args))


def _flat(x):
    return x.flatten(2)


# --------------------------------------------------------------------------- style pooling
@pytest.mark.parametrize("mutant,hint", [
    (_zeros_like_reference(ex.style_pool), "values differ"),
    (_no_grad(ex.style_pool), "autograd graph"),
    (lambda x, eps=1e-5: ex.style_pool(x, eps).detach(), "autograd graph"),
    (lambda x, eps=1e-5: torch.stack([_flat(x).mean(2), (_flat(x).var(2, unbiased=False) + eps).sqrt()], -1), "biased"),
    (lambda x, eps=1e-5: torch.stack([_flat(x).mean(2), _flat(x).std(2) + eps], -1), "inside the square root"),
    (lambda x, eps=1e-5: torch.stack([_flat(x).mean(2), _flat(x).std(2)], -1), "eps is missing"),
    (lambda x, eps=1e-5: ex.style_pool(x, eps).flip(-1), "swapped"),
    (lambda x, eps=1e-5: ex.style_pool(x, eps).transpose(1, 2), "wrong dimension"),
    (lambda x, eps=1e-5: ex.style_pool(x), None),  # ignores eps
    (lambda x, eps=1e-5: torch.stack([_flat(x).mean(2), (_flat(x).var(2) + eps)], -1), "variance"),
])
def test_style_pool_mutants(mutant, hint):
    assert_scores_less("03.style_pool", mutant, hint)


# --------------------------------------------------------------------------- covariance pooling
def _gram(x, centre=True, divisor=lambda m: m):
    f = _flat(x)
    if centre:
        f = f - f.mean(2, keepdim=True)
    return f @ f.transpose(1, 2) / divisor(f.shape[2])


@pytest.mark.parametrize("mutant,hint", [
    (_zeros_like_reference(ex.covariance_pool), "values differ"),
    (_no_grad(ex.covariance_pool), "autograd graph"),
    (lambda x: _gram(x, centre=False), "not centred"),
    (lambda x: _gram(x, divisor=lambda m: m - 1), "M − 1"),
    (lambda x: _gram(x, divisor=lambda m: 1), "sum over positions"),
    (lambda x: _gram(x, divisor=lambda m: x.shape[1]), None),  # ÷ d: the wrong divisor
    (lambda x: (lambda f: f.transpose(1, 2) @ f / f.shape[2])(_flat(x) - _flat(x).mean(2, keepdim=True)), "Gram"),
    (lambda x: torch.stack([torch.corrcoef(s) for s in _flat(x)]), "correlation"),
    (lambda x: _gram(x)[:, :, :1], None),
])
def test_covariance_pool_mutants(mutant, hint):
    assert_scores_less("03.covariance_pool", mutant, hint)


# --------------------------------------------------------------------------- GE gather
def _pool(**kw):
    def answer(x, extent):
        if extent == 0:
            return x.mean((2, 3), keepdim=True)
        args = dict(kernel_size=2 * extent - 1, stride=extent, padding=extent - 1, count_include_pad=False)
        args.update(kw)
        return F.avg_pool2d(x, **args)
    return answer


@pytest.mark.parametrize("mutant,hint", [
    (_zeros_like_reference(ex.ge_gather), "values differ"),
    (_no_grad(ex.ge_gather), "autograd graph"),
    (_pool(count_include_pad=True), "count_include_pad=False"),
    (_pool(stride=1), "stride 1"),
    (lambda x, e: x.mean((2, 3), keepdim=True), "global mean"),
    (lambda x, e: F.max_pool2d(x, 2 * e - 1, e, e - 1) if e else x.amax((2, 3), keepdim=True), "max"),
    (lambda x, e: F.avg_pool2d(x, e, e, ceil_mode=True) if e else x.mean((2, 3), keepdim=True), "e×e"),
    (lambda x, e: x.sum((2, 3), keepdim=True) if e == 0 else ex.ge_gather(x, e), "sum"),
    (lambda x, e: ex.ge_gather(x, max(e, 2)), None),  # extent 0 treated as 2
])
def test_ge_gather_mutants(mutant, hint):
    assert_scores_less("03.ge_gather", mutant, hint)
