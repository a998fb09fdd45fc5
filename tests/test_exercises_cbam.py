"""Module 05 exercises: the reference solutions earn full marks, known-wrong variants (mutants) earn less."""
import pytest
import torch
from torch import nn
from torch.testing import assert_close

from attncourse.exercises import EXERCISES, check, grade, list_exercises
from exercise_helpers import assert_scores_less
from attncourse.exercises import m05_cbam as ex

KEYS = ["05.channel_mlp", "05.spatial_descriptor", "05.cbam_block", "05.bam_combine"]


def test_module_registers_at_least_three_exercises():
    assert set(KEYS) <= set(list_exercises("05."))


def test_reference_solutions_match_the_package_blocks():
    from attncourse.blocks.mixed import BAM, CBAM, ChannelAttention
    from attncourse.blocks.mixed import spatial_descriptor as package_descriptor
    from attncourse.models import BasicBlock

    x = torch.randn(2, 16, 6, 5)
    cam = ChannelAttention(16, 4)
    mine = ex.ChannelAttentionMap(16, 4)
    mine.load_state_dict(cam.state_dict())
    assert_close(mine(x), cam.weights(x))
    assert_close(ex.spatial_descriptor(x), package_descriptor(x))

    block = BasicBlock(8, 16, stride=2, attention=CBAM(16, 4)).eval()
    x = torch.randn(2, 8, 8, 8)
    got = ex.cbam_basic_block(x, block.conv1[0], block.conv1[1], block.conv2[0], block.conv2[1], block.attention,
                              block.shortcut)
    assert_close(got, block(x))

    bam = BAM(16, 4).eval()
    x = torch.randn(2, 16, 7, 7)
    mc, ms = bam.gates(x)
    assert_close(ex.bam_attention(x, mc, ms), bam(x))


# --------------------------------------------------------------------------- channel MLP
class _SeparateMLPs(nn.Module):
    """One MLP per pooled descriptor: twice the parameters, and not CBAM."""

    def __init__(self, channels, reduction=16):
        super().__init__()
        self.avg_mlp = ex.ChannelAttentionMap(channels, reduction)
        self.max_mlp = ex.ChannelAttentionMap(channels, reduction)

    def forward(self, x):
        return torch.sigmoid(self.avg_mlp.mlp(x.mean((2, 3), keepdim=True)) + self.max_mlp.mlp(x.amax((2, 3), keepdim=True)))


class _MeanOnly(ex.ChannelAttentionMap):
    def forward(self, x):
        return torch.sigmoid(self.mlp(x.mean((2, 3), keepdim=True)))


class _MaxOnly(ex.ChannelAttentionMap):
    def forward(self, x):
        return torch.sigmoid(self.mlp(x.amax((2, 3), keepdim=True)))


class _SumBeforeMLP(ex.ChannelAttentionMap):
    def forward(self, x):
        return torch.sigmoid(self.mlp(x.mean((2, 3), keepdim=True) + x.amax((2, 3), keepdim=True)))


class _NoSigmoid(ex.ChannelAttentionMap):
    def forward(self, x):
        return self.mlp(x.mean((2, 3), keepdim=True)) + self.mlp(x.amax((2, 3), keepdim=True))


class _SigmoidEach(ex.ChannelAttentionMap):
    def forward(self, x):
        return torch.sigmoid(self.mlp(x.mean((2, 3), keepdim=True))) + torch.sigmoid(self.mlp(x.amax((2, 3), keepdim=True)))


class _NoBias(nn.Module):
    def __init__(self, channels, reduction=16):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)

    def forward(self, x):
        mlp = lambda z: self.fc2(torch.relu(self.fc1(z)))
        return torch.sigmoid(mlp(x.mean((2, 3), keepdim=True)) + mlp(x.amax((2, 3), keepdim=True)))


class _RescaledX(ex.ChannelAttentionMap):
    def forward(self, x):
        return x * super().forward(x)


class _Detached(ex.ChannelAttentionMap):
    def forward(self, x):
        return super().forward(x.detach())


