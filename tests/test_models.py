import pytest
import torch
from torch import nn

from attncourse.blocks import BLOCKS, create_block, get_block_spec, list_blocks, register_block
from attncourse.models import AttnResNet, BasicBlock, receptive_field


def test_baseline_shapes_for_every_task_geometry():
    for cin, h, w, k in [(1, 40, 40, 10), (4, 24, 24, 10), (1, 24, 96, 2), (3, 33, 17, 5)]:
        net = AttnResNet(cin, k).eval()
        assert net(torch.randn(2, cin, h, w)).shape == (2, k)
        assert net.features(torch.randn(1, cin, h, w)).shape[1] == 64


def test_receptive_field_of_the_baseline_is_25_px():
    assert receptive_field(AttnResNet()) == 25
    assert receptive_field(AttnResNet(depths=(2, 2, 2))) > 25


def test_unknown_attention_lists_registered_names():
    with pytest.raises(ValueError, match=r"unknown attention block 'nope'.*none"):
        AttnResNet(attention="nope")


def test_bad_configuration_errors():
    with pytest.raises(ValueError, match="same length"):
        AttnResNet(widths=(16, 32), depths=(1,))
    with pytest.raises(ValueError, match="out of range"):
        AttnResNet(attention="none", attention_stages=(4,))


class _Scale(nn.Module):
    """A test block that halves its input and counts calls."""

    def __init__(self, channels, factor=0.5):
        super().__init__()
        self.channels, self.factor, self.calls = channels, factor, 0

    def forward(self, x):
        assert x.shape[1] == self.channels
        self.calls += 1
        return x * self.factor


@pytest.fixture
def test_blocks():
    register_block("_test_residual", placement="residual")(_Scale)
    register_block("_test_stage", placement="stage", factor=2.0)(_Scale)
    yield
    BLOCKS.pop("_test_residual")
    BLOCKS.pop("_test_stage")


def test_residual_placement_wraps_the_residual_branch_before_the_add(test_blocks):
    net = AttnResNet(attention="_test_residual").eval()
    blocks = [m for m in net.modules() if isinstance(m, BasicBlock)]
    assert all(isinstance(b.attention, _Scale) for b in blocks)
    b = blocks[0]
    x = torch.randn(2, 16, 9, 7)
    expected = torch.relu(0.5 * b.conv2(torch.relu(b.conv1(x))) + x)
    torch.testing.assert_close(b(x), expected)


def test_stage_placement_inserts_after_stages_2_and_3_by_default(test_blocks):
    net = AttnResNet(attention="_test_stage")
    stage_blocks = [m for m in net.modules() if isinstance(m, _Scale)]
    assert [b.channels for b in stage_blocks] == [32, 64]
    assert all(b.factor == 2.0 for b in stage_blocks)  # registered default reached the block
    net = AttnResNet(attention="_test_stage", attention_stages=(1,), attention_kwargs={"factor": 3.0})
    assert [(b.channels, b.factor) for b in net.modules() if isinstance(b, _Scale)] == [(16, 3.0)]


def test_registry_rejects_bad_placement_and_duplicates():
    with pytest.raises(ValueError, match="placement"):
        register_block("_bad", placement="everywhere")
    with pytest.raises(ValueError, match="already registered"):
        register_block("none")(_Scale)
    assert get_block_spec("NONE").name == "none"
    assert isinstance(create_block("none", 8), nn.Identity)
    assert "none" in list_blocks()


def test_registered_default_stages_place_bam_at_the_stage_boundaries():
    from attncourse.blocks.mixed import BAM

    net = AttnResNet(attention="bam")
    assert [b.channels for b in net.modules() if isinstance(b, BAM)] == [16, 32]  # after stages 1 and 2
    net = AttnResNet(attention="bam", attention_stages=(3,))
    assert [b.channels for b in net.modules() if isinstance(b, BAM)] == [64]


def test_mlp_head_is_a_nonlinear_readout_of_the_pooled_features():
    import pytest
    import torch
    from torch import nn

    from attncourse.models import AttnResNet

    linear, mlp = AttnResNet(1, 2), AttnResNet(1, 2, head_hidden=8)
    assert isinstance(linear.head[-1], nn.Linear) and linear.head[-1].in_features == 64
    kinds = [type(m) for m in mlp.head]
    assert kinds[-3:] == [nn.Linear, nn.ReLU, nn.Linear] and mlp.head[-3].out_features == 8
    assert sum(p.numel() for p in mlp.parameters()) - sum(p.numel() for p in linear.parameters()) == 64 * 8 + 8 + 8 * 2 + 2 - (64 * 2 + 2)
    assert mlp(torch.randn(2, 1, 16, 16)).shape == (2, 2)
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="head_hidden"):
            AttnResNet(1, 2, head_hidden=bad)
