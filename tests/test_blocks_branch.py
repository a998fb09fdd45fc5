"""Branch attention (module 07): SK, Highway, CondConv, DynamicConv, ResNeSt split attention.

Equivalence with timm's ``SelectiveKernel``, ``CondConv2d`` and ``SplitAttn`` under explicit weight mappings
(float64), from-scratch references written from the papers' formulas, the efficient batched kernels against a
per-sample loop, dilation and groups honoured, the temperature anneal of Dynamic Convolution (called directly and
driven by ``fit``), property tests over shapes, and named errors. The generic contract (wrong rank, empty batch,
channels_last, autocast, gradcheck, …) runs for these blocks in ``tests/test_block_contract.py``.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.testing import assert_close

from attncourse.blocks import create_block, get_block_spec, list_blocks
from attncourse.blocks.branch import (CondConv2d, DynamicConv2d, Highway, RadixSoftmax, SelectiveKernel, SplitAttention,
                                      mixture_conv, per_sample_conv_loop)

timm_layers = pytest.importorskip("timm.layers")

BRANCH = ["sk", "highway", "condconv", "dynamic_conv", "split_attn"]
F64 = dict(rtol=1e-10, atol=1e-10)


def _randomize(module: nn.Module, std: float = 0.3, seed: int = 0) -> nn.Module:
    """Random weights everywhere and non-trivial BN statistics, so a wrong formula cannot pass by accident."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * std)
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return module


