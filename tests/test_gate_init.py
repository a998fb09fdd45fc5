"""``init_logit``: where the gates of SE and CBAM start (issue 10, item 3).

At the official init CBAM's two gates start near σ(0) = 0.5 (the spatial one exactly: its BN scale is 0), so a
fresh CBAM scales its residual branch by about 0.25. ``init_logit`` shifts each gate's pre-sigmoid value at
initialisation. Checked here:

* the spatial gate (BN scale 0) starts at exactly ``σ(init_logit)`` for any input, in train and eval mode;
* every gate's logits are, for any input, the default block's (same seed) plus ``init_logit`` — the channel
  MLP's bias counts once per pooled descriptor — and nothing but that bias (or BN shift) differs;
* ``init_logit=0`` builds the same parameters and outputs as a block built without the keyword;
* ``reset_parameters`` (also as ``AttnResNet`` calls it, parents and children) re-applies it;
* bad values and combinations without a bias raise a ``ValueError`` naming the block;
* the ``cbam_init`` experiment shares its baseline, cbam and se jobs with ``mixed_compare``.
"""
import math
from types import SimpleNamespace

import pytest
import torch
from torch.testing import assert_close

from attncourse.blocks import create_block
from attncourse.blocks.channel import SEBlock, squeeze
from attncourse.blocks.mixed import CBAM, ChannelAttention, SpatialAttention
from attncourse.config import get_profile
from attncourse.experiments import Job, get_experiment
from attncourse.models import AttnResNet

C = 16
SIG2 = 1 / (1 + math.exp(-2.0))  # σ(2)


def _x(seed: int = 1, shape=(4, C, 7, 6)) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 2 + 0.5


def _pair(cls, **kwargs):
    """The same block built twice under the same seed: without ``init_logit`` and with ``init_logit=2``."""
    torch.manual_seed(0)
    default = cls(C, **kwargs)
    torch.manual_seed(0)
    shifted = cls(C, **kwargs, init_logit=2.0)
    return default, shifted


def _se_logits(b: SEBlock, x):
    return sum(b.excite(z) for z in squeeze(x, b.squeeze))


def _cam_logits(b: ChannelAttention, x):
    return sum(b.mlp(squeeze(x, p)[0]) for p in b.pools)


# --------------------------------------------------------------------------- the gate starts at σ(init_logit)
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("order", ["channel_spatial", "spatial_channel", "parallel"])
def test_cbam_spatial_gate_starts_at_sigmoid_of_init_logit_for_any_input(order, train):
    torch.manual_seed(0)
    block = CBAM(C, reduction=4, order=order, init_logit=2.0).train(train)
    for seed in (1, 2, 3):
        maps = block._maps(_x(seed))
        assert_close(maps[1], torch.full_like(maps[1], SIG2), rtol=0, atol=1e-6)
    torch.manual_seed(0)
    default = CBAM(C, reduction=4, order=order).train(train)
    assert_close(default._maps(_x())[1], torch.full((4, 1, 7, 6), 0.5), rtol=0, atol=0)  # the official 0.5


@pytest.mark.parametrize("pools", [("avg", "max"), ("avg",), ("max",)])
def test_cbam_channel_gate_is_sigmoid_of_init_logit_where_the_mlp_sees_zero(pools):
    """The official MLP biases are 0, so for a zero input each pooled descriptor adds exactly fc2's bias:
    ``init_logit / len(pools)`` per pool makes the summed logit ``init_logit``, whatever the number of pools."""
    torch.manual_seed(0)
    block = ChannelAttention(C, reduction=4, pools=pools, init_logit=2.0)
    assert_close(block.weights(torch.zeros(3, C, 5, 5)), torch.full((3, C, 1, 1), SIG2), rtol=0, atol=1e-6)
    assert_close(block.fc2.bias.detach(), torch.full((C,), 2.0 / len(pools)))


@pytest.mark.parametrize("kwargs", [{}, {"squeeze": "avgmax"}, {"squeeze": "max"}, {"squeeze": "std"},
                                    {"gate": "hard_sigmoid"}, {"reduced_channels": 3}],
                         ids=["se", "avgmax", "max", "std", "hard_sigmoid", "reduced3"])
