"""count_flops counts scaled_dot_product_attention by formula: the same under every SDPA backend and torch version,
so a block's efficient (SDPA) path costs exactly what its explicit-matrix (naive) path costs."""
import inspect
import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from attncourse.blocks import create_block, get_block_spec, list_blocks
from attncourse.cost import count_flops

SDPBackend = pytest.importorskip("torch.nn.attention").SDPBackend
sdpa_kernel = pytest.importorskip("torch.nn.attention").sdpa_kernel

# registered blocks whose efficient path is F.scaled_dot_product_attention and whose naive path is the same
# computation with the explicit attention matrix (the other modes re-associate: different algorithms)
SDPA_BLOCKS = ("nonlocal", "nonlocal_gaussian", "nonlocal_sub", "ann", "ocnet", "danet_pam")
BACKENDS = ("MATH", "FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "OVERRIDEABLE")
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


def sdpa_formula(q_shape, k_shape, v_shape) -> int:
    """2·L·S·E (q kᵀ) + 2·L·S·Ev (attention · v) per batch×head."""
    *batch, length, e = q_shape
    s, ev = k_shape[-2], v_shape[-1]
    return math.prod(batch) * (2 * length * s * e + 2 * length * s * ev)


def _sdpa(qkv):
    return F.scaled_dot_product_attention(*qkv)


def _qkv(q_shape, k_shape, v_shape, device="cpu", dtype=torch.float32, requires_grad=False):
    gen = torch.Generator().manual_seed(0)
    return tuple(torch.randn(s, generator=gen).to(device, dtype).requires_grad_(requires_grad)
                 for s in (q_shape, k_shape, v_shape))


def _pair(name: str, channels: int = 16):
    """(efficient, naive) instances of block ``name`` with the same weights."""
    eff = create_block(name, channels).eval()
    naive = create_block(name, channels, implementation="naive").eval()
    naive.load_state_dict(eff.state_dict())
    return eff, naive


def test_sdpa_blocks_list_is_complete():
    """Every registered block with an ``implementation`` switch is either here or deliberately left out."""
    switchable = {n for n in list_blocks()
                  if "implementation" in inspect.signature(get_block_spec(n).factory).parameters}
    not_sdpa = {"condconv", "dynamic_conv"}  # their switch is a batched grouped conv vs a per-sample loop
    assert set(SDPA_BLOCKS) | {"dnl", "nonlocal_dot", "nonlocal_concat"} | not_sdpa == switchable


@pytest.mark.parametrize("name", SDPA_BLOCKS)
@pytest.mark.parametrize("backward", [False, True])
def test_efficient_block_counts_as_naive(name, backward):
    eff, naive = _pair(name)
    x = torch.randn(2, 16, 6, 8)
    assert count_flops(eff, x, backward=backward) == count_flops(naive, x, backward=backward)


@pytest.mark.parametrize("backward", [False, True])
def test_dnl_efficient_differs_from_naive_by_its_unary_product_only(backward):
    """DNL's efficient path adds the unary term as a separate ``[B, d, N] @ [B, N, 1]`` product; the naive one
    folds it into the pairwise matrix (``(P + u) gᵀ``). Everything else, attention included, counts the same."""
    eff, naive = _pair("dnl")
    b, c, h, w = 2, 16, 6, 8
    x = torch.randn(b, c, h, w)
    unary = 2 * b * eff.inner_channels * h * w
    # backward: grad of g (already in the naive (P + u) gᵀ) and of u are the extra 2 products
    expected = unary * 3 if backward else unary
    assert count_flops(eff, x, backward=backward) - count_flops(naive, x, backward=backward) == expected


def test_nonlocal_net_efficient_counts_as_naive():
    """The notebook's figure: the whole Non-local net on one long_range_pairs image, efficient == naive."""
    from attncourse.experiments.nonlocal_ import ARMS, nonlocal_net
    from attncourse.data import make_task

    task = make_task("long_range_pairs", "smoke")
    sample = task.float_images(task.x_test[:1])
    block_name, kw = ARMS["nonlocal"]
    net = nonlocal_net(task, block_name, **kw).eval()
    eff = count_flops(net, sample)
    for m in net.modules():
        if hasattr(m, "implementation"):
            m.implementation = "naive"
    assert count_flops(net, sample) == eff


@pytest.mark.parametrize("shapes", [
    ((2, 3, 16, 8), (2, 3, 12, 8), (2, 3, 12, 8)),     # E == Ev: the CPU flash kernel runs
    ((2, 3, 16, 8), (2, 3, 12, 8), (2, 3, 12, 5)),     # E != Ev: only the math fallback (bmm) runs
    ((4, 10, 6), (4, 7, 6), (4, 7, 6)),                # no head dimension
    ((1, 1, 64, 4), (1, 1, 64, 4), (1, 1, 64, 4)),
])
def test_bare_sdpa_matches_formula(shapes):
    fwd = sdpa_formula(*shapes)
    with torch.no_grad():
        assert count_flops(_sdpa, _qkv(*shapes)) == fwd
    assert count_flops(_sdpa, _qkv(*shapes, requires_grad=True), backward=True) == 3 * fwd  # backward = 2× forward


def test_sdpa_counts_once_with_an_explicit_scale_and_mask():
    shapes = ((2, 2, 9, 8), (2, 2, 9, 8), (2, 2, 9, 8))
    mask = torch.ones(9, 9, dtype=torch.bool).tril()
    with torch.no_grad():
        n = count_flops(lambda qkv: F.scaled_dot_product_attention(*qkv, attn_mask=mask, scale=0.3), _qkv(*shapes))
    assert n == sdpa_formula(*shapes)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("backward", [False, True])
def test_sdpa_count_is_the_same_under_every_backend(device, backend, backward):
    if getattr(SDPBackend, backend, None) is None:
        pytest.skip(f"SDPBackend.{backend} is not in this torch")
    shapes = ((2, 4, 32, 16), (2, 4, 24, 16), (2, 4, 24, 16))
    dtype = torch.float16 if device == "cuda" else torch.float32  # the fused CUDA kernels need half precision
    qkv = _qkv(*shapes, device=device, dtype=dtype, requires_grad=backward)
    try:  # does this backend run here at all?
        with warnings.catch_warnings(), sdpa_kernel(getattr(SDPBackend, backend)):
            warnings.simplefilter("ignore")
            _sdpa(qkv)
    except RuntimeError:
        pytest.skip(f"SDPBackend.{backend} cannot run on {device} for these tensors")
    with warnings.catch_warnings(), sdpa_kernel(getattr(SDPBackend, backend)):
        warnings.simplefilter("ignore")
        n = count_flops(_sdpa, qkv, backward=backward)
    assert n == sdpa_formula(*shapes) * (3 if backward else 1)


@pytest.mark.parametrize("backward", [False, True])
def test_nonlocal_block_counts_the_same_under_math_and_flash(backward):
    eff, _ = _pair("nonlocal")
    x = torch.randn(2, 16, 6, 8)
    counts = {}
    for backend in ("MATH", "FLASH_ATTENTION"):
        with sdpa_kernel(getattr(SDPBackend, backend)):
            counts[backend] = count_flops(eff, x, backward=backward)
    assert counts["MATH"] == counts["FLASH_ATTENTION"]