def _x(*shape, seed: int = 1, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _bn_eval(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


# --------------------------------------------------------------------------- registry and papers
def test_registered_in_the_branch_family_with_their_papers():
    assert set(BRANCH) == set(list_blocks("branch"))
    for name, arxiv in [("sk", "1903.06586"), ("highway", "1505.00387"), ("condconv", "1904.04971"),
                        ("dynamic_conv", "1912.03458"), ("split_attn", "2004.08955")]:
        spec = get_block_spec(name)
        assert spec.placement == "residual" and arxiv in spec.paper
    import attncourse.blocks.branch as branch

    for arxiv in ("1903.06586", "1505.00387", "1904.04971", "1912.03458", "2004.08955"):
        assert arxiv in branch.__doc__
    assert isinstance(create_block("sk", 32), SelectiveKernel)
    assert isinstance(create_block("dynamic_conv", 16), DynamicConv2d)


# --------------------------------------------------------------------------- Selective Kernel
def _sk_from_scratch(block: SelectiveKernel, x: torch.Tensor) -> torch.Tensor:
    """The SK unit written out from the paper (eval mode): split → fuse → select, every op explicit."""
    m = block.num_branches
    parts = torch.chunk(x, m, 1) if block.split_input else [x] * m
    u = []
    for i, (branch, xi) in enumerate(zip(block.branches, parts)):
        conv, bn = branch[0], branch[1]
        d = block.dilation * (i + 1)
        u.append(F.relu(_bn_eval(bn, F.conv2d(xi, conv.weight, None, block.stride, d, d, block.groups))))
    s = sum(u).mean((2, 3))  # [N, C]
    z = F.relu(_bn_eval(block.attn.bn, (s @ block.attn.fc_reduce.weight[:, :, 0, 0].T)[..., None, None]))
    logits = z[:, :, 0, 0] @ block.attn.fc_select.weight[:, :, 0, 0].T  # [N, M·C]
    a = torch.softmax(logits.reshape(len(x), m, -1), dim=1)
    return sum(a[:, i, :, None, None] * u[i] for i in range(m))


@pytest.mark.parametrize("kw,shape", [
    ({}, (2, 32, 7, 5)),
    ({"groups": 4, "dilation": 2}, (3, 32, 9, 6)),
    ({"num_branches": 3, "groups": 8, "reduction": 4}, (2, 64, 5, 8)),
    ({"split_input": True, "groups": 2}, (2, 32, 6, 6)),
    ({"stride": 2, "out_channels": 48, "groups": 16}, (2, 32, 9, 7)),
])
def test_sk_equals_its_from_scratch_formula(kw, shape):
    block = _randomize(SelectiveKernel(shape[1], **kw)).double().eval()
    assert_close(block(_x(*shape)), _sk_from_scratch(block, _x(*shape)), **F64)


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("channels,branches,groups,dilation,split,hw", [
    (32, 2, 1, 1, False, (7, 5)),
    (64, 2, 32, 1, False, (6, 9)),   # SKNet-50's 32 groups
    (32, 3, 4, 2, False, (10, 7)),   # kernels 3, 5, 7 as dilations 2, 4, 6
    (32, 2, 2, 1, True, (5, 5)),     # timm's default input split
])
def test_sk_equals_timm_selective_kernel(train, channels, branches, groups, dilation, split, hw):
    ours = SelectiveKernel(channels, num_branches=branches, groups=groups, dilation=dilation, split_input=split)
    kernels = [3 + 2 * m for m in range(branches)]  # timm: 3×3 with dilation (k−1)/2 · dilation ("keep_3x3")
    ref = timm_layers.SelectiveKernel(channels, kernel_size=kernels, dilation=dilation, groups=groups,
                                      rd_channels=ours.reduced_channels, split_input=split)
    _randomize(ref, seed=2)
    mapping = {}
    for m in range(branches):
        mapping[f"branches.{m}.0.weight"] = f"paths.{m}.conv.weight"
        for s in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            mapping[f"branches.{m}.1.{s}"] = f"paths.{m}.bn.{s}"
    for s in ("fc_reduce.weight", "fc_select.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var",
              "bn.num_batches_tracked"):
        mapping[f"attn.{s}"] = f"attn.{s}"
    theirs = ref.state_dict()
    assert set(mapping) == set(ours.state_dict()) and set(mapping.values()) == set(theirs)
    ours.load_state_dict({k: theirs[v] for k, v in mapping.items()})
    for m, path in enumerate(ref.paths):  # the same dilations and groups, not just the same numbers
        assert ours.branches[m][0].dilation == path.conv.dilation == (dilation * (m + 1),) * 2
        assert ours.branches[m][0].groups == path.conv.groups == groups
    ours.double().train(train), ref.double().train(train)
    x = _x(3, channels, *hw)
    assert_close(ours(x), ref(x), **F64)
    if train:  # the same batch statistics were used: the running averages moved identically
        for k, v in mapping.items():
            assert_close(ours.state_dict()[k], ref.state_dict()[v], **F64)


def test_sk_dilation_and_groups_change_the_answer():
    """A port that drops the dilation or the groups computes something else: the test above would see it."""
    torch.manual_seed(0)
    sk = _randomize(SelectiveKernel(32, groups=4)).double().eval()
    x = _x(2, 32, 9, 9)
    y = sk(x)
    assert sk.branches[0][0].weight.shape == (32, 8, 3, 3) and sk.dilations == (1, 2)
    no_dil = SelectiveKernel(32, groups=4).double().eval()
    no_dil.load_state_dict(sk.state_dict())
    no_dil.branches[1][0].dilation, no_dil.branches[1][0].padding = (1, 1), (1, 1)
    assert not torch.allclose(no_dil(x), y)
    assert SelectiveKernel(32, dilation=3).dilations == (3, 6)


def test_sk_weights_are_a_softmax_across_branches_and_the_output_their_mixture():
    sk = _randomize(SelectiveKernel(32, num_branches=3)).double().eval()
    x = _x(4, 32, 6, 7)
    a = sk.branch_weights(x)
    assert a.shape == (4, 3, 32, 1, 1) and (a > 0).all()
    assert_close(a.sum(1), torch.ones(4, 32, 1, 1, dtype=torch.float64), **F64)
    assert_close(sk(x), (sk.split(x) * a).sum(1), **F64)
    maps = sk.attention_maps(x)
    assert maps["branch_weights"].shape == (4, 3, 32)
    # the selection depends on the input (not one fixed mixture)
    assert (a[0] - a[1]).abs().max() > 1e-3


def test_sk_fuse_width_is_max_of_c_over_r_and_32():
    assert SelectiveKernel(64).reduced_channels == 32          # 64/16 = 4 → L = 32
    assert SelectiveKernel(1024).reduced_channels == 64        # 1024/16 = 64
    assert SelectiveKernel(64, min_reduced=2).reduced_channels == 4
    assert SelectiveKernel(64, reduced_channels=7).reduced_channels == 7


def test_sk_training_batch_of_one_is_a_named_error_and_eval_works():
    sk = SelectiveKernel(16)
    x = torch.randn(1, 16, 5, 3)
    with pytest.raises(ValueError, match=r"SelectiveKernel.*\(1, 16, 5, 3\)"):
        sk.train()(x)
    assert sk.eval()(x).shape == x.shape


# --------------------------------------------------------------------------- Highway
def test_highway_formula_and_carry_at_init():
    hw = _randomize(Highway(8)).double()
    x = _x(2, 8, 5, 6)
    t = torch.sigmoid(F.conv2d(x, hw.gate.weight, hw.gate.bias, padding=1))
    h = F.relu(F.conv2d(x, hw.transform.weight, hw.transform.bias, padding=1))
    assert_close(hw(x), h * t + x * (1 - t), **F64)
    assert_close(hw.attention_maps(x)["transform_gate"], t, **F64)
    # a strongly negative gate bias carries x through: y ≈ x
    carry = Highway(8, gate_bias=-30.0).double()
    assert_close(carry(x), x, rtol=0, atol=1e-10)
    # the default init: the gate starts mostly closed (T ≈ σ(−2) ≈ 0.12 on average)
    fresh = Highway(16)
    assert fresh.gate.bias.eq(-2.0).all()
    assert 0.05 < fresh.transform_gate(torch.randn(8, 16, 8, 8)).mean() < 0.25


def test_highway_rejects_even_kernels_and_non_finite_bias():
    with pytest.raises(ValueError, match="Highway: kernel_size must be odd"):
        Highway(8, kernel_size=4)
    with pytest.raises(ValueError, match="Highway: gate_bias"):
        Highway(8, gate_bias=float("nan"))


# --------------------------------------------------------------------------- CondConv
def _to_timm_condconv(ours: CondConv2d):
    ref = timm_layers.CondConv2d(ours.channels, ours.out_channels, ours.kernel_size, stride=ours.stride,
                                 padding=ours.padding, dilation=ours.dilation, groups=ours.groups,
                                 bias=ours.bias is not None, num_experts=ours.num_experts)
    assert ref.weight.shape == (ours.num_experts, ours.weight[0].numel())
    with torch.no_grad():  # mapping: timm stores each expert's kernel flattened, [E, C'·C/g·k·k]
        ref.weight.copy_(ours.weight.reshape(ours.num_experts, -1))
        if ours.bias is not None:
            ref.bias.copy_(ours.bias)
    return ref.double()


@pytest.mark.parametrize("kw,shape", [
    ({}, (3, 16, 7, 5)),
    ({"groups": 4, "dilation": 2, "bias": True, "num_experts": 3}, (2, 16, 9, 6)),
    ({"stride": 2, "out_channels": 24, "kernel_size": 5, "num_experts": 8}, (4, 8, 8, 11)),
    ({"kernel_size": 1, "groups": 2}, (1, 8, 3, 4)),
])
def test_condconv_equals_timm_condconv2d(kw, shape):
    ours = _randomize(CondConv2d(shape[1], **kw)).double()
    ref = _to_timm_condconv(ours)
    x = _x(*shape)
    r = torch.sigmoid(ours.routing_fn(x.mean((2, 3))))  # timm's CondConvResidual routing: σ(Linear(GAP(x)))
    assert_close(ours.routing(x), r, **F64)
    assert_close(ours(x), ref(x, r), **F64)
    # with arbitrary routing weights too (not only those the block computes)
    mix = _x(shape[0], ours.num_experts, seed=3).abs()
    assert_close(ours.convolve(x, mix), ref(x, mix), **F64)


def test_condconv_routing_is_independent_sigmoids():
    cc = _randomize(CondConv2d(16, num_experts=6)).double()
    r = cc.attention_maps(_x(5, 16, 4, 4))["routing"]
    assert r.shape == (5, 6) and ((r > 0) & (r < 1)).all()
    assert not torch.allclose(r.sum(1), torch.ones(5, dtype=torch.float64))  # not a softmax


# --------------------------------------------------------------------------- efficient == per-sample loop
def _hand_loop(x, mix, weight, bias, stride, padding, dilation, groups):
    """Independent of the package: every sample's kernel summed expert by expert, then an ordinary conv."""
    out = []
    for n in range(len(x)):
        kernel = sum(mix[n, e] * weight[e] for e in range(len(weight)))
        b = None if bias is None else sum(mix[n, e] * bias[e] for e in range(len(weight)))
        out.append(F.conv2d(x[n:n + 1], kernel, b, stride, padding, dilation, groups))
    return torch.cat(out)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 4), cin_g=st.integers(1, 3), cout_g=st.integers(1, 3), groups=st.sampled_from([1, 2, 3]),
       k=st.sampled_from([1, 3, 5]), stride=st.integers(1, 2), dilation=st.integers(1, 2), h=st.integers(3, 9),
       w=st.integers(3, 9), experts=st.integers(1, 4), bias=st.booleans(), seed=st.integers(0, 10_000))
