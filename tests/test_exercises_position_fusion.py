"""Module 09's exercises. The capstone check ``09.design_block``: a block that keeps the contract earns full marks,
whatever its design (a learner's own, a registered name, a course block); a broken one — wrong shape, no gradient, no
ValueError, batch mixing — earns less, with the hint that names the break. The three graded exercises (directional
pooling, channel shuffle, AFF's fusion): the reference solutions equal the package's blocks, other correct styles earn
full marks, named mistakes less. The questions: fixed answers hold, the recorded one follows the recorded run.
``CORRECT`` and ``MISTAKES`` feed ``tests/test_exercises_fairness.py``."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import attncourse.experiments as experiments
from attncourse.blocks import BLOCKS, check_input, register_block
from attncourse.blocks import position
from attncourse.blocks.fusion import AFF
from attncourse.blocks.position import CoordAtt, ShuffleAttention
from attncourse.exercises import QUESTIONS, check, grade, list_exercises
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


# ==================================================================================================
# the three graded exercises
# ==================================================================================================
def test_reference_solutions_equal_the_package_blocks():
    torch.manual_seed(0)
    x = torch.randn(2, 16, 5, 7)
    block = CoordAtt(16).eval()
    pooled = ex.directional_pool(x)
    assert pooled.shape == (2, 16, 5 + 7, 1)
    with torch.no_grad():
        f = block.act(block.bn1(block.conv1(pooled)))
        a_h, a_w = torch.sigmoid(block.conv_h(f[:, :, :5])), torch.sigmoid(block.conv_w(f[:, :, 5:].transpose(2, 3)))
        torch.testing.assert_close(x * a_h * a_w, block(x))
    for groups in (2, 4):
        assert torch.equal(ex.channel_shuffle(x, groups), position.channel_shuffle(x, groups))
    y = torch.randn_like(x)
    aff = AFF(16).eval()
    torch.testing.assert_close(ex.aff_fuse(x, y, aff.attention.local_att, aff.attention.global_att), aff(x, y))


def _pool_loops(x):
    n, c, h, w = x.shape
    rows = torch.stack([x[:, :, i, :].mean(-1) for i in range(h)], dim=2)
    cols = torch.stack([x[:, :, :, j].mean(-1) for j in range(w)], dim=2)
    return torch.cat([rows, cols], dim=2).unsqueeze(-1)


def _pool_adaptive(x):
    h, w = x.shape[2:]
    rows = torch.nn.functional.adaptive_avg_pool2d(x, (h, 1))
    cols = torch.nn.functional.adaptive_avg_pool2d(x, (1, w)).permute(0, 1, 3, 2)
    return torch.cat((rows, cols), 2)


def _shuffle_index(x, groups=2):
    c = x.shape[1]
    order = torch.arange(c).reshape(groups, c // groups).t().flatten()
    return x[:, order]


def _shuffle_stack(x, groups=2):
    return torch.stack(x.chunk(groups, dim=1), dim=2).flatten(1, 2)


def _aff_lerp(x, y, local_branch, global_branch):
    z = x + y
    w = (local_branch(z) + global_branch(z)).sigmoid()
    return 2 * torch.lerp(y, x, w)


def _aff_difference(x, y, local_branch, global_branch):
    s = x + y
    w = 1 / (1 + torch.exp(-(local_branch(s) + global_branch(s))))
    return 2 * (y + (x - y) * w)


CORRECT.update({
    "09.directional_pool": {"reference": ex.directional_pool, "loops over rows and columns": _pool_loops,
                            "adaptive_avg_pool2d": _pool_adaptive},
    "09.channel_shuffle": {"reference": ex.channel_shuffle, "an index permutation": _shuffle_index,
                           "stack the chunks": _shuffle_stack},
    "09.aff_fuse": {"reference": ex.aff_fuse, "torch.lerp": _aff_lerp, "y + (x − y)·w by hand": _aff_difference},
})


def _cols_first(x):
    return torch.cat([x.mean(2, keepdim=True).transpose(2, 3), x.mean(3, keepdim=True)], dim=2)


def _pool_max(x):
    return torch.cat([x.amax(3, keepdim=True), x.amax(2, keepdim=True).transpose(2, 3)], dim=2)


def _pool_sum(x):
    return torch.cat([x.sum(3, keepdim=True), x.sum(2, keepdim=True).transpose(2, 3)], dim=2)


def _pool_last_axis(x):
    return torch.cat([x.mean(3), x.mean(2)], dim=2).unsqueeze(2)


def _pool_global(x):
    return x.mean((2, 3), keepdim=True).expand(-1, -1, x.shape[2] + x.shape[3], 1)


def _pool_detached(x):
    return ex.directional_pool(x).detach()


def _shuffle_none(x, groups=2):
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).reshape(n, c, h, w)


def _shuffle_inverse(x, groups=2):
    n, c, h, w = x.shape
    return x.reshape(n, c // groups, groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def _shuffle_spatial(x, groups=2):
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(2, 3).reshape(n, c, h, w)


def _shuffle_detached(x, groups=2):
    return ex.channel_shuffle(x, groups).detach()


def _aff_no_two(x, y, local_branch, global_branch):
    w = torch.sigmoid(local_branch(x + y) + global_branch(x + y))
    return x * w + y * (1 - w)


def _aff_from_x(x, y, local_branch, global_branch):
    w = torch.sigmoid(local_branch(x) + global_branch(x))
    return 2 * x * w + 2 * y * (1 - w)


def _aff_swapped(x, y, local_branch, global_branch):
    w = torch.sigmoid(local_branch(x + y) + global_branch(x + y))
    return 2 * y * w + 2 * x * (1 - w)


def _aff_two_sigmoids(x, y, local_branch, global_branch):
    w = torch.sigmoid(local_branch(x + y)) * torch.sigmoid(global_branch(x + y))
    return 2 * x * w + 2 * y * (1 - w)


def _aff_global_only(x, y, local_branch, global_branch):
    w = torch.sigmoid(global_branch(x + y))
    return 2 * x * w + 2 * y * (1 - w)


def _aff_local_only(x, y, local_branch, global_branch):
    w = torch.sigmoid(local_branch(x + y))
    return 2 * x * w + 2 * y * (1 - w)


def _aff_detached(x, y, local_branch, global_branch):
    return ex.aff_fuse(x, y, local_branch, global_branch).detach()


MISTAKES.update({
    "09.directional_pool": [(_cols_first, "the order is swapped"), (_pool_max, "that is a max"),
                            (_pool_sum, "that is a sum"), (_pool_last_axis, "concatenated along the last axis"),
                            (_pool_global, "the global average"), (_pool_detached, "autograd graph")],
    "09.channel_shuffle": [(_shuffle_none, "the channels are unchanged"), (_shuffle_inverse, "the inverse shuffle"),
                           (_shuffle_spatial, "with a spatial one"), (_shuffle_detached, "autograd graph")],
    "09.aff_fuse": [(_aff_no_two, "the factor 2 is missing"), (_aff_from_x, "not from x alone"),
                    (_aff_swapped, "you swapped them"), (_aff_two_sigmoids, "then one sigmoid"),
                    (_aff_global_only, "the local branch is missing"),
                    (_aff_local_only, "the global branch is missing"), (_aff_detached, "autograd graph")],
})


@pytest.mark.parametrize("key", ["09.directional_pool", "09.channel_shuffle", "09.aff_fuse"])
def test_the_graded_exercises_are_registered_and_the_references_earn_full_marks(key):
    assert key in list_exercises("09.")
    earned, total, results = grade(key, getattr(ex, key.split(".")[1]))
    assert earned == total == 3, [f"{r.name}: {r.hint}" for r in results if not r.passed]


def test_a_stub_scores_zero_and_check_never_raises(capsys):
    def stub(*args):
        raise NotImplementedError

    for key in ("09.directional_pool", "09.channel_shuffle", "09.aff_fuse"):
        assert check(key, stub) == 0
    assert "not implemented yet" in capsys.readouterr().out


# ==================================================================================================
# the questions
# ==================================================================================================
def test_the_module_has_predict_and_interpret_questions():
    keys = [k for k in QUESTIONS if k.startswith("09.")]
    assert len(keys) >= 2 and {QUESTIONS[k].when for k in keys} == {"predict", "interpret"}


def test_the_row_descriptor_question_holds_on_the_task_images():
    """Moving the bar keeps the image's global mean and its column means, and changes its row means (noise-free)."""
    from attncourse.data.row_marker_digits import render_row_marker

    digits = [torch.rand(10, 10).numpy() for _ in range(3)]
    tops, lefts = [0, 13, 25], [40, 33, 45]
    a, b = (torch.from_numpy(render_row_marker(digits, tops, lefts, t, height=36, width=56))[None, None]
            for t in (0, 2))
    pa, pb = ex.directional_pool(a), ex.directional_pool(b)
    torch.testing.assert_close(a.mean(), b.mean())
    torch.testing.assert_close(pa[:, :, 36:], pb[:, :, 36:])
    assert (pa[:, :, :36] - pb[:, :, :36]).abs().max() > 0.01
    assert QUESTIONS["09.predict_row_descriptor"].correct() == "b"