class _LinearSolution(nn.Module):
    """A correct answer with nn.Linear and a shared nn.Sequential: must score full marks too."""

    def __init__(self, channels, reduction=16):
        super().__init__()
        self.shared = nn.Sequential(nn.Linear(channels, channels // reduction), nn.ReLU(),
                                    nn.Linear(channels // reduction, channels))

    def forward(self, x):
        a = self.shared(x.mean((2, 3)))
        m = self.shared(x.flatten(2).max(dim=2).values)
        return torch.sigmoid(a + m)[:, :, None, None]


def test_channel_mlp_accepts_an_nn_linear_solution():
    earned, total, results = grade("05.channel_mlp", _LinearSolution)
    assert earned == total, [r for r in results if not r.passed]


@pytest.mark.parametrize("mutant,hint", [
    (_SeparateMLPs, "ONE MLP"),
    (_MeanOnly, "only the average-pooled descriptor"),
    (_MaxOnly, "only the max-pooled descriptor"),
    (_SumBeforeMLP, "added BEFORE the MLP"),
    (_NoSigmoid, "sigmoid"),
    (_SigmoidEach, "before adding"),
    (_NoBias, "biases"),
    (_RescaledX, "[N, C, 1, 1]"),
    (_Detached, "no gradient reached x"),
])
def test_channel_mlp_mutants(mutant, hint):
    assert_scores_less("05.channel_mlp", mutant, hint)


# --------------------------------------------------------------------------- spatial descriptor
def test_spatial_descriptor_order_is_accepted_either_way():
    """The decision documented in the module: [mean, max] (timm) is as right as [max, mean] (official)."""
    timm_order = lambda x: torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
    earned, total, results = grade("05.spatial_descriptor", timm_order)
    assert earned == total, [r for r in results if not r.passed]
    stacked = lambda x: torch.stack([x.max(dim=1).values, x.mean(dim=1)], dim=1)
    assert grade("05.spatial_descriptor", stacked)[0] == total


@pytest.mark.parametrize("mutant,hint", [
    (lambda x: x.mean(1, keepdim=True), "only the mean"),
    (lambda x: x.amax(1, keepdim=True), "only the max"),
    (lambda x: x.amax(1, keepdim=True) + x.mean(1, keepdim=True), "were added"),
    (lambda x: torch.cat([x.amax(1, keepdim=True), x.sum(1, keepdim=True)], 1), "sum over channels"),
    (lambda x: torch.cat([x.amax((2, 3), keepdim=True), x.mean((2, 3), keepdim=True)], 1), "pooled over the positions"),
    (lambda x: torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], 0), "batch dimension"),
    (lambda x: torch.cat([torch.max(x, 1, keepdim=True)[1].float(), x.mean(1, keepdim=True)], 1), "indices"),
    (lambda x: torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], 1).detach(), "autograd"),
    (lambda x: (x.amax(1), x.mean(1)), "single tensor"),
])
def test_spatial_descriptor_mutants(mutant, hint):
    assert_scores_less("05.spatial_descriptor", mutant, hint)


# --------------------------------------------------------------------------- CBAM basic block
def _branch(x, conv1, bn1, conv2, bn2):
    return bn2(conv2(torch.relu(bn1(conv1(x)))))


@pytest.mark.parametrize("mutant,hint", [
    (lambda x, c1, b1, c2, b2, cbam, sc: torch.relu(cbam(_branch(x, c1, b1, c2, b2) + sc(x))), "after the add"),
    (lambda x, c1, b1, c2, b2, cbam, sc: torch.relu(cbam(_branch(x, c1, b1, c2, b2))), "residual connection is missing"),
    (lambda x, c1, b1, c2, b2, cbam, sc: cbam(_branch(x, c1, b1, c2, b2)) + sc(x), "final ReLU"),
    (lambda x, c1, b1, c2, b2, cbam, sc: torch.relu(cbam(b2(c2(b1(c1(x))))) + sc(x)), "between bn1 and conv2"),
    (lambda x, c1, b1, c2, b2, cbam, sc: torch.relu(_branch(x, c1, b1, c2, b2) + sc(x)), "CBAM was not applied"),
    (lambda x, c1, b1, c2, b2, cbam, sc: torch.relu(_branch(x, c1, b1, c2, b2) + cbam(sc(x))), "to the shortcut"),
    (lambda x, c1, b1, c2, b2, cbam, sc: cbam(torch.relu(_branch(x, c1, b1, c2, b2) + sc(x))), "after the final ReLU"),
    (lambda x, c1, b1, c2, b2, cbam, sc: torch.relu(cbam(_branch(x, c1, b1, c2, b2)) + x), None),
    (lambda x, c1, b1, c2, b2, cbam, sc: torch.relu(cbam(cbam(_branch(x, c1, b1, c2, b2))) + sc(x)), None),
])
def test_cbam_block_mutants(mutant, hint):
    assert_scores_less("05.cbam_block", mutant, hint)


# --------------------------------------------------------------------------- BAM combination
@pytest.mark.parametrize("mutant,hint", [
    (lambda x, mc, ms: x * torch.sigmoid(mc * ms), "identity term is missing"),
    (lambda x, mc, ms: x * (1 + torch.sigmoid(mc + ms)), "paper's formula"),
    (lambda x, mc, ms: x * (1 + torch.sigmoid(mc) * torch.sigmoid(ms)), "each gate separately"),
    (lambda x, mc, ms: x * (1 + mc * ms), "sigmoid is missing"),
])
def test_bam_combine_mutants(mutant, hint):
    assert_scores_less("05.bam_combine", mutant, hint)
