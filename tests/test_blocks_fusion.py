"""MS-CAM, AFF and iAFF (module 09) against a functional reference of the authors' code, and their identities.

* the reference computes each 1×1 conv as a matrix product and each BN by its formula (running statistics in
  eval mode, batch statistics in train mode), from the facts: local branch conv–BN–ReLU–conv–BN, global branch
  the same after GAP, summed, sigmoid; AFF ``2·x·w + 2·y·(1 − w)``; iAFF two rounds, no factor 2, the second
  with its own local and global branch;
* identities: AFF(x, x) = 2x and iAFF(x, x) = x; AFF(x, y) + AFF(y, x) = 2(x + y); with the last BN scales at 0
  AFF is the plain sum; iAFF's output lies between x and y element by element;
* iAFF's two rounds have separate parameters (a community port reuses the first global branch);
* bad input: shapes, channels, dtypes; batch 1 in training; float64 gradcheck to both inputs and every parameter.
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn
from torch.testing import assert_close

from attncourse.blocks import create_block, get_block_spec, list_blocks
from attncourse.blocks.fusion import AFF, MSCAM, iAFF

from block_helpers import randomize, seeded_input

C = 16


_randomize, _x = randomize, seeded_input


# --------------------------------------------------------------------------- the reference
def _conv1x1(conv: nn.Conv2d, z: torch.Tensor) -> torch.Tensor:
    return torch.einsum("oc,nchw->nohw", conv.weight[:, :, 0, 0], z) + conv.bias[None, :, None, None]


def _bn(bn: nn.BatchNorm2d, z: torch.Tensor, train: bool) -> torch.Tensor:
    if train:
        mean, var = z.mean(dim=(0, 2, 3)), z.var(dim=(0, 2, 3), unbiased=False)
    else:
        mean, var = bn.running_mean, bn.running_var
    shape = (1, -1, 1, 1)
    return (z - mean.view(shape)) / torch.sqrt(var.view(shape) + bn.eps) * bn.weight.view(shape) + bn.bias.view(shape)


def _branch(seq: nn.Sequential, z: torch.Tensor, train: bool) -> torch.Tensor:
    convs = [m for m in seq if isinstance(m, nn.Conv2d)]
    bns = [m for m in seq if isinstance(m, nn.BatchNorm2d)]
    hidden = torch.relu(_bn(bns[0], _conv1x1(convs[0], z), train))
    return _bn(bns[1], _conv1x1(convs[1], hidden), train)


def _ms_cam(m: MSCAM, z: torch.Tensor, train: bool, global_att: nn.Sequential | None = None) -> torch.Tensor:
    local = _branch(m.local_att, z, train)
    pooled = _branch(global_att if global_att is not None else m.global_att, z.mean(dim=(2, 3), keepdim=True), train)
    return torch.sigmoid(local + pooled)


def aff_reference(block: AFF, x, y, train=False):
    w = _ms_cam(block.attention, x + y, train)
    return 2 * x * w + 2 * y * (1 - w)


def iaff_reference(block: iAFF, x, y, train=False, reuse_first_global=False):
    """``reuse_first_global=True`` is the community port's bug: the second round uses the first global branch."""
    w1 = _ms_cam(block.first, x + y, train)
    z = x * w1 + y * (1 - w1)
    w2 = _ms_cam(block.second, z, train, global_att=block.first.global_att if reuse_first_global else None)
    return x * w2 + y * (1 - w2)


# --------------------------------------------------------------------------- equality with the reference
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("shape", [(2, 5, 3), (3, 4, 4), (2, 1, 7), (4, 1, 1)])
def test_aff_and_iaff_equal_the_reference_of_the_authors_code(train, shape):
    n, h, w = shape
    x, y = _x(n, C, h, w, seed=1), _x(n, C, h, w, seed=2)
    for cls, ref in ((AFF, aff_reference), (iAFF, iaff_reference)):
        block = _randomize(cls(C), seed=3).train(train)
        assert_close(block(x, y), ref(block, x, y, train), rtol=1e-5, atol=1e-5, msg=lambda m: f"{cls.__name__}: {m}")


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_mscam_as_a_one_input_block_is_x_times_its_weights(train):
    block = _randomize(MSCAM(C), seed=5).train(train)
    z = _x(3, C, 5, 4)
    assert_close(block(z), z * _ms_cam(block, z, train), rtol=1e-5, atol=1e-6)


