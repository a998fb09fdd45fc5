"""Non-local family: equivalence with timm, efficient == naive, gradients, identity at init, CCNet vs brute force."""
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn
from torch.testing import assert_close

from attncourse.blocks import create_block, get_block_spec, list_blocks
from attncourse.blocks.nonlocal_ import (MODES, AsymmetricNonLocal2d, CrissCrossAttention, DisentangledNonLocal2d,
                                         EMAUnit, GlobalContext, GloRe, NonLocal2d, criss_cross_mask, pyramid_pool,
                                         sdpa_backends)
from attncourse.models import AttnResNet

timm_layers = pytest.importorskip("timm.layers")

SOFTMAX_DOT = ("embedded_gaussian", "gaussian", "dot_product")


def _randomize(module: nn.Module, std: float = 0.3, seed: int = 0) -> nn.Module:
    """Random weights everywhere (zero-init would hide bugs) and non-trivial BN statistics."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * std)
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return module


# --------------------------------------------------------------------------- timm equivalence
@pytest.mark.parametrize("implementation", ["efficient", "naive"])
@pytest.mark.parametrize("train", [False, True])
def test_nonlocal_matches_timm_nonlocalattn(implementation, train):
    c = 64
    ref = timm_layers.NonLocalAttn(c)  # inner = make_divisible(C/8, 8) = 8, scale C^-0.5, BN, residual
    inner = ref.t.out_channels
    ours = NonLocal2d(c, inner_channels=inner, scale=c ** -0.5, implementation=implementation)
    _randomize(ref)
    with torch.no_grad():
        for mine, theirs in [(ours.theta, ref.t), (ours.phi, ref.p), (ours.g, ref.g), (ours.W, ref.z)]:
            mine.weight.copy_(theirs.weight)
            mine.bias.copy_(theirs.bias)
    ours.bn.load_state_dict(ref.norm.state_dict())
    ref.train(train), ours.train(train)
    x = torch.randn(2, c, 7, 6)
    assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("fuse,timm_kw", [("add", dict(fuse_add=True, fuse_scale=False)),
                                          ("mul", dict(fuse_add=False, fuse_scale=True)),
                                          ("both", dict(fuse_add=True, fuse_scale=True))])
def test_global_context_matches_timm(fuse, timm_kw):
    c, planes = 32, 4
    ref = timm_layers.GlobalContext(c, rd_channels=planes, **timm_kw)
    _randomize(ref, seed=1)
    ours = GlobalContext(c, reduced_channels=planes, fuse=fuse, eps=1e-6)  # timm's LayerNorm2d eps is 1e-6
    with torch.no_grad():
        ours.conv_mask.load_state_dict(ref.conv_attn.state_dict())
        for mine, theirs in [(ours.channel_add, ref.mlp_add), (ours.channel_mul, ref.mlp_scale)]:
            if mine is None:
                continue
            mine[0].load_state_dict(theirs.fc1.state_dict())
            mine[1].weight.copy_(theirs.norm.weight.reshape(planes, 1, 1))
            mine[1].bias.copy_(theirs.norm.bias.reshape(planes, 1, 1))
            mine[3].load_state_dict(theirs.fc2.state_dict())
    x = torch.randn(3, c, 5, 7)
    assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-4)
    # with the official eps (1e-5) the two differ unless timm's eps is changed to match
    ours_default = GlobalContext(c, reduced_channels=planes, fuse=fuse)
    ours_default.load_state_dict(ours.state_dict())
    for m in ref.modules():
        if isinstance(m, nn.LayerNorm):
            m.eps = 1e-5
    assert_close(ours_default(x), ref(x), atol=1e-5, rtol=1e-4)


def test_global_context_reduction_default_and_override():
    assert GlobalContext(64).reduced_channels == 4
    assert GlobalContext(64, reduction=4).reduced_channels == 16
    assert GlobalContext(64, reduction=16, reduced_channels=7).reduced_channels == 7
    assert create_block("gc", 32).reduced_channels == 2
    assert get_block_spec("gc").placement == "residual"
    assert get_block_spec("nonlocal").placement == get_block_spec("cc").placement == "stage"


# --------------------------------------------------------------------------- efficient == naive
SHAPES = [(2, 7, 5), (1, 6, 6), (3, 4, 9), (2, 1, 8)]  # odd, square, non-square, one row


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sub_sample", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_nonlocal_efficient_equals_naive_float32(mode, sub_sample, shape):
    b, h, w = shape
    if sub_sample and min(h, w) < 2:
        pytest.skip("2×2 pooling needs H, W >= 2 (tested in test_errors)")
    block = _randomize(NonLocal2d(12, mode=mode, sub_sample=sub_sample), seed=h * w).eval()
    x = torch.randn(b, 12, h, w)
    block.implementation = "efficient"
    fast = block(x)
    block.implementation = "naive"
    assert_close(fast, block(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sub_sample", [False, True])
def test_nonlocal_gradcheck_float64(mode, sub_sample):
    block = _randomize(NonLocal2d(4, mode=mode, sub_sample=sub_sample, inner_channels=3), std=0.5).double().eval()
    x = torch.randn(1, 4, 4, 3, dtype=torch.float64, requires_grad=True)
    grads = {}
    for impl in ("efficient", "naive"):
        block.implementation = impl
        assert torch.autograd.gradcheck(block, (x,), eps=1e-6, atol=1e-5)
        block.zero_grad()
        (block(x) * torch.linspace(-1, 1, x.numel(), dtype=x.dtype).reshape(x.shape)).sum().backward()
        grads[impl] = {n: p.grad.clone() for n, p in block.named_parameters() if p.grad is not None}
    assert grads["efficient"].keys() == grads["naive"].keys()
    for n in grads["naive"]:
        assert_close(grads["efficient"][n], grads["naive"][n], atol=1e-10, rtol=1e-8, msg=n)


@settings(max_examples=25, deadline=None)
@given(b=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9), mode=st.sampled_from(MODES),
       sub=st.booleans(), c=st.sampled_from([2, 6, 8]))
def test_nonlocal_hypothesis_shapes(b, h, w, mode, sub, c):
    sub = sub and min(h, w) >= 2
    block = _randomize(NonLocal2d(c, mode=mode, sub_sample=sub), std=0.4, seed=b + h + w).eval()
    x = torch.randn(b, c, h, w)
    out = block(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    block.implementation = "naive"
    assert_close(out, block(x), atol=1e-5, rtol=1e-5)
    att = block.attention_maps(x)["attention"]
    assert att.shape == (b, h * w, (h // 2) * (w // 2) if sub else h * w)
    if mode in ("embedded_gaussian", "gaussian"):
        assert_close(att.sum(-1), torch.ones(b, h * w))


def test_nonlocal_modes_normalise_as_the_paper():
    block = _randomize(NonLocal2d(6, mode="dot_product"), seed=3).eval()
    x = torch.randn(2, 6, 3, 4)
    q, k, _ = block.project(x)
    raw = torch.einsum("bcn,bcm->bnm", q.flatten(2), k.flatten(2))
    assert_close(block.attention_maps(x)["attention"], raw / 12)  # ÷ N (number of keys)
    scaled = _randomize(NonLocal2d(6, scale=0.25), seed=3).eval()
    q, k, _ = scaled.project(x)
    assert_close(scaled.attention_maps(x)["attention"], (0.25 * torch.einsum("bcn,bcm->bnm", q.flatten(2), k.flatten(2))).softmax(-1))
    gauss = NonLocal2d(6, mode="gaussian")
    assert gauss.theta is None and gauss.phi is None  # θ = φ = identity
    assert_close(gauss.attention_maps(x)["attention"], torch.einsum("bcn,bcm->bnm", x.flatten(2), x.flatten(2)).softmax(-1))


def test_query_attention_points_on_the_key_grid():
    block = _randomize(NonLocal2d(4, sub_sample=True), seed=2).eval()
    x = torch.randn(1, 4, 6, 9)
    m = block.query_attention(x, 2, 5)
    assert m.shape == (1, 3, 4)
    assert_close(m.sum(), torch.tensor(1.0))
    with pytest.raises(ValueError, match="outside"):
        block.query_attention(x, 6, 0)


def test_sdpa_contiguous_tokens_unlock_a_fused_kernel():
    """A transposed conv output is non-contiguous: only the math kernel runs. Contiguous q/k/v allow more."""
    t = torch.randn(2, 16, 64)  # [B, d, N] as a 1×1 conv output flattens
    view = t.transpose(1, 2).unsqueeze(1)
    contiguous = view.contiguous()
    slow, fast = sdpa_backends(view, view, view, 1.0), sdpa_backends(contiguous, contiguous, contiguous, 1.0)
    assert "MATH" in slow and "MATH" in fast
    if fast == ["MATH"]:
        pytest.skip("this torch build has no fused SDPA kernel for CPU")
    assert set(slow) < set(fast)
    from attncourse.blocks.nonlocal_ import _tokens
    tok = _tokens(t.reshape(2, 16, 8, 8))
    assert tok.shape == (2, 1, 64, 16) and tok.stride(-1) == 1 and sdpa_backends(tok, tok, tok, 1.0) == fast


# --------------------------------------------------------------------------- identity at init
IDENTITY_AT_INIT = ["nonlocal", "nonlocal_gaussian", "nonlocal_dot", "nonlocal_concat", "nonlocal_sub", "gc", "cc",
                    "dnl", "glore"]


@pytest.mark.parametrize("name", IDENTITY_AT_INIT)
def test_zero_init_makes_the_block_the_identity(name):
    block = create_block(name, 16)
    x = torch.randn(2, 16, 6, 5)
    for mode in (True, False):
        block.train(mode)
        assert_close(block(x), x)
    nl = NonLocal2d(16, use_bn=False)  # without BN, W itself is zero
    assert_close(nl(x), x)


def test_blocks_stay_identity_inside_attnresnet_after_its_reset():
    for name in ("nonlocal", "gc", "cc"):
        net = AttnResNet(1, 2, attention=name)
        homes = ("attncourse.blocks.nonlocal_", "attncourse.blocks.context")
        blocks = [m for m in net.modules() if type(m).__module__ in homes]
        assert blocks, name
        x = torch.randn(1, blocks[0].channels, 5, 7)
        assert_close(blocks[0].eval()(x), x)


def test_every_family_block_runs_in_a_backbone_batch_one_eval():
    for name in list_blocks("nonlocal"):
        net = AttnResNet(1, 2, attention=name).eval()
        assert net(torch.randn(1, 1, 24, 40)).shape == (1, 2), name


# --------------------------------------------------------------------------- CCNet
def _brute_force_cc(block: CrissCrossAttention, x: torch.Tensor) -> torch.Tensor:
    """Full N×N attention with every key outside the pixel's row and column masked (centre once)."""
    b, c, h, w = x.shape
    for _ in range(block.recurrence):
        q, k, v = block.query(x).flatten(2), block.key(x).flatten(2), block.value(x).flatten(2)
        energy = torch.einsum("bcn,bcm->bnm", q, k)
        energy = energy.masked_fill(~criss_cross_mask(h, w), float("-inf"))
        att = energy.softmax(-1)
        x = block.gamma * torch.einsum("bnm,bcm->bcn", att, v).reshape(b, c, h, w) + x
    return x


