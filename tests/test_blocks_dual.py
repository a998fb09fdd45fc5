"""DANet's PAM and CAM against independent references of their definitions (arXiv:1809.02983 and the
authors' code): efficient == naive, γ = 0 → identity, the max trick, equivariances, gradients, bad input."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch.testing import assert_close

from attncourse.blocks import create_block, get_block_spec, list_blocks
from attncourse.blocks.dual import CAM, PAM, ChannelSelfAttention, PositionAttention, cam_naive


def randomized(block, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)
    return block


def pam_reference(block: PositionAttention, x: torch.Tensor) -> torch.Tensor:
    """PAM written from the definition with einsum over explicit positions (no bmm, no SDPA)."""
    b, c, h, w = x.shape
    wq, bq = block.query.weight[:, :, 0, 0], block.query.bias
    wk, bk = block.key.weight[:, :, 0, 0], block.key.bias
    wv, bv = block.value.weight[:, :, 0, 0], block.value.bias
    xf = x.reshape(b, c, h * w)
    q = torch.einsum("dc,bcn->bdn", wq, xf) + bq[None, :, None]
    k = torch.einsum("dc,bcn->bdn", wk, xf) + bk[None, :, None]
    v = torch.einsum("ec,bcn->ben", wv, xf) + bv[None, :, None]
    energy = torch.einsum("bdi,bdj->bij", q, k)  # no 1/sqrt(d)
    s = torch.exp(energy - energy.max(-1, keepdim=True).values)
    s = s / s.sum(-1, keepdim=True)  # softmax over keys j
    out = torch.einsum("bej,bij->bei", v, s)
    return (block.gamma * out + xf).reshape(b, c, h, w)


def cam_reference(block: ChannelSelfAttention, x: torch.Tensor) -> torch.Tensor:
    """CAM from the definition: S = softmax(−E) (equal to the code's softmax(max(E) − E)), out = S·A."""
    b, c, h, w = x.shape
    a = x.reshape(b, c, h * w)
    energy = torch.einsum("bin,bjn->bij", a, a)
    s = torch.softmax(-energy, dim=-1)
    return (block.gamma * torch.einsum("bij,bjn->bin", s, a) + a).reshape(b, c, h, w)


def test_registered_in_the_dual_family():
    assert set(list_blocks("dual")) == {"danet_pam", "danet_cam"}
    assert get_block_spec("danet_pam").factory is PAM and get_block_spec("danet_cam").factory is CAM
    assert "1809.02983" in get_block_spec("danet_pam").paper


def test_pam_shapes_follow_the_paper():
    block = PositionAttention(64)
    assert block.query.out_channels == block.key.out_channels == 8 and block.value.out_channels == 64
    assert PositionAttention(64, reduced_channels=5).inner_channels == 5
    assert [n for n, _ in ChannelSelfAttention(16).named_parameters()] == ["gamma"]  # CAM has no convs


@pytest.mark.parametrize("factory", [lambda: PositionAttention(16), lambda: ChannelSelfAttention(16)])
def test_gamma_zero_at_init_is_the_identity(factory):
    torch.manual_seed(0)
    block = factory()
    assert block.gamma.item() == 0
    x = torch.randn(2, 16, 5, 6)
    assert torch.equal(block(x), x)
    with torch.no_grad():
        block.gamma.fill_(0.7)
    assert not torch.allclose(block(x), x)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 3), st.integers(1, 7), st.integers(1, 7), st.sampled_from([8, 16, 24]), st.integers(0, 99))