def test_the_hidden_width_is_c_over_r_and_every_conv_has_a_bias():
    block = MSCAM(64)
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 4 and all(c.bias is not None for c in convs)
    assert {c.out_channels for c in convs} == {16, 64}
    assert MSCAM(64, reduction=16).reduced_channels == 4 and MSCAM(64, reduced_channels=5).reduced_channels == 5


# --------------------------------------------------------------------------- identities
@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 3), h=st.integers(1, 5), w=st.integers(1, 5), seed=st.integers(0, 10_000))
def test_fusing_a_map_with_itself(n, h, w, seed):
    """w·x + (1 − w)·x = x whatever w is: AFF(x, x) = 2x (its factor 2), iAFF(x, x) = x."""
    x = _x(n, C, h, w, seed=seed)
    aff, iaff = _randomize(AFF(C), seed=seed % 7), _randomize(iAFF(C), seed=seed % 5)
    for train in (False, True):
        assert_close(aff.train(train)(x, x), 2 * x, rtol=1e-5, atol=1e-5)
        assert_close(iaff.train(train)(x, x), x, rtol=1e-5, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 5), w=st.integers(1, 5), seed=st.integers(0, 10_000))
def test_aff_weights_depend_on_the_sum_so_swapping_the_inputs_swaps_w_and_one_minus_w(h, w, seed):
    x, y = _x(2, C, h, w, seed=seed), _x(2, C, h, w, seed=seed + 1)
    aff = _randomize(AFF(C), seed=1).eval()
    assert_close(aff(x, y) + aff(y, x), 2 * (x + y), rtol=1e-5, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 5), w=st.integers(1, 5), seed=st.integers(0, 10_000))
def test_iaff_output_lies_between_its_inputs_and_aff_between_twice_them(h, w, seed):
    x, y = _x(2, C, h, w, seed=seed), _x(2, C, h, w, seed=seed + 1)
    low, high = torch.minimum(x, y) - 1e-5, torch.maximum(x, y) + 1e-5
    out = _randomize(iAFF(C), seed=2).eval()(x, y)
    assert ((out >= low) & (out <= high)).all()
    out = _randomize(AFF(C), seed=2).eval()(x, y) / 2
    assert ((out >= low) & (out <= high)).all()


def test_with_the_last_bn_scales_at_zero_aff_is_the_plain_sum():
    """Both branches then output their BN shift 0: w = σ(0) = 1/2 and AFF = 2·x/2 + 2·y/2 = x + y (the factor 2's reason)."""
    aff = _randomize(AFF(C), seed=4)
    with torch.no_grad():
        for branch in (aff.attention.local_att, aff.attention.global_att):
            branch[-1].weight.zero_()
            branch[-1].bias.zero_()
    x, y = _x(2, C, 5, 3, seed=1), _x(2, C, 5, 3, seed=2)
    for train in (False, True):
        assert_close(aff.train(train)(x, y), x + y)


# --------------------------------------------------------------------------- iAFF's second round
def test_iaff_rounds_have_separate_parameters():
    iaff = iAFF(C)
    first = {id(p) for p in iaff.first.parameters()}
    second = {id(p) for p in iaff.second.parameters()}
    assert first and second and not first & second
    assert {k.split(".")[0] for k in iaff.state_dict()} == {"first", "second"}
    assert sum(p.numel() for p in iaff.parameters()) == 2 * sum(p.numel() for p in MSCAM(C).parameters())


def test_iaff_second_round_uses_its_own_global_branch_not_the_first():
    iaff = _randomize(iAFF(C), seed=6).eval()
    x, y = _x(2, C, 4, 5, seed=1), _x(2, C, 4, 5, seed=2)
    ours = iaff(x, y)
    assert_close(ours, iaff_reference(iaff, x, y))
    assert not torch.allclose(ours, iaff_reference(iaff, x, y, reuse_first_global=True), atol=1e-4)
    with torch.no_grad():  # moving the second global branch moves the output; the first round does not see it
        iaff.second.global_att[1].bias.add_(1.0)
    assert not torch.allclose(iaff(x, y), ours, atol=1e-4)
    assert_close(iaff.attention_maps(x, y)["first"], _ms_cam(iaff.first, x + y, False))


