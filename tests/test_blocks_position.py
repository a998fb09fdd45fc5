"""Coordinate Attention and Shuffle Attention (module 09) against timm and an independent reference.

* ``CoordAtt`` equals ``timm.layers.coord_attn.CoordAttn(C, rd_channels=mip, bias=True)`` with the same state
  dict, in eval and in train mode (outputs and BN running statistics);
* ``ShuffleAttention`` equals a hand-written functional reference of the official ``sa_layer`` (facts: G contiguous
  groups, halves, shared ``[1, C/2G, 1, 1]`` weights, GroupNorm(C/2G, C/2G), shuffle with 2 groups);
* the official GroupNorm is an instance norm; the channel shuffle identity; a fresh SA block outputs
  ``shuffle(x · σ(1))``; float64 gradcheck; hypothesis properties (directional equivariance of CoordAtt,
  spatial-permutation equivariance of SA);
* the blocks come out of ``AttnResNet`` exactly as ``reset_parameters`` makes them, tensor by tensor.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from torch import nn
from torch.testing import assert_close

from attncourse.blocks import create_block, get_block_spec
from attncourse.blocks.position import CoordAtt, ShuffleAttention, channel_shuffle, coordatt_width, shuffle_groups
from attncourse.models import AttnResNet

from block_helpers import randomize, seeded_input

timm_coord = pytest.importorskip("timm.layers.coord_attn")


_randomize, _x = randomize, seeded_input


# --------------------------------------------------------------------------- Coordinate Attention
@pytest.mark.parametrize("channels,expected", [(16, 8), (64, 8), (256, 8), (320, 10), (512, 16)])
def test_coordatt_width_is_max_of_8_and_c_over_32(channels, expected):
    assert coordatt_width(channels) == expected == CoordAtt(channels).reduced_channels
    assert CoordAtt(channels, reduced_channels=5).reduced_channels == 5


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("channels,shape", [(16, (3, 7, 5)), (32, (2, 4, 9)), (24, (1, 6, 6))])
def test_coordatt_equals_timm_coordattn_with_the_official_width_and_bias(train, channels, shape):
    ours = _randomize(CoordAtt(channels), seed=channels).train(train)
    mip = coordatt_width(channels)
    theirs = timm_coord.CoordAttn(channels, rd_channels=mip, bias=True).train(train)
    theirs.load_state_dict(ours.state_dict())  # the same parameter names: the weight mapping is the identity
    n, h, w = shape
    if train and n == 1:
        n = 2
    x = _x(n, channels, h, w, seed=3)
    assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-6)
    for (key, a), b in zip(ours.state_dict().items(), theirs.state_dict().values()):
        assert_close(a, b, msg=lambda m: f"{key}: {m}")  # the running statistics moved the same way in train mode


def test_coordatt_is_not_timms_default_block():
    """timm's defaults differ (no bias, a width from rd_ratio): the equivalence needs the official settings."""
    default = timm_coord.CoordAttn(64)
    assert default.conv1.bias is None
    assert CoordAtt(64).conv1.bias is not None


def _coordatt_reference(block: CoordAtt, x: torch.Tensor) -> torch.Tensor:
    """The official forward written out loop-free from the facts, with BN in eval mode."""
    n, c, h, w = x.shape
    desc = torch.cat([x.mean(3), x.mean(2)], dim=2)  # [N, C, H + W]
    z = torch.einsum("mc,ncl->nml", block.conv1.weight[:, :, 0, 0], desc) + block.conv1.bias[None, :, None]
    bn = block.bn1
    z = (z - bn.running_mean[None, :, None]) / torch.sqrt(bn.running_var[None, :, None] + bn.eps)
    z = z * bn.weight[None, :, None] + bn.bias[None, :, None]
    z = z * torch.clamp(z + 3, 0, 6) / 6  # h-swish
    zh, zw = z[..., :h], z[..., h:]
    a_h = torch.sigmoid(torch.einsum("cm,nml->ncl", block.conv_h.weight[:, :, 0, 0], zh) + block.conv_h.bias[None, :, None])
    a_w = torch.sigmoid(torch.einsum("cm,nml->ncl", block.conv_w.weight[:, :, 0, 0], zw) + block.conv_w.bias[None, :, None])
    return x * a_h[..., :, None] * a_w[..., None, :]


