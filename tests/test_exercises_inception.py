"""Module 01 exercises: the reference solutions earn full marks, known-wrong variants (mutants) earn less."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import attncourse as ac
from attncourse.blocks.inception import ConvBNReLU, InceptionBlock
from attncourse.exercises import EXERCISES, check, grade, list_exercises
from exercise_helpers import assert_scores_less
from attncourse.exercises import m01_inception as ex

KEYS = ["01.branch_flops", "01.flops_saving", "01.reduce_expand"]


def test_module_registers_its_exercises():
    assert set(KEYS) <= set(list_exercises("01."))


def test_reference_formula_matches_the_package_block():
    """The exercise's formula, summed over branches, is what the package's InceptionBlock costs."""
    cin, c1, c3r, c3, c5r, c5, pp = 192, 64, 96, 128, 16, 32, 32
    h = w = 28
    block = InceptionBlock(cin, c1, c3r, c3, c5r, c5, pp)
    total = (2 * h * w * cin * c1 + ex.branch_flops(cin, c3r, c3, 3, h, w) + ex.branch_flops(cin, c5r, c5, 5, h, w)
             + 2 * h * w * cin * pp)
    assert ac.count_flops(block, (1, cin, h, w)) == total


# --------------------------------------------------------------------------- branch_flops
@pytest.mark.parametrize("mutant,hint", [
    (lambda ci, cr, co, k, h, w: h * w * (ci * cr + cr * co * k * k), "MACs"),
    (lambda ci, cr, co, k, h, w: 2 * h * w * cr * co * k * k, "only the k×k conv"),
    (lambda ci, cr, co, k, h, w: 2 * h * w * ci * co * k * k, "naive branch"),
    (lambda ci, cr, co, k, h, w: 2 * h * w * (ci * cr + cr * co * k), "k² taps"),
    (lambda ci, cr, co, k, h, w: 2 * (ci * cr + cr * co * k * k), "h·w"),
    (lambda ci, cr, co, k, h, w: 2 * h * w * (ci * cr * k * k + cr * co * k * k), "1×1 kernel"),
    (lambda ci, cr, co, k, h, w: 2 * h * h * (ci * cr + cr * co * k * k), None),  # h·h instead of h·w
])
def test_branch_flops_mutants(mutant, hint):
    assert_scores_less("01.branch_flops", mutant, hint)


@pytest.mark.parametrize("answer", [
    lambda ci, cr, co, k, h, w: float(2 * h * w * (ci * cr + cr * co * k * k)),
    lambda ci, cr, co, k, h, w: 2.0 * h * w * ci * cr + 2 * h * w * cr * co * math.pow(k, 2),
])
def test_branch_flops_accepts_whole_floats(answer):
    """Issue 17: FLOPs are counts, not types — a whole-number float is a right answer."""
    earned, total, results = grade("01.branch_flops", answer)
    assert earned == total, [r.hint for r in results if not r.passed]


# --------------------------------------------------------------------------- flops_saving
@pytest.mark.parametrize("mutant,hint", [
    (lambda ci, cr, co, k: 1 / ex.flops_saving(ci, cr, co, k), "inverted"),
    (lambda ci, cr, co, k: ci / cr, "1×1 conv"),
    (lambda ci, cr, co, k: ci * co * k / (ci * cr + cr * co * k), "k² taps"),
    (lambda ci, cr, co, k: round(ex.flops_saving(ci, cr, co, k)), None),
])
def test_flops_saving_mutants(mutant, hint):
    assert_scores_less("01.flops_saving", mutant, hint)


# --------------------------------------------------------------------------- reduce_expand
class _Seq(nn.Module):
    """Builds the branch from a list of layers; the mutants below vary that list."""

    def __init__(self, layers):
        super().__init__()
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x)


def _with_bias(ci, cr, co, k):
    return _Seq([nn.Conv2d(ci, cr, 1), nn.BatchNorm2d(cr), nn.ReLU(), nn.Conv2d(cr, co, k, padding=k // 2),
                 nn.BatchNorm2d(co), nn.ReLU()])


def _no_bn(ci, cr, co, k):
    return _Seq([nn.Conv2d(ci, cr, 1), nn.ReLU(), nn.Conv2d(cr, co, k, padding=k // 2), nn.ReLU()])


def _no_padding(ci, cr, co, k):
    return _Seq([nn.Conv2d(ci, cr, 1, bias=False), nn.BatchNorm2d(cr), nn.ReLU(), nn.Conv2d(cr, co, k, bias=False),
                 nn.BatchNorm2d(co), nn.ReLU()])


def _no_mid_relu(ci, cr, co, k):
    return _Seq([nn.Conv2d(ci, cr, 1, bias=False), nn.BatchNorm2d(cr), nn.Conv2d(cr, co, k, padding=k // 2, bias=False),
                 nn.BatchNorm2d(co), nn.ReLU()])


def _no_out_relu(ci, cr, co, k):
    return _Seq([nn.Conv2d(ci, cr, 1, bias=False), nn.BatchNorm2d(cr), nn.ReLU(),
                 nn.Conv2d(cr, co, k, padding=k // 2, bias=False), nn.BatchNorm2d(co)])


def _relu_before_bn(ci, cr, co, k):
    return _Seq([nn.Conv2d(ci, cr, 1, bias=False), nn.ReLU(), nn.BatchNorm2d(cr),
                 nn.Conv2d(cr, co, k, padding=k // 2, bias=False), nn.ReLU(), nn.BatchNorm2d(co)])


def _naive(ci, cr, co, k):
    return _Seq([nn.Conv2d(ci, co, k, padding=k // 2, bias=False), nn.BatchNorm2d(co), nn.ReLU()])


def _reduce_kxk(ci, cr, co, k):
    return _Seq([nn.Conv2d(ci, cr, k, padding=k // 2, bias=False), nn.BatchNorm2d(cr), nn.ReLU(),
                 nn.Conv2d(cr, co, k, padding=k // 2, bias=False), nn.BatchNorm2d(co), nn.ReLU()])


class _Detached(ex.ReduceExpand):
    def forward(self, x):
        return super().forward(x.detach())


class _UnusedBN(ex.ReduceExpand):
    def forward(self, x):
        return F.relu(self.bn2(self.conv(F.relu(self.reduce(x)))))


class _PackageStyle(nn.Module):
    """A correct answer built from the package's ConvBNReLU (eps=0.001, other layout): full marks too."""

    def __init__(self, ci, cr, co, k):
        super().__init__()
        self.a = ConvBNReLU(ci, cr, 1)
        self.b = ConvBNReLU(cr, co, k)

    def forward(self, x):
        return self.b(self.a(x))


@pytest.mark.parametrize("mutant,hint", [
    (_with_bias, "needs no bias"),
    (_no_bn, "BatchNorm2d"),
    (_no_padding, "padding=k // 2"),
    (_no_mid_relu, "no ReLU between the two convs"),
    (_no_out_relu, "must end with a ReLU"),
    (_relu_before_bn, "conv → BN → ReLU"),
    (_naive, "naive branch"),
    (_reduce_kxk, "1×1 conv"),
    (_Detached, "no gradient reached the input"),
    (_UnusedBN, "no gradient reached these parameters: bn1"),
    (lambda ci, cr, co, k: "not a module", "should be an nn.Module"),
])
def test_reduce_expand_mutants(mutant, hint):
    assert_scores_less("01.reduce_expand", mutant, hint)


def test_reduce_expand_other_correct_layout_scores_full_marks():
    earned, total, results = grade("01.reduce_expand", _PackageStyle)
    assert earned == total, [r for r in results if not r.passed]