def test_mixture_conv_equals_a_per_sample_loop(n, cin_g, cout_g, groups, k, stride, dilation, h, w, experts, bias, seed):
    gen = torch.Generator().manual_seed(seed)
    cin, cout = cin_g * groups, cout_g * groups
    x = torch.randn(n, cin, h, w, generator=gen, dtype=torch.float64)
    weight = torch.randn(experts, cout, cin_g, k, k, generator=gen, dtype=torch.float64)
    b = torch.randn(experts, cout, generator=gen, dtype=torch.float64) if bias else None
    mix = torch.rand(n, experts, generator=gen, dtype=torch.float64)
    pad = dilation * (k - 1) // 2
    expected = _hand_loop(x, mix, weight, b, stride, pad, dilation, groups)
    assert_close(mixture_conv(x, mix, weight, b, stride, pad, dilation, groups), expected, **F64)
    assert_close(per_sample_conv_loop(x, mix, weight, b, stride, pad, dilation, groups), expected, **F64)


@pytest.mark.parametrize("cls", [CondConv2d, DynamicConv2d])
def test_efficient_and_naive_blocks_agree(cls):
    eff = _randomize(cls(16, groups=2, dilation=2)).double()
    naive = cls(16, groups=2, dilation=2, implementation="naive").double()
    naive.load_state_dict(eff.state_dict())
    x = _x(3, 16, 6, 9)
    assert_close(eff(x), naive(x), **F64)
    with pytest.raises(ValueError, match=f"{cls.__name__}: implementation"):
        cls(16, implementation="fast")


