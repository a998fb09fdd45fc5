"""Channel attention blocks (SE, its design space, ECA, multi-input SE, SE-ResNet blocks)."""
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from attncourse.blocks import create_block, get_block_spec, list_blocks
from attncourse.blocks.channel import (ChannelPoolSE, DirectionalSE, ECABlock, MultiInputSE, SEBasicBlock, SEBlock,
                                       SEBottleneck, eca_kernel_size, squeeze)
from attncourse.cost import count_params
from attncourse.models import AttnResNet, BasicBlock

CHANNEL_BLOCKS = ["se", "se_max", "se_std", "se_avgmax", "se_h", "se_w", "se_spatial", "se_conv1d", "eca",
                  "se_multiscale", "se_fusion"]
RESCALING_BLOCKS = [n for n in CHANNEL_BLOCKS if n != "se_fusion"]  # y = x · s with s the attention map


def test_every_design_space_variant_is_registered_in_the_channel_family():
    assert set(CHANNEL_BLOCKS) <= set(list_blocks("channel"))
    for name in CHANNEL_BLOCKS:
        spec = get_block_spec(name)
        assert spec.placement == "residual"
        assert "1709.01507" in spec.paper or "1910.03151" in spec.paper
    assert "1910.03151" in get_block_spec("eca").paper


def test_module_docstring_names_the_paper():
    import attncourse.blocks.channel as channel

    assert "Squeeze-and-Excitation Networks" in channel.__doc__ and "1709.01507" in channel.__doc__


# --------------------------------------------------------------------------- equivalence with references
@pytest.mark.parametrize("channels,reduced", [(16, 4), (64, 4), (24, 3), (8, 8)])
def test_seblock_equals_torchvision_squeeze_excitation(channels, reduced):
    from torchvision.ops import SqueezeExcitation

    ref = SqueezeExcitation(channels, reduced).eval()
    se = SEBlock(channels, reduced_channels=reduced).eval()
    se.load_state_dict(ref.state_dict())  # same names: fc1.{weight,bias}, fc2.{weight,bias}
    x = torch.randn(3, channels, 7, 5)
    assert_close(se(x), ref(x))


@pytest.mark.parametrize("channels,reduction", [(16, 4), (64, 16), (48, 16), (20, 4)])
def test_seblock_equals_timm_semodule(channels, reduction):
    from timm.layers import SEModule

    rd = channels // reduction  # timm would round to a multiple of 8 (rd_divisor) unless rd_channels is given
    ref = SEModule(channels, rd_channels=rd).eval()
    se = SEBlock(channels, reduction=reduction).eval()
    assert se.reduced_channels == rd
    se.load_state_dict(ref.state_dict())
    x = torch.randn(2, channels, 6, 9)
    assert_close(se(x), ref(x))


def test_timm_rounds_the_reduced_width_unless_told():
    from timm.layers import SEModule

    assert SEModule(48, rd_ratio=1 / 16).fc1.out_channels == 8  # 48/16 = 3, rounded up to the divisor 8
    assert SEBlock(48, reduction=16).fc1.out_channels == 3


@pytest.mark.parametrize("channels", [8, 16, 64, 128, 256])
def test_eca_equals_timm_ecamodule(channels):
    from timm.layers import EcaModule

    ref = EcaModule(channels).eval()
    eca = ECABlock(channels).eval()
    assert eca.kernel_size == ref.conv.kernel_size[0]
    eca.conv.convs[0].weight.data.copy_(ref.conv.weight.data)
    x = torch.randn(2, channels, 5, 4)
    assert_close(eca(x), ref(x))
    assert count_params(eca) == eca.kernel_size  # bias-free, no bottleneck