def test_se_logits_are_the_default_ones_plus_init_logit_for_any_input(kwargs):
    default, shifted = _pair(SEBlock, reduction=4, **kwargs)
    for seed in (1, 2):
        x = _x(seed)
        assert_close(_se_logits(shifted, x), _se_logits(default, x) + 2.0, rtol=0, atol=1e-5)
    # only fc2's bias differs, by init_logit split over the summed descriptors
    d, s = default.state_dict(), shifted.state_dict()
    for k in d:
        if k == "fc2.bias":
            assert_close(s[k] - d[k], torch.full_like(d[k], 2.0 / len(squeeze(x, default.squeeze))))
        else:
            assert torch.equal(d[k], s[k]), k


def test_se_gate_itself_moves_from_near_half_to_near_sigmoid_2():
    default, shifted = _pair(SEBlock, reduction=4)
    x = _x()
    with torch.no_grad():
        wd, ws = default.weights(x).double(), shifted.weights(x).double()
    assert_close(torch.logit(ws), torch.logit(wd) + 2.0, rtol=0, atol=1e-4)
    assert abs(float(wd.mean()) - 0.5) < abs(float(ws.mean()) - 0.5)  # far from 0.5 only with the shift
    assert float(ws.min()) > 0.5


@pytest.mark.parametrize("pools", [("avg", "max"), ("avg",)])
def test_channel_attention_logits_are_the_default_ones_plus_init_logit(pools):
    default, shifted = _pair(ChannelAttention, reduction=4, pools=pools)
    for seed in (1, 2):
        x = _x(seed)
        assert_close(_cam_logits(shifted, x), _cam_logits(default, x) + 2.0, rtol=0, atol=1e-5)


@pytest.mark.parametrize("norm", [True, False], ids=["bn_shift", "conv_bias"])
def test_spatial_attention_logits_are_the_default_ones_plus_init_logit(norm):
    default, shifted = _pair(SpatialAttention, norm=norm)
    for train in (True, False):
        default.train(train), shifted.train(train)
        x = _x()
        assert_close(shifted.logits(x), default.logits(x) + 2.0, rtol=0, atol=1e-5)
    shift = shifted.bn.bias if norm else shifted.conv.bias
    assert shift.detach().item() == 2.0


@pytest.mark.parametrize("order", ["channel_spatial", "parallel"])
def test_cbam_channel_map_on_its_input_is_shifted_by_init_logit(order):
    """Both orders compute Mc on x itself; its logit moves by exactly init_logit."""
    default, shifted = _pair(CBAM, reduction=4, order=order)
    x = _x()
    mc_d, mc_s = default._maps(x)[0].double(), shifted._maps(x)[0].double()
    assert_close(torch.logit(mc_s), torch.logit(mc_d) + 2.0, rtol=0, atol=1e-4)
    assert shifted.channel.init_logit == shifted.spatial.init_logit == 2.0