@pytest.mark.parametrize("shape", [(2, 5, 7), (1, 4, 4), (2, 1, 6), (1, 6, 1), (1, 1, 1)])
@pytest.mark.parametrize("recurrence", [1, 2])
def test_criss_cross_equals_masked_full_attention(shape, recurrence):
    b, h, w = shape
    block = _randomize(CrissCrossAttention(16, recurrence=recurrence), std=0.3, seed=h * 10 + w)
    x = torch.randn(b, 16, h, w)
    assert_close(block(x), _brute_force_cc(block, x), atol=1e-5, rtol=1e-5)
    a = block.attention_maps(x)["attention"]
    assert a.shape == (b, h, w, h + w)
    assert_close(a.sum(-1), torch.ones(b, h, w))
    assert (a[..., :h].diagonal(dim1=1, dim2=3) == 0).all()  # the centre is counted once, in the row part


def test_criss_cross_mask_counts_the_centre_once():
    m = criss_cross_mask(3, 4)
    assert m.shape == (12, 12) and (m.sum(1) == 3 + 4 - 1).all()


def test_criss_cross_widths_gradcheck_and_query_map():
    block = CrissCrossAttention(32)
    assert block.reduced_channels == 4 and block.value.out_channels == 32 and block.recurrence == 2
    small = _randomize(CrissCrossAttention(8, recurrence=2), std=0.5).double()
    x = torch.randn(1, 8, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(small, (x,), eps=1e-6, atol=1e-5)
    q = small.query_attention(x.detach(), 1, 2)
    assert q.shape == (1, 3, 4)
    off = torch.ones(3, 4, dtype=torch.bool)
    off[1, :] = False
    off[:, 2] = False
    assert (q[0][off] == 0).all() and math.isclose(float(q.sum()), 1.0, rel_tol=1e-9)


# --------------------------------------------------------------------------- the other variants
def test_dnl_efficient_equals_naive_and_whitening():
    block = _randomize(DisentangledNonLocal2d(8), std=0.3, seed=4).eval()
    x = torch.randn(2, 8, 5, 6)
    fast = block(x)
    block.implementation = "naive"
    assert_close(fast, block(x), atol=1e-5, rtol=1e-5)
    maps = block.attention_maps(x)
    assert maps["pairwise"].shape == (2, 30, 30) and maps["unary"].shape == (2, 5, 6)
    assert_close(maps["unary"].sum((1, 2)), torch.ones(2))
    with torch.no_grad():  # whitening: a constant shift of the query/key embeddings changes nothing
        block.theta.bias.add_(3.0)
        block.phi.bias.add_(-2.0)
    assert_close(block.attention_maps(x)["pairwise"], maps["pairwise"])
    xd = torch.randn(1, 8, 3, 3, dtype=torch.float64, requires_grad=True)
    small = _randomize(DisentangledNonLocal2d(8, temperature=1.0), std=0.3).double().eval()
    for impl in ("efficient", "naive"):
        small.implementation = impl
        assert torch.autograd.gradcheck(small, (xd,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("psp_sizes", [(1, 3, 6, 8), None])
def test_ann_efficient_equals_naive(psp_sizes):
    block = _randomize(AsymmetricNonLocal2d(8, psp_sizes=psp_sizes), std=0.3, seed=5).eval()
    x = torch.randn(2, 8, 9, 10)
    fast = block(x)
    block.implementation = "naive"
    assert_close(fast, block(x), atol=1e-5, rtol=1e-5)
    att = block.attention_maps(x)["attention"]
    assert att.shape == (2, 90, 110 if psp_sizes else 90)
    assert_close(att.sum(-1), torch.ones(2, 90))


def test_pyramid_pool_is_adaptive_average_pooling():
    x = torch.randn(2, 3, 9, 10)
    p = pyramid_pool(x, (1, 3))
    assert p.shape == (2, 3, 10)
    assert_close(p[:, :, 0], x.mean((2, 3)))
    assert_close(p[:, :, 1], x[:, :, :3, :4].mean((2, 3)))  # adaptive bins: rows [0, 3), cols [0, 4)


def test_ema_unit_em_steps_and_moving_average():
    block = EMAUnit(16, bases=8, iterations=3)
    x = torch.randn(2, 16, 5, 6)
    assert_close(block.mu.norm(dim=1), torch.ones(1, 8), atol=1e-5, rtol=0)
    before = block.mu.clone()
    block.eval()
    block(x)
    assert torch.equal(block.mu, before)  # eval: bases fixed
    resp = block.attention_maps(x)["responsibilities"]
    assert resp.shape == (2, 8, 5, 6)
    assert_close(resp.sum(1), torch.ones(2, 5, 6))
    mu, _ = block.em(block.conv1(x).flatten(2))
    assert_close(mu.norm(dim=1), torch.ones(2, 8), atol=1e-5, rtol=0)
    block.train()
    out = block(x)
    assert not torch.equal(block.mu, before)
    assert_close(block.mu, 0.9 * before + 0.1 * mu.mean(0, keepdim=True), atol=1e-6, rtol=1e-5)
    out.sum().backward()
    assert block.conv1.weight.grad is None  # as the official code: the EM steps carry no gradient
    assert block.conv2.weight.grad is not None and float(block.conv2.weight.grad.abs().sum()) > 0


def test_glore_projection_reasoning_and_gradients():
    block = GloRe(16)
    assert (block.num_node, block.num_state) == (4, 8)
    x = torch.randn(2, 16, 5, 7)
    assert_close(block(x), x)  # blocker BN γ = 0
    _randomize(block, std=0.3)
    out = block(x)
    s, p = block.conv_state(x).flatten(2), block.conv_proj(x).flatten(2)
    v = s @ p.transpose(1, 2)
    v = block.gcn_state(torch.relu(v + (block.gcn_node.weight[..., 0] @ v.transpose(1, 2) + block.gcn_node.bias[:, None]).transpose(1, 2)))
    expected = x + block.blocker(block.conv_extend((v @ p).reshape(2, 8, 5, 7)))
    assert_close(out, expected, atol=1e-5, rtol=1e-5)
    out.sum().backward()
    assert all(p.grad is not None for p in block.parameters())


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("factory,name", [(lambda: NonLocal2d(8), "NonLocal2d"), (lambda: GlobalContext(8, reduction=4), "GlobalContext"),
                                          (lambda: CrissCrossAttention(8), "CrissCrossAttention"),
                                          (lambda: DisentangledNonLocal2d(8), "DisentangledNonLocal2d"),
                                          (lambda: AsymmetricNonLocal2d(8), "AsymmetricNonLocal2d"),
                                          (lambda: EMAUnit(8), "EMAUnit"), (lambda: GloRe(8), "GloRe")])
def test_bad_input_names_block_and_shapes(factory, name):
    block = factory()
    with pytest.raises(ValueError, match=rf"{name}: expected 8 channels .*got shape \(2, 5, 4, 4\)"):
        block(torch.randn(2, 5, 4, 4))
    with pytest.raises(ValueError, match=rf"{name}: expected a 4-D input .*got shape \(8, 4, 4\)"):
        block(torch.randn(8, 4, 4))


def test_bad_arguments():
    with pytest.raises(ValueError, match="NonLocal2d: mode must be one of"):
        NonLocal2d(8, mode="softmax")
    with pytest.raises(ValueError, match="NonLocal2d: implementation"):
        NonLocal2d(8, implementation="fast")
    with pytest.raises(ValueError, match="scale is not defined for mode='concatenation'"):
        NonLocal2d(8, mode="concatenation", scale=0.5)
    with pytest.raises(ValueError, match="NonLocal2d: scale must be"):
        NonLocal2d(8, scale=-1.0)
    with pytest.raises(ValueError, match=r"NonLocal2d: sub_sample=True needs H, W >= 2.*\(1, 8, 1, 5\)"):
        NonLocal2d(8, sub_sample=True)(torch.randn(1, 8, 1, 5))
    with pytest.raises(ValueError, match="NonLocal2d: channels must be a positive int"):
        NonLocal2d(0)
    with pytest.raises(ValueError, match="GlobalContext: reduction=16 is larger than channels=8"):
        GlobalContext(8)
    with pytest.raises(ValueError, match="GlobalContext: fuse must be one of"):
        GlobalContext(32, fuse="concat")
    with pytest.raises(ValueError, match="CrissCrossAttention: recurrence must be a positive int"):
        CrissCrossAttention(16, recurrence=0)
    with pytest.raises(ValueError, match="AsymmetricNonLocal2d: psp_sizes"):
        AsymmetricNonLocal2d(8, psp_sizes=(0, 2))