def test_pam_efficient_equals_naive_equals_reference_in_float64(b, h, w, c, seed):
    eff = randomized(PositionAttention(c).double(), seed)
    naive = PositionAttention(c, implementation="naive").double()
    naive.load_state_dict(eff.state_dict())
    x = torch.randn(b, c, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    ref = pam_reference(eff, x)
    assert_close(eff(x), ref, rtol=1e-5, atol=1e-5)
    assert_close(naive(x), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pad", [1, None])
def test_pam_padded_and_unpadded_sdpa_equal_the_reference(pad):
    """Zero-padding q and k to C (so a fused SDPA kernel can run) is exact."""
    eff = randomized(PositionAttention(32, pad_from_tokens=pad).double(), 5)
    x = torch.randn(2, 32, 5, 7, dtype=torch.float64)
    assert_close(eff(x), pam_reference(eff, x), rtol=1e-5, atol=1e-5)
    assert PositionAttention(32).pad_from_tokens == 1024


def test_padding_lets_a_fused_kernel_run_on_large_maps():
    from attncourse.blocks.nonlocal_ import sdpa_backends

    q, v = torch.randn(1, 1, 64, 4), torch.randn(1, 1, 64, 32)
    padded = torch.nn.functional.pad(q, (0, 28))
    plain, wide = sdpa_backends(q, q, v, 1.0), sdpa_backends(padded, padded, v, 1.0)
    assert set(plain) <= set(wide)
    assert "FLASH_ATTENTION" in wide and "FLASH_ATTENTION" not in plain  # PyTorch's CPU flash kernel: equal widths only


def test_pam_uses_no_scale():
    """With SDPA's default scale (1/√d) the output differs: the block must pass scale=1.0."""
    import torch.nn.functional as F

    block = randomized(PositionAttention(16).double(), 1)
    x = torch.randn(2, 16, 4, 4, dtype=torch.float64)
    q, k, v = (t.flatten(2).transpose(1, 2)[:, None] for t in (block.query(x), block.key(x), block.value(x)))
    scaled = F.scaled_dot_product_attention(q, k, v).squeeze(1).transpose(1, 2).reshape(2, 16, 4, 4)
    assert not torch.allclose(block.gamma * scaled + x, block(x))
    assert_close(block(x), pam_reference(block, x))


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6), st.integers(1, 20), st.integers(0, 99))
def test_cam_equals_the_reference_and_the_max_trick_changes_nothing(b, h, w, c, seed):
    block = randomized(ChannelSelfAttention(c).double(), seed)
    x = torch.randn(b, c, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    assert_close(block(x), cam_reference(block, x), rtol=1e-5, atol=1e-5)
    a = x.reshape(b, c, -1)
    energy = a @ a.transpose(1, 2)
    assert_close(cam_naive(x)[1], torch.softmax(-energy, -1), rtol=1e-10, atol=1e-12)


def test_what_the_max_shift_does_in_float32():
    """By hand: exp(−E) underflows to 0/0 = nan on large, similar energies, exp(max − E) does not; the shift
    does not bound the exponent (a large spread overflows exp(max − E)); torch's softmax is safe either way."""
    torch.manual_seed(0)
    x = 3 + 0.1 * torch.randn(1, 4, 8, 8)  # large, similar activations: every E_ij ≈ 580
    a = x.reshape(1, 4, -1)
    energy = a @ a.transpose(1, 2)
    by_hand = torch.exp(-energy) / torch.exp(-energy).sum(-1, keepdim=True)
    shifted = torch.exp(energy.amax(-1, keepdim=True) - energy)
    assert torch.isnan(by_hand).all()
    assert_close(shifted / shifted.sum(-1, keepdim=True), cam_naive(x)[1])
    spread = torch.randn(1, 4, 8, 8) * 30
    a = spread.reshape(1, 4, -1)
    energy = a @ a.transpose(1, 2)
    assert not torch.isfinite(torch.exp(energy.amax(-1, keepdim=True) - energy)).all()
    s = cam_naive(spread)[1]
    assert torch.isfinite(s).all() and torch.allclose(s.sum(-1), torch.ones(1, 4))


def test_attention_rows_are_distributions_and_pictures_change_no_state():
    pam = randomized(PositionAttention(16), 2).train()
    x = torch.randn(2, 16, 3, 5)
    s = pam.attention_maps(x)["position"]
    assert s.shape == (2, 15, 15) and torch.allclose(s.sum(-1), torch.ones(2, 15)) and (s >= 0).all()
    assert pam.training
    c = ChannelSelfAttention(16).attention_maps(x)["channel"]
    assert c.shape == (2, 16, 16) and torch.allclose(c.sum(-1), torch.ones(2, 16))


def test_pam_is_equivariant_to_permuting_positions_and_cam_to_permuting_channels():
    torch.manual_seed(0)
    x = torch.randn(2, 16, 4, 5, dtype=torch.float64)
    pam = randomized(PositionAttention(16).double(), 3)
    perm = torch.randperm(20)
    flat = x.flatten(2)
    y_perm = pam(flat[:, :, perm].reshape(2, 16, 4, 5)).flatten(2)
    assert_close(y_perm, pam(x).flatten(2)[:, :, perm])
    cam = randomized(ChannelSelfAttention(16).double(), 3)
    cperm = torch.randperm(16)
    assert_close(cam(x[:, cperm]), cam(x)[:, cperm])


@pytest.mark.parametrize("name", ["danet_pam", "danet_cam"])
def test_gradcheck_float64(name):
    block = randomized(create_block(name, 8).double(), 4)
    x = torch.randn(2, 8, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(block, (x,), eps=1e-6, atol=1e-5, rtol=1e-3)
    block(x).sum().backward()
    assert block.gamma.grad is not None and block.gamma.grad.abs() > 0


@pytest.mark.parametrize("factory", [lambda: PositionAttention(16), lambda: ChannelSelfAttention(16)])
def test_bad_input_names_the_block_and_the_shape(factory):
    block = factory()
    for x in (torch.randn(2, 8, 4, 4), torch.randn(2, 16, 4)):
        with pytest.raises(ValueError, match=type(block).__name__) as err:
            block(x)
        assert str(tuple(x.shape)) in str(err.value)


def test_bad_arguments():
    with pytest.raises(ValueError, match="PositionAttention"):
        PositionAttention(16, implementation="fast")
    with pytest.raises(ValueError, match="PositionAttention"):
        PositionAttention(4, reduction=8)
    with pytest.raises(ValueError, match="ChannelSelfAttention"):
        ChannelSelfAttention(0)


# --------------------------------------------------------------------------- CAM: the paper's form and the code's
def cam_paper_reference(block: ChannelSelfAttention, x: torch.Tensor) -> torch.Tensor:
    """CAM as the paper's Eq. 3 writes it, by hand: S_ij = exp(E_ij) / Σ_k exp(E_ik), out = S·A, y = γ·out + x."""
    b, c, h, w = x.shape
    a = x.reshape(b, c, h * w)
    energy = torch.einsum("bin,bjn->bij", a, a)
    s = torch.exp(energy - energy.amax(-1, keepdim=True))  # the row shift cancels in the ratio
    s = s / s.sum(-1, keepdim=True)
    return (block.gamma * torch.einsum("bij,bjn->bin", s, a) + a).reshape(b, c, h, w)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 3), st.integers(1, 5), st.integers(1, 5), st.integers(2, 12), st.integers(0, 99))