# --------------------------------------------------------------------------- the default is untouched
def _same(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("name, kwargs", [
    ("se", {}), ("se_avgmax", {}), ("se_max", {}), ("se_std", {}), ("se_conv1d", {}), ("se_multiscale", {}),
    ("channel_attention", {}), ("channel_attention", {"bias": False}), ("spatial_attention", {}),
    ("spatial_attention", {"norm": False}), ("cbam", {}), ("cbam_spatial_first", {}), ("cbam_parallel", {}),
    ("cbam", {"bias": False}),
])
def test_init_logit_zero_is_the_block_without_the_keyword(name, kwargs):
    torch.manual_seed(0)
    a = create_block(name, C, **kwargs)
    rng_a = torch.random.get_rng_state()
    torch.manual_seed(0)
    b = create_block(name, C, **kwargs, init_logit=0.0)
    assert torch.equal(rng_a, torch.random.get_rng_state())  # same random draws, so later layers are unchanged too
    _same(a, b)
    x = _x()
    assert torch.equal(a(x), b(x))
    assert "init_logit" not in repr(a) and "init_logit" not in repr(b)


def test_default_init_is_still_the_official_one():
    torch.manual_seed(0)
    block = CBAM(C, reduction=4)
    assert torch.count_nonzero(block.channel.fc1.bias) == torch.count_nonzero(block.channel.fc2.bias) == 0
    assert float(block.spatial.bn.weight.detach()) == float(block.spatial.bn.bias.detach()) == 0.0


@pytest.mark.parametrize("attention", ["se", "cbam"])
def test_attnresnet_with_init_logit_zero_equals_the_network_without_it(attention):
    torch.manual_seed(0)
    a = AttnResNet(1, 10, attention=attention, attention_kwargs={"reduction": 4})
    torch.manual_seed(0)
    b = AttnResNet(1, 10, attention=attention, attention_kwargs={"reduction": 4, "init_logit": 0.0})
    _same(a, b)


# --------------------------------------------------------------------------- reset_parameters is the one place of init
def test_reset_parameters_reapplies_init_logit_after_training_moved_the_weights():
    torch.manual_seed(0)
    block = CBAM(C, reduction=4, init_logit=2.0)
    with torch.no_grad():
        for p in block.parameters():
            p.add_(torch.randn_like(p))
    assert not torch.allclose(block._maps(_x())[1], torch.full((4, 1, 7, 6), SIG2))
    block.reset_parameters()
    assert_close(block._maps(_x())[1], torch.full((4, 1, 7, 6), SIG2), rtol=0, atol=1e-6)
    assert_close(block.channel.fc2.bias.detach(), torch.full((C,), 1.0))


def test_attnresnet_keeps_the_shift_although_it_resets_blocks_and_their_halves():
    """AttnResNet.reset_parameters calls CBAM's and then each half's reset: the shift must not pile up."""
    torch.manual_seed(0)
    net = AttnResNet(1, 10, attention="cbam", attention_kwargs={"reduction": 4, "init_logit": 2.0})
    cbams = [m for m in net.modules() if isinstance(m, CBAM)]
    assert len(cbams) == 3
    for m in cbams:
        assert_close(m.channel.fc2.bias.detach(), torch.full((m.channels,), 1.0))
        assert float(m.spatial.bn.bias.detach()) == 2.0 and float(m.spatial.bn.weight.detach()) == 0.0
    torch.manual_seed(0)
    se_default = AttnResNet(1, 10, attention="se", attention_kwargs={"reduction": 4})
    torch.manual_seed(0)
    se_shift = AttnResNet(1, 10, attention="se", attention_kwargs={"reduction": 4, "init_logit": 2.0})
    d, s = se_default.state_dict(), se_shift.state_dict()
    for k in d:
        if k.endswith("attention.fc2.bias"):
            assert_close(s[k] - d[k], torch.full_like(d[k], 2.0))
        else:
            assert torch.equal(d[k], s[k]), k


def test_a_network_with_shifted_gates_trains_its_gates():
    torch.manual_seed(0)
    net = AttnResNet(1, 10, attention="cbam", attention_kwargs={"reduction": 4, "init_logit": 2.0})
    x = torch.randn(4, 1, 12, 12)
    loss = torch.nn.functional.cross_entropy(net(x), torch.arange(4))
    loss.backward()
    block = net.stages[0][0].attention
    for p in (block.channel.fc1.weight, block.channel.fc2.weight, block.spatial.bn.weight):
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), "2", None, True, torch.tensor(2.0)])
@pytest.mark.parametrize("build, name", [
    (lambda v: SEBlock(C, init_logit=v), "SEBlock"),
    (lambda v: ChannelAttention(C, init_logit=v), "ChannelAttention"),
    (lambda v: SpatialAttention(C, init_logit=v), "SpatialAttention"),
    (lambda v: CBAM(C, init_logit=v), "CBAM"),
    (lambda v: create_block("cbam", C, init_logit=v), "CBAM"),
], ids=["se", "cam", "sam", "cbam", "create_block"])
def test_a_bad_init_logit_is_a_value_error_naming_the_block(build, name, value):
    with pytest.raises(ValueError, match=rf"^{name}: init_logit must be a finite number"):
        build(value)


def test_an_int_init_logit_is_accepted():
    torch.manual_seed(0)
    a = CBAM(C, init_logit=2)
    torch.manual_seed(0)
    _same(a, CBAM(C, init_logit=2.0))
    assert a.init_logit == 2.0 and isinstance(a.init_logit, float)


@pytest.mark.parametrize("build, match", [
    (lambda: SEBlock(C, excitation="conv1d", init_logit=2.0), r"^SEBlock: .*needs excitation='fc'"),
    (lambda: SEBlock(C, excitation="multiscale", init_logit=-1.0), r"^SEBlock: .*needs excitation='fc'"),
    (lambda: ChannelAttention(C, bias=False, init_logit=2.0), r"^ChannelAttention: .*needs bias=True"),
    (lambda: CBAM(C, bias=False, init_logit=2.0), r"^CBAM: .*needs bias=True"),
])
def test_a_gate_without_a_bias_refuses_a_nonzero_init_logit(build, match):
    with pytest.raises(ValueError, match=match):
        build()


