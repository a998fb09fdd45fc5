"""SRM, GSoP and Gather-Excite against independent references.

* Gather-Excite equals ``timm.layers.GatherExcite`` where timm builds the variant (the parameter-free GE-θ⁻,
  global and extents 2/4/8, no MLP); GE-θ (depthwise strided convs), the global GE-θ and the MLP variant equal a
  hand-written reference of the paper's form.
* SRM and GSoP equal hand-written references of the official code's forms (written here from the facts: SRM's
  unbiased std with eps inside the root and a channel-wise FC; GSoP's ``x (I/M − 11ᵀ/M²) xᵀ`` covariance, a BN
  over the rows, a row-wise grouped conv, no activation, a 1×1 conv and a sigmoid on the pre-ReLU input).
* The official inits (SRM starts as exactly 0.5·x), float64 gradcheck, hypothesis properties, and the same init
  standalone and inside ``AttnResNet``.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from torch import nn
from torch.testing import assert_close

from attncourse.blocks import create_block, list_blocks
from attncourse.blocks.channel import SEBlock
from attncourse.blocks.gather_excite import GatherExcite, ge_gather
from attncourse.blocks.second_order import GSoP, SRM, covariance_pool, style_pool
from attncourse.models import AttnResNet

C = 16
NEW_BLOCKS = ["srm", "gsop", "ge_global", "ge_e2", "ge_e4", "ge_e8", "ge_theta_e2", "ge_theta_e4", "ge_theta_e8"]


def _x(shape=(3, C, 7, 5), seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype) * 1.5 + 0.3


def _randomize(block: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in block.parameters():
            p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.5)
        for m in block.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return block


def _bn_eval(x, bn: nn.BatchNorm2d):
    """BatchNorm in eval mode written out: (x − μ) / sqrt(σ² + eps) · γ + β over dim 1."""
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return ((x - bn.running_mean.view(shape)) / (bn.running_var.view(shape) + bn.eps).sqrt() * bn.weight.view(shape)
            + bn.bias.view(shape))


def test_all_registered():
    assert set(NEW_BLOCKS) <= set(list_blocks())


# --------------------------------------------------------------------------- SRM
def _srm_reference(x, cfc, bn, eps=1e-5):
    """The official SRMLayer's form: mean and sqrt(unbiased var + eps) per channel, Σ_k cfc[c, k]·t[c, k], BN, σ."""
    n, c = x.shape[:2]
    flat = x.reshape(n, c, -1)
    mean = flat.mean(2)
    std = (flat.var(2, unbiased=True) + eps).sqrt()
    z = mean * cfc[:, 0] + std * cfc[:, 1]
    return x * torch.sigmoid(_bn_eval(z[..., None, None], bn))


@pytest.mark.parametrize("shape", [(3, C, 7, 5), (1, C, 4, 9), (2, C, 1, 6)])
def test_srm_equals_the_official_form(shape):
    block = _randomize(SRM(C)).eval()
    x = _x(shape)
    assert_close(block(x), _srm_reference(x, block.cfc, block.bn), rtol=1e-5, atol=1e-6)