# --------------------------------------------------------------------------- Dynamic Convolution
def _dynamic_from_scratch(block: DynamicConv2d, x: torch.Tensor) -> torch.Tensor:
    z = F.conv2d(F.relu(F.conv2d(x.mean((2, 3), keepdim=True), block.fc1.weight, block.fc1.bias)),
                 block.fc2.weight, block.fc2.bias).flatten(1)
    pi = torch.softmax(z / block.temperature, dim=1)
    return _hand_loop(x, pi, block.weight, block.bias, block.stride, block.padding, block.dilation, block.groups)


@pytest.mark.parametrize("progress", [0.0, 0.1, 1.0])
def test_dynamic_conv_equals_its_from_scratch_formula(progress):
    dc = _randomize(DynamicConv2d(16, num_kernels=3, bias=True, groups=2), std=1.0).double()
    dc.set_training_progress(progress)
    x = _x(3, 16, 5, 7)
    assert_close(dc(x), _dynamic_from_scratch(dc, x), **F64)
    pi = dc.attention_maps(x)["kernel_attention"]
    assert_close(pi.sum(1), torch.ones(3, dtype=torch.float64), **F64)


def test_dynamic_conv_temperature_anneals_from_30_to_1():
    dc = DynamicConv2d(16)
    assert float(dc.temperature) == 30.0 and "temperature" in dc.state_dict()
    seen = []
    for p in torch.linspace(0, 1, 41).tolist():
        dc.set_training_progress(p)
        seen.append(float(dc.temperature))
    assert seen[0] == 30.0 and seen[-1] == 1.0
    assert all(a >= b for a, b in zip(seen, seen[1:]))  # never rises
    dc.set_training_progress(0.125)  # half-way through the anneal (anneal_until = 0.25): linear
    assert float(dc.temperature) == pytest.approx(15.5)
    dc.set_training_progress(0.5)
    assert float(dc.temperature) == 1.0
    for bad in (-0.1, 1.5, float("nan"), "0.5", True):
        with pytest.raises(ValueError, match="DynamicConv2d: training progress"):
            dc.set_training_progress(bad)
    dc.reset_parameters()
    assert float(dc.temperature) == 30.0


