"""Module 09's capstone check ``09.design_block``: a block that keeps the contract earns full marks, whatever its
design (a learner's own, a registered name, a course block); a broken one — wrong shape, no gradient, no ValueError,
batch mixing — earns less, with the hint that names the break. ``CORRECT`` and ``MISTAKES`` feed
``tests/test_exercises_fairness.py``."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from attncourse.blocks import BLOCKS, check_input, register_block
from attncourse.blocks.position import CoordAtt, ShuffleAttention
from attncourse.exercises import check, grade, list_exercises
from attncourse.exercises import m09_position_fusion as ex

KEY = "09.design_block"


class RowGate(nn.Module):
    """A learner's design: statistic = mean over W per row, transform = a 1-D conv over rows, reweight = sigmoid."""

    def __init__(self, channels):
        super().__init__()
        self.channels = channels
        self.conv = nn.Conv1d(channels, channels, 3, padding=1, groups=channels)

    def forward(self, x):
        check_input(self, x, self.channels)
        return x * torch.sigmoid(self.conv(x.mean(3)))[..., None]


class ManualChecks(nn.Module):
    """The same contract kept by hand-written checks instead of check_input, with a BatchNorm (eval: per sample)."""

    def __init__(self, channels):
        super().__init__()
        self.channels = channels
        self.proj = nn.Conv2d(channels, 1, 1)
        self.bn = nn.BatchNorm2d(1)

    def forward(self, x):
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"ManualChecks: expected [N, {self.channels}, H, W], got shape {tuple(x.shape)}")
        return x * torch.sigmoid(self.bn(self.proj(x)))


class _Registered(RowGate):
    pass


CORRECT = {KEY: {"reference": ex.ExampleBlock, "row gate": RowGate, "manual checks": ManualChecks,
                 "course block (CoordAtt)": CoordAtt, "course block (SA, a lambda)": lambda c: ShuffleAttention(c, None)}}


class Pooled(RowGate):
    """Wrong shape: returns the gate, not the reweighted map."""

    def forward(self, x):
        check_input(self, x, self.channels)
        return torch.sigmoid(self.conv(x.mean(3)))[..., None]


class Detached(RowGate):
    """No gradient to the parameters: the gate is computed under no_grad."""

    def forward(self, x):
        check_input(self, x, self.channels)
        with torch.no_grad():
            gate = torch.sigmoid(self.conv(x.mean(3)))[..., None]
        return x * gate


class Unchecked(nn.Module):
    """No ValueError: wrong channels reach the conv and torch raises a RuntimeError."""

    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.conv(x))


class Unnamed(RowGate):
    """A ValueError that names neither the block nor the shape."""

    def forward(self, x):
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError("bad input")
        return super().forward(x)


class BatchStats(RowGate):
    """Mixes samples: normalises the gate with statistics over the batch, also in eval mode."""

    def forward(self, x):
        check_input(self, x, self.channels)
        logits = self.conv(x.mean(3))
        logits = (logits - logits.mean(0, keepdim=True)) / (logits.std(0, keepdim=True, unbiased=False) + 1)
        return x * torch.sigmoid(logits)[..., None]


class NotAModule:
    def __init__(self, channels):
        self.channels = channels

    def __call__(self, x):
        return x


MISTAKES = {KEY: [(Pooled, "return a tensor of the input's shape"), (Detached, "no gradient reached these parameters"),
                  (Unchecked, "raise a ValueError for this input"), (Unnamed, "must name the block's class"),
                  (BatchStats, "a batch of one must give that sample's row"),
                  (NotAModule, "must build an nn.Module"), ("no_such_block", "is not a registered block name")]}


def test_registered_and_the_reference_keeps_the_course_contract():
    assert KEY in list_exercises("09.")
    earned, total, results = grade(KEY, ex.ExampleBlock)
    assert earned == total == 6 and len(results) == 7


@pytest.mark.parametrize("style", sorted(CORRECT[KEY]))
def test_a_contract_keeping_block_gets_full_points(style):
    earned, total, results = grade(KEY, CORRECT[KEY][style])
    assert earned == total, [f"{r.name}: {r.hint}" for r in results if not r.passed]


def test_a_registered_name_is_graded_as_its_class(capsys):
    register_block("_learner_row_gate")(_Registered)
    try:
        assert check(KEY, "_learner_row_gate") == 6
    finally:
        BLOCKS.pop("_learner_row_gate")


@pytest.mark.parametrize("answer,hint", MISTAKES[KEY], ids=[m[0] if isinstance(m[0], str) else m[0].__name__
                                                           for m in MISTAKES[KEY]])
def test_a_broken_block_gets_less_with_the_hint_that_names_it(answer, hint):
    earned, total, results = grade(KEY, answer)
    assert earned < total
    assert any(hint in r.hint for r in results if not r.passed), [r.hint for r in results]


def test_each_break_costs_only_its_own_cases():
    """Points for the contract, case by case: a block that only lacks its ValueErrors keeps the other points."""
    assert grade(KEY, Unchecked)[0] == pytest.approx(6 * 5 / 7, abs=0.01)
    assert grade(KEY, Detached)[0] == pytest.approx(6 * 6 / 7, abs=0.01)
    assert grade(KEY, Pooled)[0] < grade(KEY, Detached)[0]