def test_channel_pool_se_matches_cbam_spatial_gate_of_timm():
    from timm.layers.cbam import SpatialAttn

    ref = SpatialAttn(kernel_size=7).eval()  # [mean, max] -> 7x7 conv -> sigmoid
    blk = ChannelPoolSE(16, kernel_size=7, squeeze="avgmax").eval()
    with torch.no_grad():
        blk.conv.weight.copy_(ref.conv.conv.weight)
        blk.conv.bias.zero_()
    if getattr(ref.conv.conv, "bias", None) is not None:
        blk.conv.bias.data.copy_(ref.conv.conv.bias.data)
    x = torch.randn(2, 16, 9, 11)
    assert_close(blk(x), ref(x))


# --------------------------------------------------------------------------- the SE arithmetic itself
def test_seblock_from_plain_tensor_ops():
    se = SEBlock(12, reduction=3).eval()
    x = torch.randn(2, 12, 5, 7)
    z = x.mean((2, 3))  # squeeze
    h = torch.relu(z @ se.fc1.weight.flatten(1).T + se.fc1.bias)
    s = torch.sigmoid(h @ se.fc2.weight.flatten(1).T + se.fc2.bias)  # excitation
    assert_close(se(x), x * s[:, :, None, None])
    assert_close(se.attention_maps(x)["channel"], s[:, :, None, None])


def test_param_count_is_2C2_over_r_plus_biases():
    for c, r in [(16, 4), (64, 16), (256, 16)]:
        d = c // r
        assert count_params(SEBlock(c, reduction=r)) == 2 * c * d + d + c == 2 * c * c // r + c // r + c


@pytest.mark.parametrize("op,fn", [
    ("avg", lambda x: x.mean((2, 3))),
    ("max", lambda x: x.amax((2, 3))),
    ("std", lambda x: (x.var((2, 3), unbiased=False) + 1e-5).sqrt()),
])
def test_squeeze_operators(op, fn):
    x = torch.randn(2, 6, 4, 5)
    (z,) = squeeze(x, op)
    assert z.shape == (2, 6, 1, 1)
    assert_close(z.flatten(1), fn(x))


def test_avgmax_sums_the_excitation_logits_of_both_descriptors():
    se = SEBlock(8, reduction=2, squeeze="avgmax").eval()
    x = torch.randn(2, 8, 3, 3)
    e = se.excite
    assert_close(se.weights(x), torch.sigmoid(e(x.mean((2, 3), keepdim=True)) + e(x.amax((2, 3), keepdim=True))))


def test_directional_se_weights_per_row_and_per_column():
    x = torch.randn(2, 8, 5, 7)
    h, w = DirectionalSE(8, 2, keep="h").eval(), DirectionalSE(8, 2, keep="w").eval()
    sh, sw = h.weights(x), w.weights(x)
    assert sh.shape == (2, 8, 5, 1) and sw.shape == (2, 8, 1, 7)
    # row i's weights depend only on row i: changing row 0 leaves the other rows' weights alone
    x2 = x.clone()
    x2[:, :, 0] += 3
    assert_close(h.weights(x2)[:, :, 1:], sh[:, :, 1:])
    assert not torch.allclose(h.weights(x2)[:, :, :1], sh[:, :, :1])
    # a row equals SE on that row alone
    se = SEBlock(8, 2).eval()
    se.load_state_dict({k: v for k, v in h.state_dict().items()})
    assert_close(sh[:, :, 2:3], se.weights(x[:, :, 2:3]))


def test_channel_pool_se_is_one_weight_per_pixel_shared_by_channels():
    blk = ChannelPoolSE(8, kernel_size=3, squeeze="avg").eval()
    x = torch.randn(2, 8, 5, 6)
    s = blk.weights(x)
    assert s.shape == (2, 1, 5, 6)
    assert_close(blk(x), x * s)
    assert count_params(blk) == 3 * 3 + 1


def test_conv1d_excitation_is_local_across_channels():
    se = SEBlock(16, excitation="conv1d", kernel_size=3).eval()
    z = torch.zeros(1, 16, 1, 1)
    z[0, 8] = 1.0
    logits = se.excite(z).flatten()
    assert torch.count_nonzero(logits) <= 3 and set(torch.nonzero(logits).flatten().tolist()) <= {7, 8, 9}


