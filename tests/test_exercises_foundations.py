"""Module 00's exercises: the references are right, and each typical mistake scores less with its own hint."""
from __future__ import annotations

import math
import random

import pytest
import torch
from torch import nn

from attncourse.cost import count_flops
from attncourse.exercises import grade
from attncourse.exercises.m00_foundations import channel_stat, conv_flops, conv_params, reweight


def _hints(key, learner) -> str:
    return " | ".join(r.hint for r in grade(key, learner)[2] if not r.passed)


def _full(key):
    from attncourse.exercises import EXERCISES

    return EXERCISES[key].points


# ---- the references against PyTorch -------------------------------------------------------------
def test_channel_stat_is_global_average_pooling():
    x = torch.randn(3, 5, 7, 4)
    torch.testing.assert_close(channel_stat(x), nn.AdaptiveAvgPool2d(1)(x))


def test_reweight_is_the_seed_template():
    x = torch.randn(2, 6, 5, 5)
    gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(6, 6, 1))
    w = torch.sigmoid(gate(x))
    torch.testing.assert_close(reweight(x, gate), x * w.expand_as(x))


def test_conv_params_matches_nn_conv2d():
    rng = random.Random(1)
    for _ in range(30):
        c_in, c_out, k, bias = rng.randint(1, 40), rng.randint(1, 40), rng.choice([1, 3, 5, 7]), rng.random() < 0.5
        conv = nn.Conv2d(c_in, c_out, k, bias=bias)
        assert conv_params(c_in, c_out, k, bias) == sum(p.numel() for p in conv.parameters())


def test_conv_flops_matches_torch_flop_counter():
    rng = random.Random(2)
    for _ in range(8):
        c_in, c_out, k, h, w = rng.randint(1, 16), rng.randint(1, 16), rng.choice([1, 3, 5]), rng.randint(3, 12), rng.randint(3, 12)
        conv = nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False)
        assert conv_flops(c_in, c_out, k, h, w) == count_flops(conv, torch.randn(1, c_in, h, w))


# ---- solutions score full marks; mutants score less, with a specific hint -----------------------
@pytest.mark.parametrize("key, solution", [("00.channel_stat", channel_stat), ("00.reweight", reweight),
                                           ("00.conv_params", conv_params), ("00.conv_flops", conv_flops)])
def test_solution_full_marks(key, solution):
    earned, total, results = grade(key, solution)
    assert earned == total == _full(key), results
    assert len(results) >= 4


CHANNEL_STAT_MUTANTS = {
    "wrong axis": (lambda x: x.mean(dim=1, keepdim=True), "taken over the channels"),
    "no keepdim": (lambda x: x.mean(dim=(2, 3)), "keepdim=True"),
    "sum not mean": (lambda x: x.sum(dim=(2, 3), keepdim=True), "sum over space"),
    "max not mean": (lambda x: x.amax(dim=(2, 3), keepdim=True), "maximum over space"),
    "only H": (lambda x: x.mean(dim=2, keepdim=True), "over H only"),
    "hard-coded shape": (lambda x: x.mean(dim=(2, 3), keepdim=True).view(2, 3, 1, 1), "shape"),
    "wrong shape (flattened)": (lambda x: x.mean(dim=(2, 3)).flatten(), "keepdim=True"),
    "detached": (lambda x: x.detach().mean(dim=(2, 3), keepdim=True), "autograd"),
    "numpy": (lambda x: torch.from_numpy(x.detach().numpy().mean(axis=(2, 3), keepdims=True)), "autograd"),
    "in place": (lambda x: x.sub_(0).mean(dim=(2, 3), keepdim=True), "in-place"),
}


@pytest.mark.parametrize("name", sorted(CHANNEL_STAT_MUTANTS))
def test_channel_stat_mutants(name):
    mutant, hint = CHANNEL_STAT_MUTANTS[name]
    earned, total, _ = grade("00.channel_stat", mutant)
    assert earned < total
    assert hint in _hints("00.channel_stat", mutant)


REWEIGHT_MUTANTS = {
    "missing sigmoid": (lambda x, f: x * f(x), "torch.sigmoid"),
    "softmax instead of sigmoid": (lambda x, f: x * torch.softmax(f(x).flatten(1), 1).view_as(f(x)), "softmax"),
    "added, not multiplied": (lambda x, f: x + torch.sigmoid(f(x)), "added"),
    "residual (BAM style)": (lambda x, f: x * (1 + torch.sigmoid(f(x))), "BAM"),
    "returns the weights": (lambda x, f: torch.sigmoid(f(x)).expand_as(x), "returned the weights"),
    "ignores stat_fn (hard-coded channel mean)": (lambda x, f: x * torch.sigmoid(x.mean(dim=(2, 3), keepdim=True)),
                                                 "stat_fn was never called"),
    "calls stat_fn but uses its own statistic": (lambda x, f: (f(x), x * torch.sigmoid(x.mean(dim=1, keepdim=True)))[1],
                                                "call stat_fn(x)"),
    "detached weights": (lambda x, f: x * torch.sigmoid(f(x)).detach(), "no gradient reached"),
    "wrong shape": (lambda x, f: (x * torch.sigmoid(f(x))).sum(1), "shape"),
    "in place": (lambda x, f: x.mul_(torch.sigmoid(f(x))), "in-place"),
}