def test_a_high_temperature_makes_the_attention_near_uniform():
    dc = _randomize(DynamicConv2d(16, num_kernels=4), std=1.0).double()
    x = _x(6, 16, 4, 4)
    dc.set_training_progress(0.0)
    hot = dc.routing(x)
    dc.set_training_progress(1.0)
    cold = dc.routing(x)
    assert (hot - 0.25).abs().max() < (cold - 0.25).abs().max()
    assert hot.max(1).values.mean() < cold.max(1).values.mean()


def test_fit_anneals_the_temperature_through_the_generic_hook():
    """``fit`` calls ``set_training_progress(p)`` before every step; the loop knows nothing about DynamicConv."""
    from attncourse.data import multiscale_digits
    from attncourse.train import fit

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(1, 8, 3, padding=1)
            self.dyn = DynamicConv2d(8, num_kernels=2, anneal_until=0.5)
            self.head = nn.Linear(8, 10)

        def forward(self, x):
            return self.head(self.dyn(F.relu(self.stem(x))).mean((2, 3)))

    model = Tiny()
    calls = []
    original = model.dyn.set_training_progress

    def spy(p):
        calls.append(p)
        original(p)

    model.dyn.set_training_progress = spy
    task = multiscale_digits(64, 16, canvas=16, digit_size=(6, 12))
    fit(model, task, epochs=2, batch_size=16, device="cpu", progress=False, amp=False, channels_last=False)
    assert len(calls) == 8 and calls[0] == 0.0
    assert calls == sorted(calls) and all(0 <= p < 1 for p in calls)
    assert calls[-1] == pytest.approx(7 / 8)
    assert float(model.dyn.temperature) == 1.0  # the last step is past anneal_until


