"""The block contract, checked for EVERY registered block (issue 16).

Every name in ``list_blocks()`` — today's and any block registered later — is built with
``create_block(name, C)`` and run through the conditions learners and notebooks produce. For each one the
block must either return the correct output or raise a ``ValueError`` whose message names the block (its
class) and the input's shape; any other exception, a NaN, or a silently different answer fails.

* wrong rank, wrong channels, wrong dtype (float64 into a float32 block, integers);
* an empty batch (train and eval: no state may change, and later calls stay finite);
* batch 1 in train and eval mode; 1×1, thin and odd non-square maps;
* channels_last and non-contiguous input (equal to the contiguous result);
* bf16 autocast (float32 weights, lower-precision activations: what ``fit`` uses on CPUs with bf16);
* float64 ``gradcheck``, determinism, and — for blocks with ``implementation="efficient" | "naive"`` —
  the same output and the same ``count_flops`` for both forms (exact documented gaps where the
  efficient form re-associates the products).

A block that deliberately detaches part of its graph says so in a ``stops_gradient`` class attribute;
its gradient is then checked with respect to the parameters that get one.

Tiny sizes (C = 16, maps up to 6×5) keep the whole file at a few seconds on two cores.
"""
from __future__ import annotations

import copy
import inspect

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from attncourse.blocks import create_block, get_block_spec, list_blocks
from attncourse.cost import count_flops

C = 16
BLOCKS = list_blocks()
TRAIN_EVAL = pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
TOL = dict(rtol=1e-4, atol=1e-4)  # float32: different kernels (channels_last, strided) round differently


def _randomize(block: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and BN statistics: zero-initialised gates (BN γ = 0, γ-scalars) would hide bugs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in block.parameters():
            p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.3)
        for m in block.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return block