def test_multiscale_excitation_sums_its_convs():
    se = SEBlock(16, excitation="multiscale", kernel_sizes=(1, 3, 5)).eval()
    assert count_params(se) == 1 + 3 + 5
    z = torch.randn(2, 16, 1, 1)
    parts = [SEBlock(16, excitation="conv1d", kernel_size=k).eval() for k in (1, 3, 5)]
    for p, conv in zip(parts, se.conv.convs):
        p.conv.convs[0].weight.data.copy_(conv.weight.data)
    assert_close(se.excite(z), sum(p.excite(z) for p in parts))


# --------------------------------------------------------------------------- ECA kernel size
def _nearest_odd(t: float) -> int:
    """|t|_odd of the ECA paper (Eq. 12): the nearest odd number; exact ties (t even) go up, as the authors' code."""
    lo = 2 * math.floor((t - 1) / 2) + 1  # largest odd <= t
    return lo if t - lo < lo + 2 - t else lo + 2


@pytest.mark.parametrize("channels,k", [(16, 3), (32, 3), (64, 3), (128, 5), (256, 5), (512, 5), (1024, 5), (2048, 7)])
def test_eca_kernel_size_table(channels, k):
    assert eca_kernel_size(channels) == k
    assert ECABlock(channels).kernel_size == k


def test_eca_kernel_size_is_the_nearest_odd_of_the_paper_formula():
    for c in range(2, 5000):
        t = math.log2(c) / 2 + 1 / 2
        assert eca_kernel_size(c) == _nearest_odd(t), c


def test_eca_ignores_reduction_so_backbones_can_pass_it():
    net = AttnResNet(1, 10, attention="eca", attention_kwargs={"reduction": 4})
    assert all(m.kernel_size == 3 for m in net.modules() if isinstance(m, ECABlock))


# --------------------------------------------------------------------------- gradients and shapes
def _make(name, channels):
    return create_block(name, channels, reduction=2).double()