def test_cam_paper_form_equals_eq3_and_the_code_form_the_code(b, h, w, c, seed):
    x = torch.randn(b, c, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    paper = randomized(ChannelSelfAttention(c, form="paper").double(), seed)
    code = randomized(ChannelSelfAttention(c, form="code").double(), seed)
    assert_close(paper(x), cam_paper_reference(paper, x), rtol=1e-6, atol=1e-6)
    assert_close(code(x), cam_reference(code, x), rtol=1e-6, atol=1e-6)
    a = x.reshape(b, c, -1)
    energy = a @ a.transpose(1, 2)
    assert_close(paper.attention_maps(x)["channel"], torch.softmax(energy, -1), rtol=1e-10, atol=1e-12)
    assert_close(code.attention_maps(x)["channel"], torch.softmax(-energy, -1), rtol=1e-10, atol=1e-12)


def test_cam_forms_differ_and_the_default_is_the_code():
    x = torch.randn(2, 8, 4, 4, generator=torch.Generator().manual_seed(0))
    assert ChannelSelfAttention(8).form == "code"
    paper = ChannelSelfAttention(8, form="paper").attention_maps(x)["channel"]
    code = ChannelSelfAttention(8).attention_maps(x)["channel"]
    assert not torch.allclose(paper, code)
    # the paper's form puts each channel's largest weight on itself (E_ii = |A_i|² is the row's largest for these
    # inputs' near-orthogonal channels); the code's form puts its smallest there
    assert (paper.diagonal(dim1=1, dim2=2) == paper.amax(-1)).all()
    assert (code.diagonal(dim1=1, dim2=2) == code.amin(-1)).all()
    assert "form='paper'" in repr(ChannelSelfAttention(8, form="paper"))
    with pytest.raises(ValueError, match="ChannelSelfAttention.*form"):
        ChannelSelfAttention(8, form="Paper")
    with pytest.raises(ValueError, match="cam_naive"):
        cam_naive(x, form="both")


def test_cam_paper_form_gradcheck():
    block = randomized(ChannelSelfAttention(6, form="paper").double(), 1)
    x = torch.randn(2, 6, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(block, (x,), eps=1e-6, atol=1e-5, rtol=1e-3)