# --------------------------------------------------------------------------- ResNeSt split attention
def test_radix_softmax_is_over_the_radix_in_radix_major_order():
    rs = RadixSoftmax(radix=2, cardinality=2)
    z = _x(1, 8)  # cardinal-major: [g0r0 (2), g0r1 (2), g1r0 (2), g1r1 (2)]
    out = rs(z).reshape(2, 2, 2)  # radix-major: [r, g, c]
    zz = z.reshape(2, 2, 2)  # [g, r, c]
    for g in range(2):
        assert_close(out[:, g], torch.softmax(zz[g], dim=0), **F64)
    assert_close(out.sum(0), torch.ones(2, 2, dtype=torch.float64), **F64)
    wrong = torch.softmax(z.reshape(1, 2, 4), dim=1).reshape(2, 2, 2)  # no transpose: mixes the wrong entries
    assert not torch.allclose(out, wrong)
    assert_close(RadixSoftmax(1, 2)(z), torch.sigmoid(z), **F64)


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("channels,radix,cardinality,hw", [
    (32, 2, 1, (7, 5)), (64, 2, 2, (6, 6)), (32, 4, 2, (5, 9)), (16, 1, 2, (4, 7)), (48, 3, 4, (5, 5)),
])
def test_split_attention_equals_timm_splitattn(train, channels, radix, cardinality, hw):
    ref = _randomize(timm_layers.SplitAttn(channels, radix=radix, groups=cardinality, norm_layer=nn.BatchNorm2d), seed=4)
    ours = SplitAttention(channels, radix=radix, cardinality=cardinality, reduced_channels=ref.fc1.out_channels)
    theirs = ref.state_dict()
    assert set(ours.state_dict()) == set(theirs)  # the mapping is the identity on names
    ours.load_state_dict(theirs)
    ours.double().train(train), ref.double().train(train)
    x = _x(3, channels, *hw)
    assert_close(ours(x), ref(x), **F64)


def test_split_attention_default_width_and_weights():
    assert SplitAttention(64, radix=2).reduced_channels == 32          # max(64·2/4, 32)
    assert SplitAttention(256, radix=2).reduced_channels == 128
    sa = _randomize(SplitAttention(32, radix=4, cardinality=2)).double().eval()
    w = sa.attention_maps(_x(2, 32, 5, 5))["radix_weights"]
    assert w.shape == (2, 4, 32)
    assert_close(w.sum(1), torch.ones(2, 32, dtype=torch.float64), **F64)
    assert sa.conv.groups == 8 and sa.fc1.groups == 2 and sa.fc2.groups == 2


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("make,match", [
    (lambda: SelectiveKernel(30, groups=4), "SelectiveKernel: input channels per branch=30 must be divisible by groups=4"),
    (lambda: SelectiveKernel(15, split_input=True), "SelectiveKernel: channels=15 must be divisible by num_branches"),
    (lambda: SelectiveKernel(16, num_branches=0), "SelectiveKernel: num_branches must be a positive int"),
    (lambda: SplitAttention(30, radix=4), "SplitAttention: channels=30 must be divisible by cardinality·radix=4"),
    (lambda: SplitAttention(32, cardinality=2, reduced_channels=33), "SplitAttention: the hidden width=33"),
    (lambda: CondConv2d(16, kernel_size=2), "CondConv2d: kernel_size must be odd"),
    (lambda: CondConv2d(16, groups=3), "CondConv2d: channels=16 must be divisible by groups=3"),
    (lambda: DynamicConv2d(16, initial_temperature=0), "DynamicConv2d: initial_temperature"),
    (lambda: DynamicConv2d(16, anneal_until=0), "DynamicConv2d: anneal_until"),
    (lambda: DynamicConv2d(16, num_kernels=0), "DynamicConv2d: num_kernels must be a positive int"),
])
def test_bad_arguments_are_named_value_errors(make, match):
    with pytest.raises(ValueError, match=match.replace("(", r"\(").replace(")", r"\)")):
        make()


@pytest.mark.parametrize("name", BRANCH)
def test_wrong_input_names_the_block_and_the_shape(name):
    block = create_block(name, 16).eval()
    for x in (torch.randn(2, 8, 5, 5), torch.randn(16, 5, 5), torch.randn(2, 16, 5, 5).double()):
        with pytest.raises(ValueError) as err:
            block(x)
        assert type(block).__name__ in str(err.value) and str(tuple(x.shape)) in str(err.value)


