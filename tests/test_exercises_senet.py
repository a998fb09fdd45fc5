"""Module 02 exercises: the reference solutions earn full marks, known-wrong variants (mutants) earn less."""
import math

import pytest
import torch
from torch import nn

from attncourse.exercises import EXERCISES, check, grade, list_exercises
from exercise_helpers import assert_scores_less
from attncourse.exercises import m02_senet as ex

KEYS = ["02.squeeze", "02.excitation", "02.se_resnet_block", "02.eca_kernel_size"]


def test_module_registers_at_least_three_exercises():
    assert set(KEYS) <= set(list_exercises("02."))


# --------------------------------------------------------------------------- squeeze
@pytest.mark.parametrize("mutant,hint", [
    (lambda x, op="avg": ex.squeeze(x.transpose(1, 2), op).transpose(1, 2), None),
    (lambda x, op="avg": {"avg": x.mean(1, keepdim=True), "max": x.amax(1, keepdim=True),
                          "std": x.std(1, unbiased=False, keepdim=True)}[op], "pooled over the channels"),
    (lambda x, op="avg": {"avg": x.mean(2, keepdim=True), "max": x.amax(2, keepdim=True),
                          "std": x.std(2, unbiased=False, keepdim=True)}[op], "pooled over H only"),
    (lambda x, op="avg": ex.squeeze(x, op).flatten(1), "keepdim"),
    (lambda x, op="avg": x.sum((2, 3), keepdim=True) if op == "avg" else ex.squeeze(x, op), "sum over space"),
    (lambda x, op="avg": x.std((2, 3), keepdim=True) if op == "std" else ex.squeeze(x, op), "unbiased"),
    (lambda x, op="avg": x.mean((2, 3), keepdim=True), None),  # ignores op
    (lambda x, op="avg": ex.squeeze(x, op).detach(), "autograd"),
])
def test_squeeze_mutants(mutant, hint):
    assert_scores_less("02.squeeze", mutant, hint)


# --------------------------------------------------------------------------- excitation
class _NoSigmoid(ex.Excitation):
    def forward(self, z):
        return self.fc2(torch.relu(self.fc1(z)))


class _NoReLU(ex.Excitation):
    def forward(self, z):
        return torch.sigmoid(self.fc2(self.fc1(z)))


class _WrongReduction(nn.Module):  # hidden = C * r instead of C // r
    def __init__(self, channels, reduction=16):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels * reduction, 1)
        self.fc2 = nn.Conv2d(channels * reduction, channels, 1)

    def forward(self, z):
        return torch.sigmoid(self.fc2(torch.relu(self.fc1(z))))


class _NoBottleneck(_WrongReduction):
    def __init__(self, channels, reduction=16):
        super().__init__(channels, 1)