# --------------------------------------------------------------------------- init, registry, errors, gradients
def test_reset_parameters_is_the_authors_xavier_init_with_zero_biases():
    torch.manual_seed(0)
    block = MSCAM(64)
    for m in block.modules():
        if isinstance(m, nn.Conv2d):
            bound = (6 / (m.in_channels + m.out_channels)) ** 0.5
            assert m.weight.abs().max() <= bound and m.weight.abs().max() > 0.8 * bound
            assert torch.equal(m.bias, torch.zeros_like(m.bias))
        if isinstance(m, nn.BatchNorm2d):
            assert torch.equal(m.weight, torch.ones_like(m.weight)) and torch.equal(m.bias, torch.zeros_like(m.bias))


def test_registered_as_two_input_blocks():
    assert list_blocks(inputs=2) == ["aff", "iaff"]
    assert get_block_spec("aff").inputs == 2 and get_block_spec("mscam").inputs == 1
    assert "aff" not in list_blocks() and "aff" in list_blocks(inputs=None) and "mscam" in list_blocks()
    assert isinstance(create_block("iaff", 8), iAFF)


@pytest.mark.parametrize("cls", [AFF, iAFF])
def test_bad_pairs_are_value_errors_naming_the_block_and_the_shapes(cls):
    block = cls(C)
    x = _x(2, C, 4, 4)
    cases = [(x, _x(2, C, 4, 5)), (x, _x(3, C, 4, 4)), (x, _x(2, C + 1, 4, 4)), (x, x[0]), (x, x.double())]
    for a, b in cases:
        with pytest.raises(ValueError) as err:
            block(a, b)
        message = str(err.value)
        assert cls.__name__ in message and str(tuple(b.shape)) in message, message
    with pytest.raises(ValueError, match=cls.__name__):
        block(x.tolist(), x)


@pytest.mark.parametrize("cls", [AFF, iAFF, MSCAM])
def test_batch_one_trains_nowhere_but_evaluates_everywhere(cls):
    block = _randomize(cls(C), seed=1)
    inputs = (_x(1, C, 5, 3),) * (1 if cls is MSCAM else 2)
    with pytest.raises(ValueError, match=rf"{cls.__name__}: in training mode the global branch's BatchNorm.*\(1, 16, 5, 3\)"):
        block.train()(*inputs)
    block.eval()
    out = block(*inputs)
    assert out.shape == (1, C, 5, 3) and torch.isfinite(out).all()


@pytest.mark.parametrize("cls", [AFF, iAFF])
def test_gradcheck_float64_to_both_inputs_and_every_parameter(cls):
    block = _randomize(cls(8, reduction=2), seed=2).double().eval()
    x = _x(2, 8, 3, 2, seed=1, dtype=torch.float64).requires_grad_(True)
    y = _x(2, 8, 3, 2, seed=2, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(block, (x, y), eps=1e-6, atol=1e-5, rtol=1e-3)
    block.train()(x, y).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in block.parameters())


def test_attnresnet_refuses_a_two_input_block_but_places_mscam():
    from attncourse.models import AttnResNet

    for name in ("aff", "iaff"):
        with pytest.raises(ValueError, match=rf"AttnResNet: '{name}' is a two-input fusion block"):
            AttnResNet(attention=name)
    net = AttnResNet(attention="mscam").eval()
    assert sum(isinstance(m, MSCAM) for m in net.modules()) == 3
    assert net(_x(1, 1, 20, 17)).shape == (1, 10)


def test_mscam_comes_out_of_attnresnet_as_reset_parameters_makes_it():
    """Per tensor: biases and BN equal a standalone block's; conv weights within Xavier-uniform's bound (the backbone's
    Kaiming-normal fan-out draw would exceed it); after a NaN fill, the same seeded reset gives the same tensors."""
    from attncourse.models import AttnResNet

    net = AttnResNet(attention="mscam")
    for inside in [m for m in net.modules() if isinstance(m, MSCAM)]:
        alone = MSCAM(inside.channels)
        for key, value in inside.state_dict().items():
            module = inside.get_submodule(key.rsplit(".", 1)[0])
            if isinstance(module, nn.Conv2d) and key.endswith("weight"):
                bound = (6 / (module.in_channels + module.out_channels)) ** 0.5
                assert value.abs().max() <= bound, key
            else:
                assert torch.equal(value, alone.state_dict()[key]), key
        with torch.no_grad():
            for p in inside.parameters():
                p.fill_(float("nan"))
        for block in (inside, alone):
            torch.manual_seed(3)
            block.reset_parameters()
        for (key, a), b in zip(inside.state_dict().items(), alone.state_dict().values()):
            assert torch.equal(a, b), key