@pytest.mark.parametrize("name", sorted(REWEIGHT_MUTANTS))
def test_reweight_mutants(name):
    mutant, hint = REWEIGHT_MUTANTS[name]
    earned, total, _ = grade("00.reweight", mutant)
    assert earned < total
    assert hint in _hints("00.reweight", mutant)


CONV_PARAMS_MUTANTS = {
    "missing bias": (lambda ci, co, k, bias=True: co * ci * k * k, "one parameter per output channel"),
    "bias per input channel": (lambda ci, co, k, bias=True: co * ci * k * k + (ci if bias else 0), "OUTPUT channel"),
    "ignores bias=False": (lambda ci, co, k, bias=True: co * ci * k * k + co, "bias=False"),
    "k instead of k²": (lambda ci, co, k, bias=True: co * ci * k + (co if bias else 0), "k·k weights"),
    "forgets c_in": (lambda ci, co, k, bias=True: co * k * k + (co if bias else 0), "multiply by c_in"),
    "hard-coded for one input": (lambda ci, co, k, bias=True: 1792, "expected"),
    "returns a tuple": (lambda ci, co, k, bias=True: (co * ci * k * k, co), "should be a number"),
}


@pytest.mark.parametrize("name", sorted(CONV_PARAMS_MUTANTS))
def test_conv_params_mutants(name):
    mutant, hint = CONV_PARAMS_MUTANTS[name]
    earned, total, _ = grade("00.conv_params", mutant)
    assert earned < total
    assert hint in _hints("00.conv_params", mutant)


CONV_FLOPS_MUTANTS = {
    "forgot the factor 2 (MACs)": (lambda ci, co, k, h, w: ci * co * k * k * h * w, "2 per MAC"),
    "k instead of k²": (lambda ci, co, k, h, w: 2 * ci * co * k * h * w, "k² taps"),
    "forgot h·w": (lambda ci, co, k, h, w: 2 * ci * co * k * k, "h·w output positions"),
    "forgot c_in": (lambda ci, co, k, h, w: 2 * co * k * k * h * w, "multiply by c_in"),
    "forgot c_out": (lambda ci, co, k, h, w: 2 * ci * k * k * h * w, "multiply by c_out"),
    "hard-coded for one input": (lambda ci, co, k, h, w: 3456, "expected"),
}


@pytest.mark.parametrize("name", sorted(CONV_FLOPS_MUTANTS))
def test_conv_flops_mutants(name):
    mutant, hint = CONV_FLOPS_MUTANTS[name]
    earned, total, _ = grade("00.conv_flops", mutant)
    assert earned < total
    assert hint in _hints("00.conv_flops", mutant)


@pytest.mark.parametrize("key, answer", [
    ("00.conv_params", lambda ci, co, k, bias=True: float(co * ci * k * k + (co if bias else 0))),
    ("00.conv_params", lambda ci, co, k, bias=True: co * ci * k ** 2.0 + bias * co),
    ("00.conv_flops", lambda ci, co, k, h, w: 4 * ci * co * k * k * h * w / 2),
    ("00.conv_flops", lambda ci, co, k, h, w: 2.0 * ci * co * math.pow(k, 2) * h * w),
    ("00.conv_flops", lambda ci, co, k, h, w: 2 * ci * co * k * k * ((h + 2 * (k // 2) - k) / 1 + 1) * w),
])
def test_counts_returned_as_whole_floats_get_full_marks(key, answer):
    """Issue 17: a count is judged by its value; no statement asks for an int, so 326144.0 is right."""
    earned, total, results = grade(key, answer)
    assert earned == total, [r.hint for r in results if not r.passed]


def test_partial_credit_is_proportional():
    # forgetting the bias only fails the configurations that have one: "without bias" passes
    earned, total, results = grade("00.conv_params", CONV_PARAMS_MUTANTS["missing bias"][0])
    assert 0 < earned < total
    assert [r.name for r in results if r.passed] == ["convolutions without bias"]
    # a 1×1 convolution has k = k², so "k instead of k²" passes exactly the 1×1 cases
    earned, _, results = grade("00.conv_flops", CONV_FLOPS_MUTANTS["k instead of k²"][0])
    assert [r.name for r in results if r.passed] == ["1×1 convolutions"] and earned == 0.5