def test_coordatt_equals_the_written_out_reference():
    block = _randomize(CoordAtt(16)).eval()
    x = _x(2, 16, 5, 7)
    assert_close(block(x), _coordatt_reference(block, x), rtol=1e-5, atol=1e-6)


def test_coordatt_normalises_the_h_and_w_descriptors_together_in_training():
    """BN runs on the concatenation [H + W]: its batch statistics mix both directions (as in the official code)."""
    block = _randomize(CoordAtt(16)).train()
    x = _x(4, 16, 3, 8)
    block(x)
    desc = torch.cat([x.mean(3, keepdim=True), x.mean(2, keepdim=True).transpose(2, 3)], dim=2)
    pre = block.conv1(desc)
    fresh = _randomize(CoordAtt(16))
    momentum = fresh.bn1.momentum
    expected = (1 - momentum) * fresh.bn1.running_mean + momentum * pre.mean(dim=(0, 2, 3))
    assert_close(block.bn1.running_mean, expected.detach())


def test_coordatt_reset_parameters_is_the_official_mobilenetv2_init():
    torch.manual_seed(0)
    block = CoordAtt(256)
    for conv in (block.conv1, block.conv_h, block.conv_w):
        assert torch.equal(conv.bias, torch.zeros_like(conv.bias))
        fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
        assert abs(conv.weight.std().item() - math.sqrt(2 / fan_out)) < 0.2 * math.sqrt(2 / fan_out)
    assert torch.equal(block.bn1.weight, torch.ones(8)) and torch.equal(block.bn1.bias, torch.zeros(8))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3), h=st.integers(1, 6), w=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_coordatt_is_equivariant_to_row_and_column_permutations(n, h, w, seed):
    """A gate per row and a gate per column: permuting rows (or columns) of x permutes those of the output."""
    block = _randomize(CoordAtt(8), seed=1).eval()
    x = _x(n, 8, h, w, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    rows, cols = torch.randperm(h, generator=gen), torch.randperm(w, generator=gen)
    assert_close(block(x[:, :, rows][..., cols]), block(x)[:, :, rows][..., cols], rtol=1e-5, atol=1e-6)


@settings(max_examples=20, deadline=None)
@given(h=st.integers(2, 6), w=st.integers(2, 6), seed=st.integers(0, 10_000))
def test_coordatt_on_a_transposed_map_is_the_transposed_output_with_the_two_gates_swapped(h, w, seed):
    block = _randomize(CoordAtt(8), seed=2).eval()
    swapped = CoordAtt(8).eval()
    state = block.state_dict()
    state = {k.replace("conv_h", "@").replace("conv_w", "conv_h").replace("@", "conv_w"): v for k, v in state.items()}
    swapped.load_state_dict(state)
    x = _x(2, 8, h, w, seed=seed)
    assert_close(swapped(x.transpose(2, 3)), block(x).transpose(2, 3), rtol=1e-5, atol=1e-6)


@settings(max_examples=20, deadline=None)
@given(h=st.integers(1, 6), w=st.integers(2, 6), seed=st.integers(0, 10_000))
def test_coordatt_keeps_a_map_constant_along_w_constant_and_its_w_gate_flat(h, w, seed):
    """A map that does not vary along W gives every column the same descriptor, so ``a_w`` cannot vary along W:
    the output depends on the row alone, like the input."""
    block = _randomize(CoordAtt(8), seed=3).eval()
    x = _x(2, 8, h, 1, seed=seed).expand(2, 8, h, w).contiguous()
    y = block(x)
    assert_close(y, y[..., :1].expand_as(y))
    a_w = block.attention_maps(x)["width"]
    assert_close(a_w, a_w[..., :1].expand_as(a_w))


def test_coordatt_gradcheck_float64():
    block = _randomize(CoordAtt(8)).double().eval()
    x = _x(2, 8, 3, 4, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(block, (x,), eps=1e-6, atol=1e-5, rtol=1e-3)


# --------------------------------------------------------------------------- channel shuffle
@pytest.mark.parametrize("channels", [2, 6, 16])
def test_channel_shuffle_with_two_groups_interleaves_the_halves(channels):
    x = _x(2, channels, 3, 4)
    y = channel_shuffle(x, 2)
    half = channels // 2
    for k in range(half):
        assert torch.equal(y[:, 2 * k], x[:, k])
        assert torch.equal(y[:, 2 * k + 1], x[:, half + k])
    assert torch.equal(channel_shuffle(y, half), x)  # shuffling with C/2 groups undoes it


def test_channel_shuffle_errors():
    with pytest.raises(ValueError, match=r"channel_shuffle: 5 channels.*2 groups.*\(1, 5, 2, 2\)"):
        channel_shuffle(torch.zeros(1, 5, 2, 2), 2)
    with pytest.raises(ValueError, match=r"channel_shuffle: expected a 4-D"):
        channel_shuffle(torch.zeros(5, 2, 2), 2)


# --------------------------------------------------------------------------- Shuffle Attention
def _sa_reference(x, groups, cweight, cbias, sweight, sbias, gn_weight, gn_bias, eps=1e-5):
    """Official ``sa_layer`` from the facts, written with explicit loops over groups and channels."""
    n, c, h, w = x.shape
    per_group, half = c // groups, c // (2 * groups)
    pieces = []
    for g in range(groups):
        xg = x[:, g * per_group:(g + 1) * per_group]
        x0, x1 = xg[:, :half], xg[:, half:]
        gated0 = x0 * torch.sigmoid(cweight.view(1, half, 1, 1) * x0.mean(dim=(2, 3), keepdim=True) + cbias.view(1, half, 1, 1))
        normed = torch.empty_like(x1)
        for j in range(half):  # GroupNorm(C/2G, C/2G): each channel over its own H×W
            v = x1[:, j]
            mean = v.mean(dim=(1, 2), keepdim=True)
            var = ((v - mean) ** 2).mean(dim=(1, 2), keepdim=True)
            normed[:, j] = (v - mean) / torch.sqrt(var + eps) * gn_weight[j] + gn_bias[j]
        gated1 = x1 * torch.sigmoid(sweight.view(1, half, 1, 1) * normed + sbias.view(1, half, 1, 1))
        pieces.append(torch.cat([gated0, gated1], dim=1))
    out = torch.cat(pieces, dim=1)
    shuffled = torch.empty_like(out)  # out[2k] = in[k], out[2k+1] = in[C/2 + k]
    for k in range(c // 2):
        shuffled[:, 2 * k], shuffled[:, 2 * k + 1] = out[:, k], out[:, c // 2 + k]
    return shuffled


@pytest.mark.parametrize("channels,groups,shape", [(16, 8, (2, 5, 3)), (16, 4, (3, 4, 4)), (24, 2, (1, 3, 7)),
                                                   (32, None, (2, 1, 6)), (64, 16, (2, 6, 5))])
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_shuffle_attention_equals_the_reference_of_the_official_code(channels, groups, shape, train):
    block = _randomize(ShuffleAttention(channels, groups)).train(train)  # no running statistics: train = eval
    n, h, w = shape
    x = _x(n, channels, h, w, seed=channels)
    expected = _sa_reference(x, block.groups, block.cweight, block.cbias, block.sweight, block.sbias,
                             block.gn.weight, block.gn.bias)
    assert_close(block(x), expected, rtol=1e-5, atol=1e-5)


def test_the_official_groupnorm_is_an_instance_norm():
    block = _randomize(ShuffleAttention(32, groups=4))
    assert block.gn.num_groups == block.gn.num_channels == 4
    x1 = _x(6, 4, 5, 3)
    expected = F.instance_norm(x1, weight=block.gn.weight, bias=block.gn.bias, eps=block.gn.eps)
    assert_close(block.gn(x1), expected, rtol=1e-5, atol=1e-6)


def test_a_fresh_shuffle_attention_outputs_the_shuffled_input_times_sigmoid_one():
    block = ShuffleAttention(16, groups=8)
    for name in ("cweight", "sweight"):
        assert torch.equal(getattr(block, name), torch.zeros(1, 1, 1, 1))
    for name in ("cbias", "sbias"):
        assert torch.equal(getattr(block, name), torch.ones(1, 1, 1, 1))
    x = _x(2, 16, 5, 3)
    assert_close(block(x), channel_shuffle(x * torch.sigmoid(torch.tensor(1.0)), 2))


@settings(max_examples=20, deadline=None)
@given(c=st.sampled_from([4, 8, 16]), h=st.integers(1, 5), w=st.integers(1, 5), seed=st.integers(0, 10_000))
def test_a_fresh_block_is_shuffle_times_sigmoid_one_for_any_input(c, h, w, seed):
    x = _x(2, c, h, w, seed=seed) * 3
    assert_close(ShuffleAttention(c, None)(x), channel_shuffle(x, 2) * torch.sigmoid(torch.tensor(1.0)))


@settings(max_examples=20, deadline=None)
@given(h=st.integers(1, 5), w=st.integers(1, 5), seed=st.integers(0, 10_000))
def test_shuffle_attention_is_equivariant_to_any_permutation_of_the_pixels(h, w, seed):
    """GAP and the instance norm ignore where a pixel is: SA has no notion of position at all."""
    block = _randomize(ShuffleAttention(16, 4), seed=4)
    x = _x(2, 16, h, w, seed=seed)
    perm = torch.randperm(h * w, generator=torch.Generator().manual_seed(seed))

    def scramble(t):
        return t.flatten(2)[..., perm].reshape(t.shape)

    assert_close(block(scramble(x)), scramble(block(x)), rtol=1e-5, atol=1e-6)


def test_shuffle_attention_has_three_c_over_g_parameters():
    for c, g in [(16, 8), (64, 4), (256, 64)]:
        assert sum(p.numel() for p in ShuffleAttention(c, g).parameters()) == 3 * c // g


def test_shuffle_groups_default_and_errors():
    assert [shuffle_groups(c) for c in (2, 16, 32, 64, 256, 2048)] == [1, 8, 16, 32, 64, 64]
    assert create_block("sa", 16).groups == 8 and get_block_spec("sa").defaults == {"groups": None}
    with pytest.raises(ValueError, match=r"ShuffleAttention: channels=16 must be divisible by 2·groups = 128"):
        ShuffleAttention(16)  # the paper's G = 64 needs at least 128 channels
    with pytest.raises(ValueError, match=r"ShuffleAttention: channels must be even"):
        ShuffleAttention(15, None)
    with pytest.raises(ValueError, match=r"ShuffleAttention: groups must be a positive int"):
        ShuffleAttention(16, 0)


def test_shuffle_attention_gradcheck_float64_reaches_every_parameter():
    block = _randomize(ShuffleAttention(8, 2)).double()
    x = _x(2, 8, 3, 4, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(block, (x,), eps=1e-6, atol=1e-5, rtol=1e-3)
    block(x).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in block.parameters())


# --------------------------------------------------------------------------- inside the backbone
@pytest.mark.parametrize("name,cls", [("coordatt", CoordAtt), ("sa", ShuffleAttention)])
def test_the_blocks_come_out_of_attnresnet_as_reset_parameters_makes_them(name, cls):
    """``init_backbone`` Kaiming-initialises every conv, then calls ``reset_parameters`` on each block: every
    tensor of ours must be re-made there. Deterministic tensors equal a standalone block's; the random ones
    (CoordAtt's conv weights) come from the same seeded draw as a standalone block's ``reset_parameters``."""
    net = AttnResNet(attention=name)
    blocks = [m for m in net.modules() if isinstance(m, cls)]
    assert len(blocks) == 3
    for inside in blocks:
        alone = cls(inside.channels, **({"groups": None} if cls is ShuffleAttention else {}))
        random_keys = {k for k in alone.state_dict() if k.endswith("weight") and k.startswith("conv")}
        for key, value in inside.state_dict().items():
            if key not in random_keys:
                assert torch.equal(value, alone.state_dict()[key]), key
        with torch.no_grad():  # reset_parameters overwrites every tensor (nothing of the backbone's init survives)
            for p in inside.parameters():
                p.fill_(float("nan"))
        torch.manual_seed(7)
        inside.reset_parameters()
        torch.manual_seed(7)
        alone.reset_parameters()
        for (key, a), b in zip(inside.state_dict().items(), alone.state_dict().values()):
            assert torch.equal(a, b), key