def test_the_sa_init_question_holds():
    x = torch.randn(2, 16, 5, 3)
    out = ShuffleAttention(16, None)(x)
    torch.testing.assert_close(out, position.channel_shuffle(x * torch.sigmoid(torch.tensor(1.0)), 2))
    assert not torch.allclose(out, x * torch.sigmoid(torch.tensor(1.0)))
    assert QUESTIONS["09.predict_sa_init"].correct() == "b"


def _fake_coordatt_rows(shift: float) -> dict:
    """A stand-in for the recorded coordatt_rows run, built from a recorded run of the same form: SE's runs, and
    CoordAtt's = SE's moved by ``shift`` on every seed."""
    import copy

    real = experiments.load_results("mixed_compare")
    fake = {k: v for k, v in real.items() if k != "arms"}
    fake["experiment"] = "coordatt_rows"
    fake["arms"] = {"baseline": real["arms"]["baseline"], "se": real["arms"]["se"],
                    "coordatt": copy.deepcopy(real["arms"]["se"])}
    fake["arms"]["coordatt"]["mean_test_acc"] += shift
    for run in fake["arms"]["coordatt"]["runs"]:
        run["final_test_acc"] += shift
    return fake


@pytest.mark.parametrize("shift, expected", [(0.2, "a"), (0.0, "b"), (-0.2, "c")])
def test_the_recorded_question_follows_the_recorded_run(monkeypatch, shift, expected):
    if experiments.load_results("mixed_compare") is None:
        pytest.skip("needs a recorded run to build the stand-in from")
    real = experiments.load_results
    monkeypatch.setattr(experiments, "load_results",
                        lambda name, *a, **kw: _fake_coordatt_rows(shift) if name == "coordatt_rows" else real(name))
    assert QUESTIONS["09.predict_coordatt_vs_se"].correct() == expected
    assert grade("09.predict_coordatt_vs_se", expected)[0] == 1
    assert "CoordAtt against SE" in QUESTIONS["09.predict_coordatt_vs_se"].explain(expected)


def test_the_recorded_question_says_how_to_record_when_nothing_is_recorded(monkeypatch):
    monkeypatch.setattr(experiments, "load_results", lambda name, *a, **kw: None)
    earned, _, (res,) = grade("09.predict_coordatt_vs_se", "a")
    assert earned == 0 and "no recorded results of 'coordatt_rows'" in res.hint and "run-all" in res.hint