def test_srm_cfc_is_a_depthwise_conv1d():
    """The channel-wise FC: the same as Conv1d(C, C, 2, groups=C, bias=False) on the [N, C, 2] style vector."""
    block = _randomize(SRM(C)).eval()
    x = _x()
    conv = nn.Conv1d(C, C, 2, groups=C, bias=False)
    with torch.no_grad():
        conv.weight.copy_(block.cfc[:, None, :])
    assert_close(block.style_logits(x)[..., 0, 0], conv(style_pool(x))[..., 0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("train", [True, False])
def test_srm_starts_as_exactly_half_x(train):
    block = SRM(C).train(train)
    assert torch.count_nonzero(block.cfc) == 0
    x = _x()
    assert torch.equal(block(x), x * 0.5)


def test_style_pool_uses_the_unbiased_std_and_a_1x1_map_is_finite():
    x = _x((2, 3, 4, 5), dtype=torch.float64)
    t = style_pool(x, eps=0.0)
    assert_close(t[..., 1], x.reshape(2, 3, -1).std(2, unbiased=True))
    assert_close(t[..., 0], x.mean((2, 3)))
    one = _x((2, 3, 1, 1), dtype=torch.float64).requires_grad_(True)
    t = style_pool(one)
    assert torch.isfinite(t).all() and torch.equal(t[..., 1], torch.full((2, 3), math.sqrt(1e-5), dtype=torch.float64))
    t.sum().backward()
    assert torch.isfinite(one.grad).all()


def test_srm_batch_one_training_is_a_named_error_and_eval_works():
    block = SRM(C).train()
    x = _x((1, C, 5, 3))
    with pytest.raises(ValueError, match=r"SRM.*\(1, 16, 5, 3\)"):
        block(x)
    assert torch.isfinite(block.eval()(x)).all()


@settings(max_examples=25, deadline=None)
@given(scale=st.floats(0.1, 10.0), shift=st.floats(-5.0, 5.0), seed=st.integers(0, 10_000))
def test_srm_style_is_equivariant_to_affine_maps_of_a_channel(scale, shift, seed):
    """mean(a·x + b) = a·mean + b and std(a·x + b) = a·std (eps aside): the style vector sees exactly these two."""
    x = _x((2, 4, 5, 6), seed=seed, dtype=torch.float64)
    t, u = style_pool(x, eps=0.0), style_pool(scale * x + shift, eps=0.0)
    assert_close(u[..., 0], scale * t[..., 0] + shift)
    assert_close(u[..., 1], scale * t[..., 1])


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_srm_gate_is_invariant_to_permuting_positions(seed):
    """Style pooling is orderless: shuffling the positions of the map shuffles the output the same way."""
    block = _randomize(SRM(C), seed % 7).eval()
    x = _x((2, C, 4, 6), seed=seed)
    perm = torch.randperm(24, generator=torch.Generator().manual_seed(seed))
    shuffled = x.reshape(2, C, 24)[..., perm].reshape(2, C, 4, 6)
    assert_close(block.weights(shuffled), block.weights(x), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- GSoP
def _covpool_reference(r):
    """The official CovpoolLayer: x · (I/M − 11ᵀ/M²) · xᵀ."""
    n, d = r.shape[:2]
    flat = r.reshape(n, d, -1)
    m = flat.shape[-1]
    i_hat = torch.eye(m, dtype=r.dtype) / m - torch.full((m, m), 1.0 / (m * m), dtype=r.dtype)
    return flat @ i_hat @ flat.transpose(1, 2)


def _gsop_reference(x, b: GSoP):
    """GSoP-Net1's chan_att written out with the block's weights (eval-mode BN), gating the pre-ReLU x."""
    a = F.relu(x)
    r = F.relu(_bn_eval(F.conv2d(a, b.reduce.weight, b.reduce.bias, stride=b.stride), b.reduce_bn))
    cov = _covpool_reference(r)
    d = cov.shape[1]
    rows = _bn_eval(cov.reshape(x.shape[0], d, d, 1), b.row_bn)
    # row-wise conv: output 4i+k is the dot product of row i with its own kernel (groups = d)
    kernel = b.row_conv.weight.reshape(d, b.expansion, d)               # [d, 4, d]
    v = torch.einsum("nij,ikj->nik", rows[..., 0], kernel).reshape(x.shape[0], -1) + b.row_conv.bias
    logits = v @ b.expand.weight[:, :, 0, 0].T + b.expand.bias
    return x * torch.sigmoid(logits)[..., None, None]


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("shape", [(3, C, 7, 5), (1, C, 6, 6), (2, C, 3, 8)])
def test_gsop_equals_the_official_form(shape, stride):
    block = _randomize(GSoP(C, reduction=4, stride=stride)).eval()
    x = _x(shape)
    assert_close(block(x), _gsop_reference(x, block), rtol=1e-4, atol=1e-5)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), m=st.integers(1, 30), d=st.integers(1, 6))
def test_covariance_pool_is_the_centred_covariance_divided_by_m(seed, m, d):
    r = torch.randn(2, d, 1, m, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    cov = covariance_pool(r)
    assert_close(cov, _covpool_reference(r))
    expected = torch.stack([torch.cov(r[i, :, 0], correction=0).reshape(d, d) for i in range(2)])
    assert_close(cov, expected)
    assert_close(cov, cov.transpose(1, 2))
    assert (torch.linalg.eigvalsh(cov) > -1e-9).all()  # positive semi-definite
    assert_close(covariance_pool(r + 3.0), cov)  # shift-invariant: the mean is removed


def test_gsop_gates_the_pre_relu_input():
    """The covariance is taken of ReLU(x), but x itself is gated: negative inputs come out negative."""
    block = _randomize(GSoP(C)).eval()
    x = _x()
    y = block(x)
    assert (y[x < 0] < 0).all()


def test_gsop_cost_grows_with_d_squared():
    def params(d):
        return sum(p.numel() for p in GSoP(64, reduced_channels=d).parameters())
    # C·d + d + 2d (BN) + 2d (row BN) + 4d·d + 4d (row conv) + 4d·C + C
    for d in (4, 8, 16):
        assert params(d) == 64 * d + d + 2 * d + 2 * d + 4 * d * d + 4 * d + 4 * d * 64 + 64


# --------------------------------------------------------------------------- Gather-Excite
@pytest.mark.parametrize("extent", [0, 2, 4, 8])
@pytest.mark.parametrize("shape", [(2, C, 8, 8), (1, C, 7, 5), (3, C, 9, 12), (2, C, 3, 2)])
def test_parameter_free_ge_equals_timm(extent, shape):
    timm_layers = pytest.importorskip("timm.layers")
    ours = GatherExcite(C, extent=extent).eval()
    theirs = timm_layers.GatherExcite(C, extent=extent, extra_params=False, use_mlp=False).eval()
    x = _x(shape)
    assert_close(ours(x), theirs(x), rtol=1e-6, atol=1e-6)


def _ge_theta_reference(x, block: GatherExcite):
    """GE-θ: per step a depthwise 3×3 stride-2 conv (pad 1, no bias), eval BN, ReLU between; nearest up; σ."""
    g = x
    convs = [m for m in block.gather if isinstance(m, nn.Conv2d)]
    bns = [m for m in block.gather if isinstance(m, nn.BatchNorm2d)]
    for i, (conv, bn) in enumerate(zip(convs, bns)):
        g = _bn_eval(F.conv2d(g, conv.weight, None, stride=conv.stride, padding=conv.padding, groups=x.shape[1]), bn)
        if i < len(convs) - 1:
            g = F.relu(g)
    if block.use_mlp:
        fc1, fc2 = block.mlp[0], block.mlp[2]
        g = F.conv2d(F.relu(F.conv2d(g, fc1.weight, fc1.bias)), fc2.weight, fc2.bias)
    # nearest: output row i reads gathered row floor(i · h_g / H)
    h, w = x.shape[-2:]
    rows = (torch.arange(h) * g.shape[-2] // h)
    cols = (torch.arange(w) * g.shape[-1] // w)
    return x * torch.sigmoid(g[:, :, rows][:, :, :, cols])


@pytest.mark.parametrize("extent", [2, 4, 8])
@pytest.mark.parametrize("use_mlp", [False, True])
@pytest.mark.parametrize("shape", [(2, C, 8, 8), (1, C, 7, 5), (3, C, 9, 12)])
def test_ge_theta_equals_the_reference(extent, use_mlp, shape):
    block = _randomize(GatherExcite(C, extent=extent, extra_params=True, use_mlp=use_mlp, reduction=4)).eval()
    assert len([m for m in block.gather if isinstance(m, nn.Conv2d)]) == int(math.log2(extent))
    x = _x(shape)
    assert block.gathered(x).shape[-2:] == tuple(-(-s // extent) for s in shape[2:])
    assert_close(block(x), _ge_theta_reference(x, block), rtol=1e-5, atol=1e-6)


def test_global_ge_theta_is_a_depthwise_conv_over_the_whole_map():
    block = _randomize(GatherExcite(C, extent=0, extra_params=True, feat_size=(5, 7))).eval()
    x = _x((2, C, 5, 7))
    g = (x * block.gather.conv1.weight[:, 0]).sum((2, 3), keepdim=True)
    assert_close(block(x), x * torch.sigmoid(_bn_eval(g, block.gather.norm1)), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"GatherExcite.*\(2, 16, 6, 7\)"):
        block(_x((2, C, 6, 7)))
    with pytest.raises(ValueError, match="feat_size"):
        GatherExcite(C, extent=0, extra_params=True)


@pytest.mark.parametrize("extent", [-2, 1, 3, 6, 2.0, True])
def test_ge_bad_extent_is_a_named_error(extent):
    with pytest.raises(ValueError, match="GatherExcite: extent"):
        GatherExcite(C, extent=extent)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), h=st.integers(1, 9), w=st.integers(1, 9))
def test_global_ge_with_mlp_is_se(seed, h, w):
    """GE-θ⁻ with a global extent and the MLP is SE: the same gate of the mean, the same weights."""
    torch.manual_seed(seed)
    ge = GatherExcite(C, extent=0, use_mlp=True, reduction=4).eval()
    se = SEBlock(C, reduction=4).eval()
    se.fc1.load_state_dict(ge.mlp[0].state_dict())
    se.fc2.load_state_dict(ge.mlp[2].state_dict())
    x = _x((2, C, h, w), seed=seed)
    assert_close(ge(x), se(x), rtol=1e-5, atol=1e-6)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), extent=st.sampled_from([2, 4, 8]), k=st.integers(1, 3))
def test_ge_gather_of_a_constant_map_is_that_constant(seed, extent, k):
    """A constant map gathers to itself at any extent (the padding is not counted), to ⌈H/e⌉ × ⌈W/e⌉ values."""
    value = float(torch.randn(1, generator=torch.Generator().manual_seed(seed)))
    x = torch.full((1, 2, extent * k + 1, extent * k), value)
    assert_close(ge_gather(x, extent), torch.full((1, 2, k + 1, k), value))


# --------------------------------------------------------------------------- the same init standalone and in the backbone
def _block_modules(net: nn.Module, cls):
    return [m for m in net.modules() if isinstance(m, cls)]


@pytest.mark.parametrize("name", ["srm", "gsop", "ge_theta_e4", "ge_e4"])
def test_init_is_the_same_standalone_and_inside_attn_resnet(name):
    """init_backbone Kaiming-initialises every conv and then calls each block's reset_parameters: a block must come
    out of the backbone with its own init — the exact values where the init is deterministic (SRM, every BN), and a
    weight tensor of the same distribution (std within 25 %) where it is random."""
    torch.manual_seed(0)
    net = AttnResNet(1, 10, widths=(16, 32, 64), depths=(1, 1, 1), attention=name)
    inside = [m for m in net.modules() if type(m).__module__.startswith("attncourse.blocks") and m is not net]
    assert len(inside) == 3 and all(type(m) is type(inside[0]) for m in inside)
    for block in inside:
        torch.manual_seed(1)
        alone = create_block(name, block.channels)
        for (key, a), b in zip(block.state_dict().items(), alone.state_dict().values()):
            deterministic = key.endswith(("running_mean", "running_var", "num_batches_tracked")) or "bn" in key \
                or "norm" in key or key == "cfc"
            if deterministic:
                assert torch.equal(a, b), key
            elif a.numel() >= 64:
                ratio = float(a.std() / b.std())
                assert 0.75 < ratio < 1.33, (key, ratio)
            else:  # small bias vectors: PyTorch's default uniform bound 1/sqrt(fan_in)
                assert float(a.abs().max()) <= float(b.abs().max()) * 4 + 1e-6, key


# --------------------------------------------------------------------------- float64 gradcheck (the unregistered forms too)
@pytest.mark.parametrize("build", [
    lambda: SRM(6), lambda: GSoP(6, reduced_channels=3), lambda: GSoP(6, reduced_channels=3, stride=2),
    lambda: GatherExcite(6, extent=2, extra_params=True, use_mlp=True, reduction=2),
    lambda: GatherExcite(6, extent=0, extra_params=True, feat_size=(3, 4)), lambda: GatherExcite(6, extent=4),
], ids=["srm", "gsop", "gsop_stride2", "ge_theta_mlp", "ge_theta_global", "ge_e4"])
def test_float64_gradcheck_of_inputs_and_weights(build):
    torch.manual_seed(0)
    block = _randomize(build()).double().eval()
    x = _x((2, 6, 3, 4), dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(block, (x,), eps=1e-6, atol=1e-5, rtol=1e-3)
    names = [k for k, _ in block.named_parameters()]
    if names:
        def f(*params):
            return torch.func.functional_call(block, dict(zip(names, params)), (x.detach(),))
        params = tuple(p.detach().clone().requires_grad_(True) for p in block.parameters())
        assert torch.autograd.gradcheck(f, params, eps=1e-6, atol=1e-5, rtol=1e-3)
