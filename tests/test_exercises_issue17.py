"""One test per case of issue 17 ("fair checks"): each answer the issue reports, and what it now gets.

The standing, general version of these checks is tests/test_exercises_fairness.py.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from attncourse.exercises import grade
from attncourse.exercises import m02_senet as m02
from attncourse.exercises import m04_nonlocal as m04
from attncourse.exercises import m05_cbam as m05


def _failing(key, answer):
    earned, total, results = grade(key, answer)
    return earned, total, [r.hint for r in results if not r.passed]


# ---- correct answers scored as wrong ----------------------------------------------------------------
@pytest.mark.parametrize("key, answer", [
    ("00.conv_params", lambda ci, co, k, bias=True: 2.0 * (co * ci * k * k + (co if bias else 0)) / 2),
    ("00.conv_flops", lambda ci, co, k, h, w: 2.0 * ci * co * k * k * h * w),
    ("00.conv_flops", lambda ci, co, k, h, w: 2 * ci * co * math.pow(k, 2) * h * w),
    ("00.conv_flops", lambda ci, co, k, h, w: 2 * ci * co * k * k * ((h + 2 * (k // 2) - k) / 1 + 1)
     * ((w + 2 * (k // 2) - k) / 1 + 1)),
    ("01.branch_flops", lambda ci, cr, co, k, h, w: 2.0 * h * w * (ci * cr + cr * co * math.pow(k, 2))),
])
def test_counts_returned_as_whole_number_floats_get_full_marks(key, answer):
    earned, total, hints = _failing(key, answer)
    assert earned == total, hints
    assert not any("should be an int" in h for h in hints)


class _RawMatrixCAM(nn.Module):
    """x @ W with W1 [C, C/r] and W2 [C/r, C]: the old shape-based reader put W1 in W2's slot (2.29/4)."""

    def __init__(self, c, r=16):
        super().__init__()
        d = c // r
        self.w1, self.b1 = nn.Parameter(torch.randn(c, d) * 0.3), nn.Parameter(torch.randn(d) * 0.1)
        self.w2, self.b2 = nn.Parameter(torch.randn(d, c) * 0.3), nn.Parameter(torch.randn(c) * 0.1)

    def forward(self, x):
        mlp = lambda z: torch.relu(z @ self.w1 + self.b1) @ self.w2 + self.b2  # noqa: E731
        return torch.sigmoid(mlp(x.mean((2, 3))) + mlp(x.amax((2, 3))))[:, :, None, None]


class _Conv1dCAM(nn.Module):
    """Kernel-1 Conv1d layers: the old reader could not read them at all."""

    def __init__(self, c, r=16):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv1d(c, c // r, 1), nn.Conv1d(c // r, c, 1)

    def forward(self, x):
        mlp = lambda z: self.fc2(torch.relu(self.fc1(z)))  # noqa: E731
        return torch.sigmoid(mlp(x.mean((2, 3))[..., None]) + mlp(x.amax((2, 3))[..., None]))[..., None]


@pytest.mark.parametrize("answer", [_RawMatrixCAM, _Conv1dCAM])
def test_channel_mlp_reads_parameters_by_role(answer):
    earned, total, hints = _failing("05.channel_mlp", answer)
    assert earned == total, hints


# ---- wrong answers scored as right ------------------------------------------------------------------
class _ReluBeforeSigmoid(m02.Excitation):
    def forward(self, z):
        return torch.sigmoid(torch.relu(self.fc2(torch.relu(self.fc1(z)))))


class _SigmoidHidden(m02.Excitation):
    def forward(self, z):
        return torch.sigmoid(self.fc2(torch.sigmoid(self.fc1(z))))


@pytest.mark.parametrize("answer, named", [(_ReluBeforeSigmoid, "can never go below 0.5"),
                                           (_SigmoidHidden, "must be a ReLU, not a sigmoid")])
def test_excitation_compares_values_with_a_reference(answer, named):
    earned, total, hints = _failing("02.excitation", answer)
    assert earned < total and any(named in h for h in hints), hints


# ---- hints that pointed at the wrong mistake --------------------------------------------------------
def test_eca_beta_not_divided_by_gamma_is_named_not_truncation():
    odd = lambda t: t if t % 2 else t + 1  # noqa: E731
    earned, total, hints = _failing("02.eca_kernel_size", lambda c, gamma=2, beta=1: odd(int(math.log2(c) / gamma + beta)))
    assert earned < total and hints
    assert all("β is divided by γ" in h for h in hints), hints
    assert not any("truncate" in h or "round" in h for h in hints), hints


class _ReturnsZTimesWeights(m02.Excitation):
    def forward(self, z):
        return z * super().forward(z)


def test_excitation_z_times_sigma_is_named():
    earned, total, hints = _failing("02.excitation", _ReturnsZTimesWeights)
    assert earned < total and any("you returned z rescaled" in h for h in hints), hints
    assert not any("sigmoid" in h and "forget" in h or "final sigmoid is missing" in h for h in hints), hints
    assert not any("must reduce C" in h for h in hints), hints


class _NoResidual(m04.NonLocalOutput):
    def forward(self, x, y):
        b, _, h, w = x.shape
        return self.bn(self.W(y.transpose(1, 2).reshape(b, -1, h, w)))


def test_nonlocal_missing_residual_is_named_not_the_zero_init():
    earned, total, hints = _failing("04.nonlocal_output", _NoResidual)
    assert earned < total and hints and all("residual is missing" in h for h in hints), hints
    assert not any("initialise" in h for h in hints), hints


class _SumBeforeMLP(m05.ChannelAttentionMap):
    def forward(self, x):
        return torch.sigmoid(self.mlp(x.mean((2, 3), keepdim=True) + x.amax((2, 3), keepdim=True)))


def test_channel_mlp_sum_before_the_mlp_is_not_called_a_detached_graph():
    earned, total, results = grade("05.channel_mlp", _SumBeforeMLP)
    hints = [r.hint for r in results if not r.passed]
    assert earned < total and any("added BEFORE the MLP" in h for h in hints), hints
    assert not any("no gradient reached x" in h for h in hints), hints
    assert next(r for r in results if r.name.startswith("gradients")).passed


def test_reweight_softmax_over_channels_is_named_as_softmax():
    earned, total, hints = _failing("00.reweight", lambda x, f: x * torch.softmax(f(x), dim=1))
    assert earned < total
    assert all("softmax is not the gate" in h for h in hints[:-1]), hints  # every value case names the softmax
    assert not any(h.endswith("you returned x unchanged") and "softmax" not in h for h in hints), hints


@pytest.mark.parametrize("key, answer, named", [
    ("01.flops_saving", lambda ci, cr, co, k: (ci * co * k * k) // (ci * cr + cr * co * k * k), "floored"),
    ("01.branch_flops", lambda ci, cr, co, k, h, w: 2 * h * w * (ci * cr + ci * co * k * k), "reads the c_reduce channels"),
    ("04.affinity", lambda t, p: (t.reshape(t.shape[0], t.shape[2], t.shape[1]) @ p).softmax(-1), "reshaped/viewed"),
    ("04.dot_product_norm", lambda t, p, g: (t.transpose(1, 2) @ p) / p.shape[-1]
     @ g.reshape(g.shape[0], g.shape[2], g.shape[1]), "reshaped/viewed"),
])
def test_recognisable_mistakes_are_named_not_just_values_differ(key, answer, named):
    earned, total, hints = _failing(key, answer)
    assert earned < total and hints and all(named in h for h in hints), hints
    assert not any("values differ" in h for h in hints), hints