# --------------------------------------------------------------------------- the experiment
def test_cbam_init_is_registered_with_mixed_compares_recipe():
    exp, ref = get_experiment("cbam_init"), get_experiment("mixed_compare")
    assert exp.module == "05_cbam" and exp.task == ref.task == "cluttered_digits"
    assert (exp.task_kwargs, exp.fit_kwargs, exp.epochs_scale) == (ref.task_kwargs, ref.fit_kwargs, ref.epochs_scale)
    assert list(exp.arms) == ["baseline", "cbam", "cbam_init2", "se", "se_init2", "se_avgmax", "se_avgmax_init2",
                              "cbam_avg", "cbam_avg_init2"]
    for arm, block in (("cbam_init2", "cbam"), ("se_init2", "se")):
        assert exp.arms[arm].attention == block
        assert exp.arms[arm].attention_kwargs == {"reduction": ref.arms["cbam"].attention_kwargs["reduction"],
                                                  "init_logit": 2.0}
    assert "init" in exp.description and "0.25" in exp.description


@pytest.mark.parametrize("profile", ["smoke", "full"])
def test_cbam_init_shares_the_baseline_cbam_and_se_jobs_with_mixed_compare(profile):
    p = get_profile(profile)
    for seed in (0, 1):
        for arm in ("baseline", "cbam", "se"):
            assert Job("cbam_init", arm, seed, p).id == Job("mixed_compare", arm, seed, p).id, arm
        ids = {Job("cbam_init", arm, seed, p).id for arm in get_experiment("cbam_init").arms}
        assert len(ids) == 9  # the shifted arms are jobs of their own
        assert Job("cbam_init", "se_avgmax", seed, p).id == Job("senet_cluttered", "se_avgmax", seed, p).id


def test_cbam_init_arms_build_the_shifted_blocks():
    task = SimpleNamespace(in_channels=1, num_classes=10)
    exp = get_experiment("cbam_init")
    torch.manual_seed(0)
    net = exp.arms["cbam_init2"](task)
    for m in net.modules():
        if isinstance(m, SpatialAttention):
            assert float(m.bn.bias.detach()) == 2.0
    assert sum(isinstance(m, SpatialAttention) for m in net.modules()) == 3
    plain = exp.arms["cbam"](task)
    assert all(float(m.bn.bias.detach()) == 0.0 for m in plain.modules() if isinstance(m, SpatialAttention))


# --------------------------------------------------------------------------- separating the init from the descriptor
def test_the_descriptor_arms_cross_descriptor_and_init():
    """se_avgmax(_init2) is SE with CBAM's avg+max descriptor, cbam_avg(_init2) CBAM with SE's avg-only one: each
    differs from its block's recorded arm in the descriptor only (same parameters), and from the other of its pair in
    the gate's start only (the logits shifted by exactly init_logit for every input)."""
    exp = get_experiment("cbam_init")
    task = SimpleNamespace(in_channels=3, num_classes=10)
    nets = {arm: exp.arms[arm](task) for arm in exp.arms}

    def blocks(arm, cls):
        return [m for m in nets[arm].modules() if type(m) is cls]

    n_params = {arm: sum(p.numel() for p in net.parameters()) for arm, net in nets.items()}
    assert n_params["se_avgmax"] == n_params["se_avgmax_init2"] == n_params["se"] == n_params["se_init2"]
    assert n_params["cbam_avg"] == n_params["cbam_avg_init2"] == n_params["cbam"] == n_params["cbam_init2"]
    assert all(b.squeeze == "avgmax" for arm in ("se_avgmax", "se_avgmax_init2") for b in blocks(arm, SEBlock))
    for arm in ("cbam_avg", "cbam_avg_init2"):
        assert [b.channel.pools for b in blocks(arm, CBAM)] == [("avg",)] * 3
    assert [b.channel.pools for b in blocks("cbam", CBAM)] == [("avg", "max")] * 3
    # the logits of a pair differ by init_logit for any input (same seed, same random weights)
    x = _x()
    for block, kwargs in (("se_avgmax", {}), ("cbam", {"pools": ("avg",)})):
        torch.manual_seed(0)
        default = create_block(block, C, reduction=4, **kwargs).eval()
        torch.manual_seed(0)
        shifted = create_block(block, C, reduction=4, init_logit=2.0, **kwargs).eval()
        gate = (lambda b, t: b.weights(t)) if block == "se_avgmax" else (lambda b, t: b.channel.weights(t))
        logit = lambda g: torch.log(g / (1 - g))  # noqa: E731
        assert_close(logit(gate(shifted, x)), logit(gate(default, x)) + 2.0, rtol=1e-4, atol=1e-4)