# --------------------------------------------------------------------------- properties over shapes
@settings(max_examples=15, deadline=None)
@given(name=st.sampled_from(BRANCH), n=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9),
       seed=st.integers(0, 1000))
def test_any_map_in_eval_mode_keeps_the_shape_and_each_sample_is_independent(name, n, h, w, seed):
    torch.manual_seed(seed)
    block = _randomize(create_block(name, 16), seed=seed).eval()
    x = torch.randn(n, 16, h, w, generator=torch.Generator().manual_seed(seed))
    y = block(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    for i in range(n):  # batch 1 in eval mode: the same answer as inside the batch
        assert_close(block(x[i:i + 1]), y[i:i + 1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("make", [lambda: SelectiveKernel(16, out_channels=24, stride=2, groups=8),
                                  lambda: CondConv2d(16, 24, stride=2), lambda: DynamicConv2d(16, 24, stride=2),
                                  lambda: SplitAttention(16, 24, stride=2, cardinality=2)])
def test_stride_and_out_channels(make):
    y = make().eval()(torch.randn(2, 16, 9, 6))
    assert y.shape == (2, 24, 5, 3)


@pytest.mark.parametrize("channels, groups, batch", [(16, 2, 128), (26, 1, 64)])
def test_dilated_convs_give_finite_gradients_under_cpu_bf16_channels_last(channels, groups, batch):
    """torch 2.14.1, x86-64 AVX512-BF16: these dilated convs in channels_last under bf16 autocast gave NaN weight
    gradients (an SK branch; module 01's dilated control). DilatedConv2d computes them in NCHW there, so its
    gradient is finite and equals float32's within bf16 precision, whether or not this machine has the bug."""
    from attncourse.blocks._common import DilatedConv2d

    torch.manual_seed(0)
    x = torch.rand(batch, channels, 40, 40).contiguous(memory_format=torch.channels_last)
    safe = DilatedConv2d(channels, channels, 3, padding=2, dilation=2, groups=groups, bias=False)
    reference = nn.Conv2d(channels, channels, 3, padding=2, dilation=2, groups=groups, bias=False)
    reference.load_state_dict(safe.state_dict())
    safe = safe.to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        safe(x).float().square().mean().backward()
    reference(x.contiguous()).square().mean().backward()
    assert torch.isfinite(safe.weight.grad).all()
    torch.testing.assert_close(safe.weight.grad, reference.weight.grad, rtol=0.05, atol=1e-3)  # bf16 vs float32


def test_sk_trains_under_cpu_bf16_channels_last_where_torch_gives_nan_gradients():
    """torch 2.14.1, x86-64 AVX512-BF16: a grouped dilated conv in channels_last under bf16 autocast gives NaN weight
    gradients; the SK unit's branch convs compute that case in NCHW (DilatedConv2d)."""
    from attncourse.blocks._common import DilatedConv2d

    torch.manual_seed(0)
    x = torch.randn(128, 16, 40, 40).contiguous(memory_format=torch.channels_last)
    plain = nn.Conv2d(16, 16, 3, padding=2, dilation=2, groups=2, bias=False).to(memory_format=torch.channels_last)
    safe = DilatedConv2d(16, 16, 3, padding=2, dilation=2, groups=2, bias=False).to(memory_format=torch.channels_last)
    safe.load_state_dict(plain.state_dict())
    for conv in (plain, safe):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            conv(x).float().square().mean().backward()
    assert torch.isfinite(safe.weight.grad).all()
    reference = nn.Conv2d(16, 16, 3, padding=2, dilation=2, groups=2, bias=False)
    reference.load_state_dict(plain.state_dict())
    reference(x.contiguous()).square().mean().backward()
    torch.testing.assert_close(safe.weight.grad, reference.weight.grad, rtol=0.05, atol=1e-3)  # bf16 vs float32

    sk = create_block("sk", 16, groups=2).to(memory_format=torch.channels_last).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        sk(x).float().square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in sk.parameters() if p.grad is not None)