@pytest.mark.parametrize("name", CHANNEL_BLOCKS)
def test_gradcheck_float64(name):
    blk = _make(name, 8)
    x = torch.randn(2, 8, 3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(blk, (x,), eps=1e-6, atol=1e-5)


def test_gradcheck_multi_input_se_and_se_resnet_blocks():
    m = MultiInputSE(6, num_inputs=3).double()
    xs = tuple(torch.randn(2, 6, 3, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))
    assert torch.autograd.gradcheck(lambda a, b, c: m([a, b, c]), xs, eps=1e-6, atol=1e-5)
    for blk in (SEBasicBlock(4, 8, stride=2, reduction=2), SEBottleneck(8, 2, reduction=4)):
        blk = blk.double().eval()
        x = torch.randn(2, blk.cin, 5, 5, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(blk, (x,), eps=1e-6, atol=1e-5)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(RESCALING_BLOCKS), n=st.integers(1, 3), c=st.sampled_from([4, 6, 8, 16]),
       h=st.sampled_from([1, 3, 5, 7]), w=st.sampled_from([1, 2, 5, 9]))
def test_shapes_and_ranges_over_batch_channels_and_odd_sizes(name, n, c, h, w):
    blk = create_block(name, c, reduction=2).eval()
    x = torch.randn(n, c, h, w)
    with torch.no_grad():
        y = blk(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    (s,) = blk.attention_maps(x).values()
    assert ((s > 0) & (s < 1)).all()
    assert_close(y, x * s)  # the block is exactly a rescale by its attention map
    # each sample is rescaled by weights computed from itself alone (no mixing across the batch)
    assert_close(blk(x[-1:]), y[-1:])


@settings(max_examples=10, deadline=None)
@given(n=st.integers(1, 3), h=st.sampled_from([1, 3, 6]), w=st.sampled_from([1, 4, 7]))
def test_se_fusion_shapes_and_view_weights(n, h, w):
    blk = create_block("se_fusion", 8).eval()
    x = torch.randn(n, 8, h, w)
    views = blk._views(x)
    s = blk.attention_maps(x)["view_weights"]
    assert s.shape == (n, 3, 8) and ((s > 0) & (s < 1)).all()
    assert_close(blk(x), sum(s[:, i, :, None, None] * v for i, v in enumerate(views)))
    assert_close(views[0], x)  # the first view is the input itself


def test_the_excitation_differs_per_input():
    se = SEBlock(16, reduction=4).eval()
    s = se.attention_maps(torch.randn(4, 16, 5, 5))["channel"].flatten(1)
    assert (s.std(0) > 0).any()


# --------------------------------------------------------------------------- multi-input SE
@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_multi_input_se_shapes(k):
    m = MultiInputSE(8, num_inputs=k).eval()
    xs = [torch.randn(2, 8, 5, 3) for _ in range(k)]
    assert m(xs).shape == (2, 8, 5, 3)
    assert m(tuple(xs)).shape == (2, 8, 5, 3)
    w = m.attention_maps(xs)["input_weights"]
    assert w.shape == (2, k, 8) and ((w > 0) & (w < 1)).all()
    assert m.fc1.out_channels == 4 and m.fc2.out_channels == k * 8  # C -> C/2 -> k·C


def test_multi_input_se_weights_each_input_separately():
    m = MultiInputSE(8, num_inputs=3).eval()
    xs = [torch.randn(2, 8, 4, 4) for _ in range(3)]
    s = m.weights(xs)  # [N, k, C, 1, 1]
    assert_close(m(xs), s[:, 0] * xs[0] + s[:, 1] * xs[1] + s[:, 2] * xs[2])
    # the squeeze sees the sum of the inputs: fc2 output row block i drives input i's weights
    z = sum(xs).mean((2, 3), keepdim=True)
    logits = m.fc2(torch.relu(m.fc1(z))).reshape(2, 3, 8, 1, 1)
    assert_close(s, torch.sigmoid(logits))
    assert not torch.allclose(s[:, 0], s[:, 1])  # per-input, not one shared weight
    # zeroing the block of fc2 that belongs to input 1 sets only input 1's weights to 0.5
    with torch.no_grad():
        m.fc2.weight[8:16].zero_()
        m.fc2.bias[8:16].zero_()
    s2 = m.weights(xs)
    assert_close(s2[:, 1], torch.full_like(s2[:, 1], 0.5))
    assert_close(s2[:, 0], s[:, 0])


def test_multi_input_se_errors():
    m = MultiInputSE(8, num_inputs=2)
    with pytest.raises(ValueError, match=r"MultiInputSE: expected 2 inputs, got 3"):
        m([torch.randn(1, 8, 3, 3)] * 3)
    with pytest.raises(ValueError, match=r"MultiInputSE: expected a list or tuple"):
        m(torch.randn(1, 8, 3, 3))
    with pytest.raises(ValueError, match=r"MultiInputSE \(input 1\): expected 8 channels.*\(1, 4, 3, 3\)"):
        m([torch.randn(1, 8, 3, 3), torch.randn(1, 4, 3, 3)])
    with pytest.raises(ValueError, match=r"same shape.*\(1, 8, 3, 3\).*\(1, 8, 5, 3\)"):
        m([torch.randn(1, 8, 3, 3), torch.randn(1, 8, 5, 3)])
    with pytest.raises(ValueError, match="num_inputs"):
        MultiInputSE(8, num_inputs=0)
    from attncourse.blocks import BLOCKS

    assert all(spec.factory is not MultiInputSE for spec in BLOCKS.values())  # not a single-input block


# --------------------------------------------------------------------------- SE-ResNet blocks
def _zero_excitation(se: SEBlock):
    with torch.no_grad():
        se.fc2.weight.zero_()
        se.fc2.bias.zero_()


@pytest.mark.parametrize("make", [lambda: SEBasicBlock(8, 8, reduction=2), lambda: SEBasicBlock(4, 8, 2, reduction=2),
                                  lambda: SEBottleneck(16, 4, reduction=4), lambda: SEBottleneck(8, 4, 2, reduction=4)])
def test_se_sits_on_the_residual_branch_before_the_add(make):
    blk = make().eval()
    x = torch.randn(2, blk.cin, 6, 6)
    with torch.no_grad():
        branch, short = blk.residual(x), blk.shortcut(x)
        # SE weights come from the residual branch and rescale only it
        assert_close(blk(x), torch.relu(short + branch * blk.se.weights(branch)))
        _zero_excitation(blk.se)  # sigmoid(0) = 0.5: the residual branch is halved, the shortcut untouched
        out = blk(x)
    assert_close(out, torch.relu(short + 0.5 * branch))
    assert not torch.allclose(out, torch.relu(0.5 * (short + branch)))  # SE after the add would halve both


def test_se_bottleneck_widths():
    blk = SEBottleneck(64, 16)
    assert blk.cout == 64 and blk.se.channels == 64 and blk.se.reduced_channels == 4
    assert blk(torch.randn(1, 64, 5, 5)).shape == (1, 64, 5, 5)
    assert SEBottleneck(32, 16, stride=2)(torch.randn(1, 32, 7, 7)).shape == (1, 64, 4, 4)


def test_se_basic_block_is_the_backbone_basic_block_with_se():
    ours = SEBasicBlock(8, 16, stride=2, reduction=4).eval()
    theirs = BasicBlock(8, 16, stride=2, attention=SEBlock(16, reduction=4)).eval()
    theirs.load_state_dict({k.replace("se.", "attention.", 1) if k.startswith("se.") else k: v
                            for k, v in ours.state_dict().items()})
    x = torch.randn(2, 8, 9, 7)
    assert_close(ours(x), theirs(x))


def test_backbone_with_se_has_one_se_per_basic_block():
    net = AttnResNet(1, 10, depths=(1, 2, 1), attention="se", attention_kwargs={"reduction": 4})
    ses = [m for m in net.modules() if isinstance(m, SEBlock)]
    assert [s.channels for s in ses] == [16, 32, 32, 64] and [s.reduced_channels for s in ses] == [4, 8, 8, 16]


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("name", CHANNEL_BLOCKS)
def test_wrong_channels_and_3d_input_raise_naming_block_and_shape(name):
    blk = create_block(name, 8, reduction=2)
    cls = type(blk).__name__
    with pytest.raises(ValueError, match=rf"{cls}: expected 8 channels.*\(2, 4, 5, 5\)"):
        blk(torch.randn(2, 4, 5, 5))
    with pytest.raises(ValueError, match=rf"{cls}: expected a 4-D input.*\(8, 5, 5\)"):
        blk(torch.randn(8, 5, 5))


@pytest.mark.parametrize("cls", [SEBlock, DirectionalSE, MultiInputSE])
def test_reduction_larger_than_channels_raises(cls):
    with pytest.raises(ValueError, match=rf"{cls.__name__}: reduction=16 is larger than channels=8"):
        cls(8, reduction=16)


def test_bad_options_raise():
    with pytest.raises(ValueError, match=r"SEBlock: squeeze must be one of"):
        SEBlock(8, 2, squeeze="median")
    with pytest.raises(ValueError, match=r"SEBlock: excitation must be one of"):
        SEBlock(8, 2, excitation="attention")
    with pytest.raises(ValueError, match=r"SEBlock: gate must be one of"):
        SEBlock(8, 2, gate="softmax")
    with pytest.raises(ValueError, match="odd"):
        SEBlock(8, excitation="conv1d", kernel_size=4)
    with pytest.raises(ValueError, match=r"SEBasicBlock: expected 8 channels"):
        SEBasicBlock(8, 8, reduction=2)(torch.randn(1, 4, 5, 5))
    with pytest.raises(ValueError, match=r"SEBottleneck: expected a 4-D input"):
        SEBottleneck(16, 4, reduction=2)(torch.randn(16, 5, 5))