class _NoBias(nn.Module):
    def __init__(self, channels, reduction=16):
        super().__init__()
        self.fc1 = nn.Linear(channels, channels // reduction, bias=False)
        self.fc2 = nn.Linear(channels // reduction, channels, bias=False)

    def forward(self, z):
        return torch.sigmoid(self.fc2(torch.relu(self.fc1(z.flatten(1))))).reshape(z.shape)


class _Softmax(ex.Excitation):
    def forward(self, z):
        return torch.softmax(self.fc2(torch.relu(self.fc1(z))), dim=1)


class _FlatOutput(ex.Excitation):
    def forward(self, z):
        return super().forward(z).flatten(1)


class _BatchMixing(ex.Excitation):
    def forward(self, z):
        return super().forward(z.mean(0, keepdim=True).expand_as(z))


class _Detached(ex.Excitation):
    def forward(self, z):
        return super().forward(z.detach())


class _LinearSolution(nn.Module):
    """A correct answer written with nn.Linear (not 1×1 convs): must score full marks too."""

    def __init__(self, channels, reduction=16):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(channels, channels // reduction), nn.ReLU(),
                                 nn.Linear(channels // reduction, channels), nn.Sigmoid())

    def forward(self, z):
        return self.mlp(z.flatten(1)).view_as(z)


def test_excitation_accepts_an_nn_linear_solution():
    earned, total, results = grade("02.excitation", _LinearSolution)
    assert earned == total, [r for r in results if not r.passed]


@pytest.mark.parametrize("mutant,hint", [
    (_NoSigmoid, "sigmoid"),
    (_NoReLU, "ReLU"),
    (_WrongReduction, "C·r"),
    (_NoBottleneck, "bottleneck is missing"),
    (_NoBias, "biases"),
    (_Softmax, None),
    (_FlatOutput, "[N, C, 1, 1]"),
    (_BatchMixing, "batch"),
    (_Detached, "no gradient reached the input"),
])
def test_excitation_mutants(mutant, hint):
    assert_scores_less("02.excitation", mutant, hint)


def test_excitation_function_instead_of_module_scores_zero():
    earned, _, results = grade("02.excitation", lambda c, r: (lambda z: torch.sigmoid(z)))
    assert earned == 0 and "nn.Module" in results[0].hint


# --------------------------------------------------------------------------- SE-ResNet block
@pytest.mark.parametrize("mutant,hint", [
    (lambda x, branch, se, shortcut: torch.relu(se(branch(x) + shortcut(x))), "after the add"),
    (lambda x, branch, se, shortcut: torch.relu(se(branch(x))), "shortcut (residual connection) is missing"),
    (lambda x, branch, se, shortcut: se(branch(x)) + shortcut(x), "final ReLU"),
    (lambda x, branch, se, shortcut: torch.relu(branch(x) + shortcut(x)), "SE was not applied"),
    (lambda x, branch, se, shortcut: torch.relu(branch(se(x)) + shortcut(x)), None),
    (lambda x, branch, se, shortcut: torch.relu(branch(x) + se(shortcut(x))), "applied to the shortcut"),
    (lambda x, branch, se, shortcut: torch.relu(se(branch(x)) + x), None),
    (lambda x, branch, se, shortcut: se(torch.relu(branch(x) + shortcut(x))), "after the final ReLU"),
])
def test_se_resnet_mutants(mutant, hint):
    assert_scores_less("02.se_resnet_block", mutant, hint)


def test_se_resnet_with_the_package_block_layout_scores_full():
    def learner(x, branch, se, shortcut):
        out = branch(x)
        out = out * se.weights(out) if hasattr(se, "weights") else se(out)
        return torch.relu(out + shortcut(x))

    earned, total, _ = grade("02.se_resnet_block", learner)
    assert earned == total


# --------------------------------------------------------------------------- ECA kernel size
@pytest.mark.parametrize("mutant,hint", [
    (lambda c, gamma=2, beta=1: int(abs((math.log2(c) + beta) / gamma)), "odd"),
    (lambda c, gamma=2, beta=1: (lambda t: t if t % 2 else t + 1)(round((math.log2(c) + beta) / gamma)), "truncate"),
    (lambda c, gamma=2, beta=1: (lambda t: t if t % 2 else t + 1)(int((math.log(c) + beta) / gamma)), "log2"),
    (lambda c, gamma=2, beta=1: ex.eca_kernel_size(c), "hard-code"),
    (lambda c, gamma=2, beta=1: 3, None),
])
def test_eca_mutants(mutant, hint):
    assert_scores_less("02.eca_kernel_size", mutant, hint)


def test_exercise_solution_matches_the_package():
    from attncourse.blocks.channel import eca_kernel_size, squeeze

    x = torch.randn(2, 5, 4, 3)
    for op in ("avg", "max"):
        torch.testing.assert_close(ex.squeeze(x, op), squeeze(x, op)[0])
    assert all(ex.eca_kernel_size(c) == eca_kernel_size(c) for c in range(2, 3000))