def make(name: str, train: bool = False, seed: int = 0, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    return _randomize(create_block(name, C, **kwargs), seed).train(train)


def run(block: nn.Module, x: torch.Tensor):
    """``("ok", y)`` or ``("error", message)``; any exception other than ``ValueError`` propagates (and fails)."""
    try:
        return "ok", block(x)
    except ValueError as err:
        return "error", str(err)


def assert_names_block_and_shape(block: nn.Module, x: torch.Tensor, message: str) -> None:
    assert type(block).__name__ in message, f"the error does not name the block: {message!r}"
    assert str(tuple(x.shape)) in message, f"the error does not give the shape {tuple(x.shape)}: {message!r}"


def state(block: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in block.state_dict().items()}


def assert_same_float_state(before: dict, block: nn.Module) -> None:
    """Parameters and float buffers bit-identical (BatchNorm's integer batch counter may count the call)."""
    for key, value in block.state_dict().items():
        if value.is_floating_point():
            assert torch.equal(value, before[key]), f"{key} changed"


def batch(n: int, h: int, w: int, seed: int = 1, channels: int = C) -> torch.Tensor:
    return torch.randn(n, channels, h, w, generator=torch.Generator().manual_seed(seed))


def test_every_registered_block_is_checked():
    assert len(BLOCKS) >= 30 and "none" in BLOCKS and "se" in BLOCKS and "nonlocal" in BLOCKS


# --------------------------------------------------------------------------- wrong input
@pytest.mark.parametrize("name", BLOCKS)
@TRAIN_EVAL
def test_wrong_rank_and_wrong_channels_are_named_value_errors(name, train):
    block = make(name, train)
    for x in (torch.randn(2, C, 5), torch.randn(C, 5, 4), torch.randn(2, C, 5, 4, 3),
              batch(2, 5, 4, channels=C + 1), batch(2, 5, 4, channels=C // 2)):
        with pytest.raises(ValueError) as err:
            block(x)
        assert_names_block_and_shape(block, x, str(err.value))


@pytest.mark.parametrize("name", BLOCKS)
def test_float64_input_to_a_float32_block(name):
    """A named ValueError (the documented contract) — or, for a block without weights, the float32 answer."""
    block = make(name)
    x = batch(2, 5, 4)
    outcome, result = run(block, x.double())
    if outcome == "error":
        assert_names_block_and_shape(block, x, result)
        assert "float64" in result and "float32" in result
    else:
        assert result.dtype == torch.float64
        assert_close(result.float(), block(x), **TOL)


@pytest.mark.parametrize("name", BLOCKS)
def test_integer_and_non_tensor_input_are_named_value_errors(name):
    block = make(name)
    x = torch.randint(0, 5, (2, C, 5, 4))
    with pytest.raises(ValueError) as err:
        block(x)
    assert_names_block_and_shape(block, x, str(err.value))
    with pytest.raises(ValueError, match=type(block).__name__):
        block(x.tolist())


@pytest.mark.parametrize("name", BLOCKS)
def test_bf16_autocast_runs_with_float32_weights(name):
    """``fit`` trains under bf16 autocast: weights stay float32 while activations are bf16 — no dtype error."""
    block = make(name)
    x = batch(2, 6, 5)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for inp in (x, x.bfloat16()):
            y = block(inp)
            assert y.shape == x.shape and torch.isfinite(y).all()


# --------------------------------------------------------------------------- empty and tiny batches and maps
@pytest.mark.parametrize("name", BLOCKS)
@TRAIN_EVAL
@pytest.mark.filterwarnings("ignore:var\\(\\):UserWarning")  # se_std on zero samples: an empty result, and a warning
def test_empty_batch_changes_nothing(name, train):
    block = make(name, train)
    reference = copy.deepcopy(block)
    before = state(block)
    x = batch(0, 5, 4)
    outcome, result = run(block, x)
    if outcome == "error":
        assert_names_block_and_shape(block, x, result)
    else:
        assert result.shape == x.shape
    assert_same_float_state(before, block)
    for sub, ref in zip(block.modules(), reference.modules()):
        assert sub.training == ref.training
    # and the block still works, exactly as a copy that never saw the empty batch
    block.eval(), reference.eval()
    x = batch(2, 5, 4)
    y = block(x)
    assert torch.isfinite(y).all()
    assert torch.equal(y, reference(x))


@pytest.mark.parametrize("name", BLOCKS)
@TRAIN_EVAL
@pytest.mark.parametrize("n,h,w", [(1, 1, 1), (1, 5, 3), (1, 3, 5), (2, 1, 1), (2, 1, 6), (3, 5, 3), (2, 4, 2)])
def test_small_batches_and_odd_maps_work_or_raise_a_named_error(name, train, n, h, w):
    block = make(name, train)
    x = batch(n, h, w)
    outcome, result = run(block, x)
    if outcome == "error":
        assert_names_block_and_shape(block, x, result)
        if not train:
            assert (h, w) == (1, 1) or min(h, w) < 2, f"eval mode refused an ordinary map: {result}"
        return
    assert result.shape == x.shape and result.dtype == x.dtype
    assert torch.isfinite(result).all()
    if not train:  # eval: every sample is computed on its own, so a batch equals its samples stacked
        parts = [block(x[i:i + 1]) for i in range(n)]
        assert_close(result, torch.cat(parts), **TOL)


@pytest.mark.parametrize("name", BLOCKS)
def test_batch_one_1x1_in_train_mode_is_a_named_error_or_works(name):
    """The case that used to fail inside BatchNorm with torch's own message (11 blocks)."""
    block = make(name, train=True)
    x = batch(1, 1, 1)
    outcome, result = run(block, x)
    if outcome == "error":
        assert_names_block_and_shape(block, x, result)
    else:
        assert result.shape == x.shape and torch.isfinite(result).all()


# --------------------------------------------------------------------------- memory layouts
def _layouts(x: torch.Tensor) -> dict[str, torch.Tensor]:
    n, c, h, w = x.shape
    wide = torch.zeros(n, c, h, 2 * w)
    wide[..., ::2] = x
    return {
        "channels_last": x.contiguous(memory_format=torch.channels_last),
        "transposed": x.transpose(2, 3).contiguous().transpose(2, 3),
        "strided": wide[..., ::2],
        "channel_slice": torch.cat([x, x], dim=1)[:, :c],  # a view: the batch stride is 2·C·H·W
        "batch_stride": torch.stack([x, x], dim=1)[:, 0],
    }


@pytest.mark.parametrize("name", BLOCKS)
@TRAIN_EVAL
def test_channels_last_and_non_contiguous_input_give_the_contiguous_result(name, train):
    block = make(name, train)
    x = batch(2, 6, 5)
    expected_block = copy.deepcopy(block)
    torch.manual_seed(5)  # the same dropout masks (ANN/OCNet) for every layout
    expected = expected_block(x)
    for label, variant in _layouts(x).items():
        assert torch.equal(variant, x)
        if label != "channels_last":
            assert not variant.is_contiguous(), label
        other = copy.deepcopy(block)
        torch.manual_seed(5)
        y = other(variant)
        assert_close(y, expected, **TOL, msg=lambda m: f"{label}: {m}")
        for (key, a), b in zip(other.state_dict().items(), expected_block.state_dict().values()):
            if a.is_floating_point():
                assert_close(a, b, **TOL, msg=lambda m: f"{label}, {key}: {m}")  # BN statistics, EMA bases


# --------------------------------------------------------------------------- gradients and determinism
@pytest.mark.parametrize("name", BLOCKS)
def test_float64_gradcheck(name):
    block = make(name).double().eval()
    x = batch(2, 3, 2).double().requires_grad_(True)
    stops = getattr(type(block), "stops_gradient", None)
    if not stops:
        assert torch.autograd.gradcheck(block, (x,), eps=1e-6, atol=1e-5, rtol=1e-3)
        return
    # the block detaches part of its graph on purpose: check the parameters that do get a gradient
    block(x).sum().backward()
    named = [(k, p) for k, p in block.named_parameters() if p.grad is not None]
    assert named, f"{name}: stops_gradient ({stops}) but no parameter gets a gradient"
    keys = [k for k, _ in named]
    x = x.detach()

    def f(*params):
        return torch.func.functional_call(block, dict(zip(keys, params)), (x,))

    params = tuple(p.detach().clone().requires_grad_(True) for _, p in named)
    assert torch.autograd.gradcheck(f, params, eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=True)


@pytest.mark.parametrize("name", BLOCKS)
def test_deterministic(name):
    a, b = make(name, seed=3), make(name, seed=3)
    for (key, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), key
    x = batch(2, 6, 5)
    y = a(x)
    assert torch.equal(a(x), y) and torch.equal(b(x), y)
    torch.manual_seed(11)
    fresh = create_block(name, C)
    torch.manual_seed(11)
    assert all(torch.equal(u, v) for u, v in zip(fresh.state_dict().values(), create_block(name, C).state_dict().values()))


# --------------------------------------------------------------------------- efficient vs naive
def _has_two_forms(name: str) -> bool:
    return "implementation" in inspect.signature(get_block_spec(name).factory).parameters


TWO_FORMS = [n for n in BLOCKS if _has_two_forms(n)]


def _flop_gap(name: str, block: nn.Module, b: int, n: int, m: int) -> int:
    """``count_flops(naive) − count_flops(efficient)``: 0 (the same products; fused SDPA counted by formula),
    except where the efficient form computes something cheaper or extra (documented in ``nonlocal_.py``)."""
    d = getattr(block, "inner_channels", None)
    if name == "nonlocal_dot":  # θ(φᵀg)/M: [d, M]·[M, d] and [d, d]·[d, N] instead of two N×M products
        return 2 * b * n * m * (d + d) - (2 * b * d * m * d + 2 * b * d * d * n)
    if name == "nonlocal_concat":  # ReLU(a_i + b_j) instead of a 1×1 conv over the [2d, N, M] concatenation
        return (2 * b * 2 * d * n * m + 2 * b * n * m * d) - (2 * b * d * n + 2 * b * d * m + 2 * b * d * n * m)
    if name == "dnl":  # the unary term is one extra context vector u·gᵀ, [d, N]·[N, 1]
        return -2 * b * d * n
    return 0


def test_blocks_with_two_forms_are_found():
    assert {"nonlocal", "nonlocal_sub", "dnl", "ann", "ocnet"} <= set(TWO_FORMS)


@pytest.mark.parametrize("name", TWO_FORMS)
@pytest.mark.parametrize("shape", [(2, 6, 5), (1, 3, 7)])
def test_efficient_and_naive_forms_agree_in_output_and_flops(name, shape):
    eff, naive = make(name, implementation="efficient"), make(name, implementation="naive")
    naive.load_state_dict(eff.state_dict())
    x = batch(*shape)
    assert_close(eff(x), naive(x), **TOL)
    assert_close(eff.double()(x.double()), naive.double()(x.double()), rtol=1e-9, atol=1e-10)
    eff.float(), naive.float()
    b, h, w = shape
    keys = getattr(eff, "key_size", lambda h, w: (h, w))(h, w)
    gap = _flop_gap(name, eff, b, h * w, keys[0] * keys[1])
    assert count_flops(naive, x) - count_flops(eff, x) == gap
    assert count_flops(eff, x) > 0


# --------------------------------------------------------------------------- two-input (fusion) blocks
# Blocks registered with ``inputs=2`` (AFF, iAFF) take ``forward(x, y)`` with two maps of the same shape. The same
# contract, for pairs: the right output or a ValueError naming the block and the offending shape; batch 1 in eval
# mode; odd, non-square maps; gradients to both inputs and every parameter; and the block comes out of a network's
# initialisation (``attncourse.models.init_backbone``) exactly as ``reset_parameters`` makes it.
PAIR_BLOCKS = list_blocks(inputs=2)


def pair(n: int, h: int, w: int, seed: int = 1, channels: int = C) -> tuple[torch.Tensor, torch.Tensor]:
    return batch(n, h, w, seed, channels), batch(n, h, w, seed + 100, channels)


def run_pair(block: nn.Module, x: torch.Tensor, y: torch.Tensor):
    try:
        return "ok", block(x, y)
    except ValueError as err:
        return "error", str(err)


def test_every_block_is_listed_once_as_one_or_two_input():
    assert PAIR_BLOCKS and {"aff", "iaff"} <= set(PAIR_BLOCKS)
    assert sorted(BLOCKS + PAIR_BLOCKS) == list_blocks(inputs=None)
    assert all(get_block_spec(n).inputs == 2 for n in PAIR_BLOCKS) and all(get_block_spec(n).inputs == 1 for n in BLOCKS)


@pytest.mark.parametrize("name", PAIR_BLOCKS)
@TRAIN_EVAL
def test_pair_wrong_input_is_a_named_value_error(name, train):
    block = make(name, train)
    x, _ = pair(2, 5, 4)
    bad = [torch.randn(2, C, 5), torch.randn(2, C, 5, 4, 3), batch(2, 5, 4, channels=C + 1), batch(2, 5, 4, channels=C // 2),
           batch(2, 5, 3), batch(3, 5, 4), batch(2, 4, 5), torch.randint(0, 5, (2, C, 5, 4)), x.double()]
    for other in bad:
        for a, b in ((x, other), (other, x)):
            with pytest.raises(ValueError) as err:
                block(a, b)
            assert_names_block_and_shape(block, other, str(err.value))
    with pytest.raises(ValueError, match=type(block).__name__):
        block(x.tolist(), x)


@pytest.mark.parametrize("name", PAIR_BLOCKS)
@TRAIN_EVAL
@pytest.mark.parametrize("n,h,w", [(1, 1, 1), (1, 5, 3), (1, 3, 5), (2, 1, 1), (2, 1, 6), (3, 5, 3), (2, 4, 2)])
def test_pair_small_batches_and_odd_maps_work_or_raise_a_named_error(name, train, n, h, w):
    block = make(name, train)
    x, y = pair(n, h, w)
    outcome, result = run_pair(block, x, y)
    if outcome == "error":
        assert_names_block_and_shape(block, x, result)
        assert train and n == 1, f"refused an ordinary input: {result}"
        return
    assert result.shape == x.shape and result.dtype == x.dtype and torch.isfinite(result).all()
    if not train:
        parts = [block(x[i:i + 1], y[i:i + 1]) for i in range(n)]
        assert_close(result, torch.cat(parts), **TOL)


@pytest.mark.parametrize("name", PAIR_BLOCKS)
@TRAIN_EVAL
def test_pair_empty_batch_changes_nothing(name, train):
    block = make(name, train)
    before = state(block)
    x, y = pair(0, 5, 4)
    outcome, result = run_pair(block, x, y)
    if outcome == "error":
        assert_names_block_and_shape(block, x, result)
    else:
        assert result.shape == x.shape
    assert_same_float_state(before, block)


@pytest.mark.parametrize("name", PAIR_BLOCKS)
@TRAIN_EVAL
def test_pair_channels_last_and_non_contiguous_input_give_the_contiguous_result(name, train):
    block = make(name, train)
    x, y = pair(2, 6, 5)
    expected = copy.deepcopy(block)(x, y)
    for label, variant in _layouts(x).items():
        assert_close(copy.deepcopy(block)(variant, y), expected, **TOL, msg=lambda m: f"x {label}: {m}")
        assert_close(copy.deepcopy(block)(x, _layouts(y)[label]), expected, **TOL, msg=lambda m: f"y {label}: {m}")


@pytest.mark.parametrize("name", PAIR_BLOCKS)
def test_pair_bf16_autocast_runs_with_float32_weights(name):
    block = make(name)
    x, y = pair(2, 6, 5)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = block(x.bfloat16(), y.bfloat16())
    assert out.shape == x.shape and torch.isfinite(out).all()


@pytest.mark.parametrize("name", PAIR_BLOCKS)
def test_pair_float64_gradcheck_and_a_gradient_to_every_parameter(name):
    block = make(name).double().eval()
    x, y = (t.double().requires_grad_(True) for t in pair(2, 3, 2))
    assert torch.autograd.gradcheck(block, (x, y), eps=1e-6, atol=1e-5, rtol=1e-3)
    # In eval mode: in training mode a conv bias right before a BatchNorm is cancelled by the batch mean, so its
    # gradient is 0 up to rounding (a property of BN, not a missing path) and its sign would depend on the kernels.
    block.eval()(x, y).square().sum().backward()
    missing = [k for k, p in block.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reaches {missing}"


@pytest.mark.parametrize("name", PAIR_BLOCKS)
def test_pair_deterministic(name):
    a, b = make(name, seed=3), make(name, seed=3)
    x, y = pair(2, 6, 5)
    assert torch.equal(a(x, y), b(x, y)) and torch.equal(a(x, y), a(x, y))


class _FusedResidual(nn.Module):
    """A residual unit whose add is the fusion block: ``fuse(conv-BN(x), x)``, as the authors' AFF-ResNet places it."""

    def __init__(self, name: str, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.fuse = create_block(name, channels)

    def forward(self, x):
        return self.fuse(self.bn(self.conv(x)), x)


@pytest.mark.parametrize("name", PAIR_BLOCKS)
def test_pair_init_is_the_same_standalone_and_inside_a_network(name):
    """``init_backbone`` Kaiming-initialises every conv (the block's too), then calls ``reset_parameters`` on every
    block module — parents and their children. Tensor by tensor, the fused block must come out as a standalone one:
    the same deterministic tensors, and the random ones from the same seeded draw (nothing of the backbone's init
    survives ``reset_parameters``)."""
    from attncourse.models import init_backbone

    net = nn.Sequential(_FusedResidual(name, C), _FusedResidual(name, C))
    init_backbone(net)
    standalone = create_block(name, C)
    for unit in net:
        inside = unit.fuse
        random_keys = {k for k, m in standalone.named_modules() if isinstance(m, nn.Conv2d)}
        for key, value in inside.state_dict().items():
            if key.rsplit(".", 1)[0] in random_keys and key.endswith("weight"):
                fan_in, fan_out = value.shape[1], value.shape[0]  # 1×1 convs: Xavier-uniform's bound, not Kaiming's
                assert value.abs().max() <= (6 / (fan_in + fan_out)) ** 0.5, key
            else:
                assert torch.equal(value, standalone.state_dict()[key]), key
        with torch.no_grad():
            for p in inside.parameters():
                p.fill_(float("nan"))
        for block in (inside, standalone):
            torch.manual_seed(7)
            for m in block.modules():  # as init_backbone does: the block, then its children from attncourse.blocks
                if m.__module__.startswith("attncourse.blocks") and hasattr(m, "reset_parameters"):
                    m.reset_parameters()
        for (key, a), b in zip(inside.state_dict().items(), standalone.state_dict().values()):
            assert torch.equal(a, b), key
