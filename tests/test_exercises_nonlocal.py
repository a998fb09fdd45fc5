"""Module 04 exercises: the reference solutions earn full marks, known-wrong variants (mutants) earn less."""
import pytest
import torch
from torch import nn
from torch.testing import assert_close

from attncourse.blocks.nonlocal_ import GlobalContext, NonLocal2d
from attncourse.exercises import EXERCISES, check, grade, list_exercises
from exercise_helpers import assert_scores_less
from attncourse.exercises import m04_nonlocal as ex

KEYS = ["04.affinity", "04.nonlocal_output", "04.dot_product_norm", "04.gc_context"]


def test_module_registers_at_least_three_exercises():
    assert set(KEYS) <= set(list_exercises("04."))


def test_reference_solutions_match_the_package_blocks():
    block = NonLocal2d(8, implementation="naive").eval()
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn(p.shape) * 0.3)
    x = torch.randn(2, 8, 3, 5)
    q, k, v = block.project(x)
    att = ex.embedded_gaussian_affinity(q.flatten(2), k.flatten(2))
    assert_close(att, block.attention_maps(x)["attention"])
    out = ex.NonLocalOutput(4, 8).eval()
    out.W.load_state_dict(block.W.state_dict())
    out.bn.load_state_dict(block.bn.state_dict())
    y = att @ v.flatten(2).transpose(1, 2)  # [B, N, d]
    assert_close(out(x, y), block(x))

    dot = NonLocal2d(8, mode="dot_product", implementation="naive")
    q, k, v = dot.project(x)
    y = ex.dot_product_nonlocal(q.flatten(2), k.flatten(2), v.flatten(2))
    assert_close(y, dot.attention_maps(x)["attention"] @ v.flatten(2).transpose(1, 2))

    gc = GlobalContext(8, reduction=2)
    context = ex.gc_context(x, gc.conv_mask(x))
    assert_close(context.reshape(2, 8, 1), x.flatten(2) @ gc.context_weights(x).transpose(1, 2))


# --------------------------------------------------------------------------- affinity
def _scores(t, p):
    return t.transpose(1, 2) @ p


@pytest.mark.parametrize("mutant,hint", [
    (lambda t, p: _scores(t, p).softmax(dim=1), "wrong axis"),
    (lambda t, p: _scores(t, p), "softmax is missing"),
    (lambda t, p: _scores(t, p).exp(), "without the normalisation"),
    (lambda t, p: (_scores(t, p) / t.shape[1] ** 0.5).softmax(-1), "no scale"),
    (lambda t, p: _scores(t, p) / p.shape[-1], "dot-product version"),
    (lambda t, p: (p.transpose(1, 2) @ t).softmax(-1), None),
    (lambda t, p: (t @ p.transpose(1, 2)).softmax(-1), "channel×channel"),
    (lambda t, p: _scores(t, p).softmax(-1).detach(), "autograd"),
    (lambda t, p: torch.softmax(_scores(t, p), -1).numpy(), "NumPy"),
])
def test_affinity_mutants(mutant, hint):
    assert_scores_less("04.affinity", mutant, hint)


def test_affinity_accepts_einsum_and_matmul_forms():
    assert grade("04.affinity", lambda t, p: torch.einsum("bdn,bdm->bnm", t, p).softmax(-1))[0] == 3
    assert grade("04.affinity", lambda t, p: torch.softmax(t.permute(0, 2, 1) @ p, dim=2))[0] == 3


# --------------------------------------------------------------------------- output with zero-init
class _NoZeroInit(ex.NonLocalOutput):
    def __init__(self, d, c):
        super().__init__(d, c)
        nn.init.ones_(self.bn.weight)


class _NoResidual(ex.NonLocalOutput):
    def forward(self, x, y):
        return super().forward(x, y) - x


class _ViewWithoutTranspose(ex.NonLocalOutput):
    def forward(self, x, y):
        b, _, h, w = x.shape
        return x + self.bn(self.W(y.reshape(b, -1, h, w)))


class _BnAfterAdd(ex.NonLocalOutput):
    def forward(self, x, y):
        b, _, h, w = x.shape
        return self.bn(x + self.W(y.transpose(1, 2).reshape(b, -1, h, w)))


class _BothZero(ex.NonLocalOutput):
    def __init__(self, d, c):
        super().__init__(d, c)
        nn.init.zeros_(self.W.weight)
        nn.init.zeros_(self.W.bias)


class _ZeroWInstead(nn.Module):
    """The official code's choice without BN (W = 0), with BN at its default: also identity at init."""

    def __init__(self, d, c):
        super().__init__()
        self.W = nn.Conv2d(d, c, 1)
        self.bn = nn.BatchNorm2d(c)
        nn.init.zeros_(self.W.weight)
        nn.init.zeros_(self.W.bias)

    def forward(self, x, y):
        b, _, h, w = x.shape
        return x + self.bn(self.W(y.permute(0, 2, 1).reshape(b, -1, h, w)))


def test_output_accepts_zeroing_w_instead_of_gamma():
    earned, total, results = grade("04.nonlocal_output", _ZeroWInstead)
    assert earned == total, [r for r in results if not r.passed]


@pytest.mark.parametrize("mutant,hint", [
    (_NoZeroInit, "initialise the BN's weight γ"),
    (_NoResidual, "residual is missing"),
    (_ViewWithoutTranspose, "transpose it to [B, d, N] BEFORE reshaping"),
    (_BnAfterAdd, "BN was applied after the residual add"),
    (_BothZero, "neither W nor the BN's γ gets a gradient"),
])
def test_output_mutants(mutant, hint):
    assert_scores_less("04.nonlocal_output", mutant, hint)


# --------------------------------------------------------------------------- dot product normalisation
@pytest.mark.parametrize("mutant,hint", [
    (lambda t, p, g: (_scores(t, p) / t.shape[-1]) @ g.transpose(1, 2), "divided by N"),
    (lambda t, p, g: _scores(t, p) @ g.transpose(1, 2), "normalisation is missing"),
    (lambda t, p, g: (_scores(t, p) / t.shape[1]) @ g.transpose(1, 2), "divided by d"),
    (lambda t, p, g: _scores(t, p).softmax(-1) @ g.transpose(1, 2), "a softmax was used"),
    (lambda t, p, g: ((_scores(t, p) / p.shape[-1]) @ g.transpose(1, 2)).transpose(1, 2), None),
])
def test_dot_product_mutants(mutant, hint):
    assert_scores_less("04.dot_product_norm", mutant, hint)


def test_dot_product_accepts_the_reassociated_form():
    efficient = lambda t, p, g: t.transpose(1, 2) @ (p @ g.transpose(1, 2)) / p.shape[-1]  # θ(φᵀg)/M, O(N·d²)
    assert grade("04.dot_product_norm", efficient)[0] == 2


# --------------------------------------------------------------------------- GC context
@pytest.mark.parametrize("mutant,hint", [
    (lambda x, m: (x * m.softmax(1)).sum((2, 3), keepdim=True), "dim=1"),
    (lambda x, m: x.mean((2, 3), keepdim=True), "global average pooling"),
    (lambda x, m: (x * m).sum((2, 3), keepdim=True), "softmax is missing"),
    (lambda x, m: (x * m.softmax(-1)).sum((2, 3), keepdim=True), "each row only"),
    (lambda x, m: x * m.flatten(2).softmax(-1).reshape(m.shape), "not summed over positions"),
])
def test_gc_context_mutants(mutant, hint):
    assert_scores_less("04.gc_context", mutant, hint)
