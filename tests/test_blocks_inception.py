"""InceptionBlock: equivalence with torchvision's GoogLeNet module, shapes, gradients, FLOPs, errors, SE-Inception."""
import importlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.testing import assert_close

import attncourse as ac
from attncourse.blocks import BLOCKS
from attncourse.blocks.inception import InceptionBlock, NaiveInceptionBlock
from attncourse.models import ONE_SPATIAL_WIDTHS, InceptionNet, PlainNet

tv_googlenet = importlib.import_module("torchvision.models.googlenet")  # the module, not the builder function

GOOGLENET_3A = (192, 64, 96, 128, 16, 32, 32)  # inception (3a) of GoogLeNet, as in the paper's Table 1


def _randomize_bn(module: nn.Module, gen: torch.Generator) -> None:
    """Non-trivial BN statistics and affine parameters, so a wrong copy cannot pass by accident."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=gen) * 0.2)
            m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=gen) * 0.2)


@pytest.mark.parametrize("config, hw", [(GOOGLENET_3A, (9, 7)), ((5, 3, 4, 6, 2, 3, 2), (11, 6))])
def test_equals_torchvision_googlenet_inception_with_its_3x3_quirk(config, hw):
    gen = torch.Generator().manual_seed(1)
    ref = tv_googlenet.Inception(*config).eval()
    _randomize_bn(ref, gen)
    ours = InceptionBlock(*config, kernel5=3).eval()
    for name in ("branch1", "branch2", "branch3", "branch4"):  # branch by branch
        getattr(ours, name).load_state_dict(getattr(ref, name).state_dict())
    x = torch.randn(2, config[0], *hw, generator=gen)
    with torch.no_grad():
        expected = ref(x)
        assert_close(ours(x), expected)
        assert_close(torch.cat(ours.branches(x), 1), expected)
    assert ours.out_channels == expected.shape[1] == sum(config[i] for i in (1, 3, 5, 6))


def test_torchvision_5x5_branch_is_really_3x3_and_ours_is_5x5():
    ref = tv_googlenet.Inception(*GOOGLENET_3A)
    assert ref.branch3[1].conv.kernel_size == (3, 3)  # the quirk
    ours = InceptionBlock(*GOOGLENET_3A)
    assert ours.branch3[1].conv.kernel_size == (5, 5)
    with pytest.raises(RuntimeError, match="size mismatch"):
        ours.branch3.load_state_dict(ref.branch3.state_dict())


def test_basic_conv_matches_torchvision_style():
    block = InceptionBlock(*GOOGLENET_3A)
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in block.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) == len(bns) == 6
    assert all(c.bias is None for c in convs) and all(b.eps == 1e-3 for b in bns)
    plain = InceptionBlock(*GOOGLENET_3A, use_bn=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    assert all(m.bias is not None for m in plain.modules() if isinstance(m, nn.Conv2d))


widths = st.integers(1, 5)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3), cin=st.integers(1, 6), w=st.tuples(widths, widths, widths, widths, widths, widths),
       h=st.integers(0, 6).map(lambda k: 2 * k + 1), wd=st.integers(0, 6).map(lambda k: 2 * k + 1))
def test_shapes_batch_channels_odd_non_square(n, cin, w, h, wd):
    block = InceptionBlock(cin, *w)
    x = torch.randn(n, cin, h, wd)
    expected = (n, w[0] + w[2] + w[4] + w[5], h, wd)
    assert block.eval()(x).shape == expected
    assert [b.shape[1] for b in block.branches(x)] == [w[0], w[2], w[4], w[5]]
    if n * h * wd > 1:  # BN in training mode needs more than one value per channel
        assert block.train()(x).shape == expected


def test_gradcheck_float64():
    torch.manual_seed(0)
    block = InceptionBlock(3, 2, 2, 3, 2, 2, 2).double()
    x = torch.randn(2, 3, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(block, (x,), eps=1e-6, atol=1e-5)
    block.eval()
    assert torch.autograd.gradcheck(block, (x,), eps=1e-6, atol=1e-5)


def _closed_form_flops(cin, c1, c3r, c3, c5r, c5, pp, h, w, k5=5):
    """Σ over the six convs of 2·Cin·Cout·k²·H·W, written out by hand."""
    return 2 * h * w * (cin * c1 + cin * c3r + c3r * c3 * 9 + cin * c5r + c5r * c5 * k5 * k5 + cin * pp)


@pytest.mark.parametrize("config, hw, k5", [(GOOGLENET_3A, (28, 28), 5), ((8, 4, 6, 8, 2, 4, 4), (9, 13), 5),
                                            ((8, 4, 6, 8, 2, 4, 4), (9, 13), 3)])
def test_measured_flops_equal_closed_form(config, hw, k5):
    block = InceptionBlock(*config, kernel5=k5)
    n = 2
    measured = ac.count_flops(block, torch.randn(n, config[0], *hw))
    assert measured == n * _closed_form_flops(*config, *hw, k5=k5)


def test_1x1_reductions_lower_the_flops_of_googlenet_3a():
    cin, c1, c3r, c3, c5r, c5, pp = GOOGLENET_3A
    h = w = 28
    x = torch.randn(1, cin, h, w)
    naive = NaiveInceptionBlock(cin, c1, c3, c5)
    reduced = InceptionBlock(*GOOGLENET_3A)
    naive_formula = 2 * h * w * cin * (c1 + 9 * c3 + 25 * c5)
    reduced_formula = _closed_form_flops(*GOOGLENET_3A, h, w)
    assert ac.count_flops(naive, x) == naive_formula
    assert ac.count_flops(reduced, x) == reduced_formula
    assert reduced_formula < 0.5 * naive_formula  # 0.26 GFLOPs vs 0.61 GFLOPs
    assert ac.count_params(reduced) < 0.5 * ac.count_params(naive)  # 163 k vs 387 k (conv weights)
    assert naive(x).shape[1] == naive.out_channels == c1 + c3 + c5 + cin  # the pooled input passes through


def test_bad_input_raises_value_error_naming_block_and_shapes():
    block = InceptionBlock(4, 2, 2, 3, 2, 2, 2)
    with pytest.raises(ValueError, match=r"InceptionBlock: expected 4 channels.*\(2, 5, 6, 6\)"):
        block(torch.randn(2, 5, 6, 6))
    with pytest.raises(ValueError, match=r"InceptionBlock: expected a 4-D input.*\(4, 6, 6\)"):
        block(torch.randn(4, 6, 6))
    with pytest.raises(ValueError, match="NaiveInceptionBlock: expected 4 channels"):
        NaiveInceptionBlock(4, 2, 2, 2)(torch.randn(1, 3, 5, 5))
    with pytest.raises(ValueError, match=r"InceptionNet: expected 1 channels"):
        InceptionNet(1, 10)(torch.randn(1, 3, 40, 40))
    with pytest.raises(ValueError, match=r"PlainNet: expected a 4-D input"):
        PlainNet(1, 10)(torch.randn(1, 40, 40))


@pytest.mark.parametrize("arg", ["in_channels", "ch1x1", "ch3x3_reduce", "ch3x3", "ch5x5_reduce", "ch5x5", "pool_proj"])
@pytest.mark.parametrize("bad", [0, -3])
def test_non_positive_channel_arguments_raise(arg, bad):
    kwargs = dict(zip(["in_channels", "ch1x1", "ch3x3_reduce", "ch3x3", "ch5x5_reduce", "ch5x5", "pool_proj"], GOOGLENET_3A))
    kwargs[arg] = bad
    with pytest.raises(ValueError, match=rf"InceptionBlock: {arg} must be a positive int, got {bad}"):
        InceptionBlock(**kwargs)


def test_other_bad_arguments():
    with pytest.raises(ValueError, match="kernel5 must be odd"):
        InceptionBlock(*GOOGLENET_3A, kernel5=4)
    with pytest.raises(ValueError, match="unknown attention block 'nope'"):
        InceptionBlock(*GOOGLENET_3A, attention="nope")
    with pytest.raises(ValueError, match="NaiveInceptionBlock: ch5x5 must be a positive int"):
        NaiveInceptionBlock(4, 2, 2, 0)


needs_se = pytest.mark.skipif("se" not in BLOCKS, reason="the 'se' block is not registered yet")


@needs_se
def test_se_inception_applies_se_to_the_concatenated_output():
    torch.manual_seed(0)
    block = InceptionBlock(6, 4, 3, 5, 2, 3, 4, attention="se", attention_kwargs={"reduction": 4}).eval()
    assert block.out_channels == 16
    with torch.no_grad():
        for p in block.attention.parameters():
            p.zero_()  # excitation logits 0 → every channel weight σ(0) = 0.5
    x = torch.randn(2, 6, 7, 9)
    with torch.no_grad():
        plain = torch.cat(block.branches(x), 1)
        assert_close(block(x), 0.5 * plain)
    # and in general: exactly the SE block applied to the concatenation
    block.reset_parameters()
    with torch.no_grad():
        assert_close(block(x), block.attention(torch.cat(block.branches(x), 1)))


@needs_se
def test_se_inception_gradcheck_and_net():
    block = InceptionBlock(3, 2, 2, 2, 2, 2, 2, attention="se", attention_kwargs={"reduction": 2}).double()
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(block, (x,), eps=1e-6, atol=1e-5)
    net = InceptionNet(1, 10, attention="se").eval()
    blocks = [m for m in net.modules() if isinstance(m, InceptionBlock)]
    assert len(blocks) == 3 and all(b.attention_name == "se" for b in blocks)
    assert net(torch.randn(1, 1, 40, 40)).shape == (1, 10)


def test_inception_net_and_plain_net_shapes_and_matched_cost():
    x = torch.randn(2, 1, 40, 40)
    inc, plain = InceptionNet(1, 10).eval(), PlainNet(1, 10).eval()
    assert inc(x).shape == plain(x).shape == (2, 10)
    assert inc.features(x).shape == (2, 160, 10, 10) and plain.features(x).shape == (2, 64, 10, 10)
    p_inc, p_plain = ac.count_params(inc), ac.count_params(plain)
    f_inc, f_plain = ac.count_flops(inc, x), ac.count_flops(plain, x)
    assert abs(p_plain - p_inc) / p_inc < 0.05 and abs(f_plain - f_inc) / f_inc < 0.05
    # odd, non-square inputs and other channel counts work too
    assert InceptionNet(3, 5).eval()(torch.randn(1, 3, 17, 23)).shape == (1, 5)
    assert PlainNet(3, 5).eval()(torch.randn(1, 3, 17, 23)).shape == (1, 5)


def test_plain_net_one_spatial_ablation_has_one_3x3_per_stage_at_the_same_cost():
    x = torch.randn(2, 1, 40, 40)
    plain, one = PlainNet(1, 10).eval(), PlainNet(1, 10, widths=ONE_SPATIAL_WIDTHS, kernels=(1, 3)).eval()
    kernel_sizes = [m.kernel_size for m in one.blocks.modules() if isinstance(m, nn.Conv2d)]
    assert kernel_sizes == [(1, 1), (3, 3)] * 3  # one spatial layer per stage, behind a 1×1
    assert one.features(x).shape == (2, ONE_SPATIAL_WIDTHS[-1], 10, 10) and one(x).shape == (2, 10)
    p, p1 = ac.count_params(plain), ac.count_params(one)
    f, f1 = ac.count_flops(plain, x), ac.count_flops(one, x)
    assert abs(p1 - p) / p < 0.02 and abs(f1 - f) / f < 0.02  # only depth vs width differs


@pytest.mark.parametrize("kernels", [(), (2, 3), (3, 0), (3, True), (3.0,)])
def test_plain_net_rejects_bad_kernels(kernels):
    with pytest.raises(ValueError, match=r"PlainNet: kernels"):
        PlainNet(1, 10, kernels=kernels)


def test_plain_net_rejects_bad_widths():
    with pytest.raises(ValueError, match=r"PlainNet: widths\[1\]"):
        PlainNet(1, 10, widths=(8, 0, 8))


# --------------------------------------------------------------------------- the receptive-field controls (module 01)
def test_receptive_field_by_hand():
    from attncourse.models.inception import receptive_field

    # stem 3×3 → 3; stage 1: two 3×3 → 7; pool 3×3 s2 → 9 (jump 2); stage 2 → 17; pool → 21 (jump 4); stage 3 → 37
    assert receptive_field(PlainNet(1, 10)) == 37
    assert receptive_field(InceptionNet(1, 10)) == 37  # the 5×5 path: 3 → 7 → 9 → 17 → 21 → 37
    assert receptive_field(PlainNet(1, 10, widths=ONE_SPATIAL_WIDTHS, kernels=(1, 3))) == 23  # 3 → 5 → 7 → 11 → 15 → 23
    assert receptive_field(PlainNet(1, 10, kernels=(3,), dilation=3)) == 3 + 6 + 2 + 12 + 4 + 24
    assert receptive_field(nn.Sequential(nn.Conv2d(1, 1, 3, stride=2), nn.Conv2d(1, 1, 3))) == 7
    assert receptive_field(InceptionBlock(4, 2, 2, 2, 2, 2, 2, kernel5=7)) == 7


def test_the_receptive_field_controls_are_fair():
    """one_spatial_dilated / one_spatial_5x5: one spatial conv per stage (behind a 1×1) like one_spatial, the plain
    stack's and Inception's 37 px, and the plain stack's parameters and FLOPs within 2 %."""
    from attncourse.models.inception import receptive_field
    from attncourse.experiments import get_experiment

    exp = get_experiment("inception_spatial_depth")
    task = type("T", (), {"in_channels": 1, "num_classes": 10})()
    nets = {arm: exp.arms[arm](task).eval() for arm in exp.arms}
    x = torch.randn(2, 1, 40, 40)
    rf = {arm: receptive_field(n) for arm, n in nets.items()}
    assert rf == {"plain": 37, "one_spatial": 23, "inception": 37, "one_spatial_dilated": 37, "one_spatial_5x5": 37}
    p, f = ac.count_params(nets["plain"]), ac.count_flops(nets["plain"], x)
    for arm in ("one_spatial_dilated", "one_spatial_5x5"):
        convs = [m for m in nets[arm].blocks.modules() if isinstance(m, nn.Conv2d)]
        assert [c.kernel_size[0] for c in convs] == [1, nets[arm].kernels[1]] * 3  # one spatial conv per stage
        assert abs(ac.count_params(nets[arm]) / p - 1) < 0.02 and abs(ac.count_flops(nets[arm], x) / f - 1) < 0.02
        assert nets[arm](x).shape == (2, 10)
    # the dilated control is one_spatial with only the dilation changed: the same tensors, the same cost
    dil, one = nets["one_spatial_dilated"], nets["one_spatial"]
    assert [t.shape for t in dil.state_dict().values()] == [t.shape for t in one.state_dict().values()]
    assert ac.count_flops(dil, x) == ac.count_flops(one, x)
    assert [m.dilation for m in dil.blocks.modules() if isinstance(m, nn.Conv2d)] == [(1, 1), (2, 2)] * 3
    with pytest.raises(ValueError, match="PlainNet: dilation"):
        PlainNet(1, 10, dilation=0)
