"""The init contract: a block starts the same inside every backbone as on its own (issue 25).

For EVERY registered block (``list_blocks()``, new ones included):

* ``reset_parameters()`` sets every parameter of the block's subtree (filled with NaN first, none survives), so a
  block never depends on what its constructor or a backbone left in a child;
* the constructed block *is* its ``reset_parameters()`` output: replaying the random state of the constructor's
  last ``reset_parameters()`` call on a twin gives bit-identical tensors;
* inside ``AttnResNet`` — and inside every other backbone that builds it (``InceptionNet``'s blocks, ``BranchResNet``'s
  convs, ``SegNet``'s heads; ``ReIDNet``'s clip heads and ``DeepStack``'s highway layers, which are never
  re-initialised) — each block instance holds exactly what a standalone block of the same width and
  keywords holds after ``reset_parameters()`` from the same random state: per tensor, bit-identical. A backbone
  that re-initialises a block's child afterwards (the old SK bug: its branch convs reset to PyTorch's default,
  ~0.41× the Kaiming std) or a block that leaves a conv to the backbone's Kaiming pass (the old GC, ANN, GloRe)
  fails here.

And the documented inits hold where the backbones put the blocks: zero-initialised last layers are zero, Kaiming
and PyTorch-default convs have their std (within sampling tolerance), γ-scalars are 0.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from attncourse.blocks import BLOCKS, create_block, get_block_spec, list_blocks
from attncourse.blocks.inception import InceptionBlock
from attncourse.models import InceptionNet
from attncourse.models.branch import BRANCH_CONVS, BranchResNet
from attncourse.models import AttnResNet, top_level_blocks
from attncourse.models.segmentation import HEADS, SegNet

NAMES = [n for n in list_blocks() if n != "none"]
C = 16


def _block_class(name: str) -> type:
    return type(create_block(name, C))


def _float_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items() if v.is_floating_point()}


class ResetSpy:
    """Wraps ``cls.reset_parameters`` to record, per instance, the random state before its latest call."""

    def __init__(self, monkeypatch, cls: type):
        self.cls, self.original, self.before = cls, cls.reset_parameters, {}
        spy = self

        def wrapper(module, *args, **kwargs):
            spy.before[id(module)] = torch.get_rng_state()
            return spy.original(module, *args, **kwargs)

        monkeypatch.setattr(cls, "reset_parameters", wrapper)

    def replay(self, module: nn.Module, twin: nn.Module) -> None:
        """Run the original ``reset_parameters`` on ``twin`` from the random state of ``module``'s latest call."""
        assert id(module) in self.before, f"{type(module).__name__}.reset_parameters was never called on this instance"
        saved = torch.get_rng_state()
        torch.set_rng_state(self.before[id(module)])
        try:
            self.original(twin)
        finally:
            torch.set_rng_state(saved)


def assert_same_tensors(actual: nn.Module, expected: nn.Module, where: str) -> None:
    a, e = _float_state(actual), _float_state(expected)
    assert a.keys() == e.keys(), f"{where}: different tensors {sorted(a.keys() ^ e.keys())}"
    for key in e:
        assert torch.equal(a[key], e[key]), (f"{where}: {key} differs from the standalone block's init "
                                             f"(mean |w| {a[key].abs().mean().item():.4g} vs {e[key].abs().mean().item():.4g})")


@pytest.mark.parametrize("name", NAMES)
def test_reset_parameters_sets_every_parameter(name):
    block = create_block(name, C)
    assert hasattr(block, "reset_parameters"), f"{name}: a block with parameters needs reset_parameters()"
    with torch.no_grad():
        for p in block.parameters():
            p.fill_(float("nan"))
    block.reset_parameters()
    left = [k for k, p in block.named_parameters() if torch.isnan(p).any()]
    assert not left, f"{name}: reset_parameters() leaves {left} to whoever built the block"


REGISTERED_CLASSES = {spec.factory for spec in BLOCKS.values() if isinstance(spec.factory, type)}


@pytest.mark.parametrize("name", NAMES)
def test_constructed_block_is_its_reset(name, monkeypatch):
    """A constructor either ends in ``reset_parameters()`` (replayed from that call's random state), or draws exactly
    what ``reset_parameters()`` draws (replayed from the constructor's start), or is made of registered blocks that
    initialise themselves (CBAM's halves) and holds no parameter of its own."""
    spy = ResetSpy(monkeypatch, _block_class(name))
    torch.manual_seed(3)
    start = torch.get_rng_state()
    block = create_block(name, C)
    torch.manual_seed(99)
    twin = create_block(name, C)
    if id(block) not in spy.before:
        parts = [m for m in block.children() if m.__module__.startswith("attncourse.blocks")
                 and hasattr(m, "reset_parameters")]
        if parts:
            assert all(type(p) in REGISTERED_CLASSES for p in parts) and not list(block.parameters(recurse=False))
            return
        spy.before[id(block)] = start
    spy.replay(block, twin)
    assert_same_tensors(block, twin, f"{name} as constructed")


def _check_backbone(model: nn.Module, spy: ResetSpy, name: str, where: str, **kwargs) -> int:
    """Every ``spy.cls`` instance in ``model`` equals a standalone twin reset from the same random state."""
    found = 0
    for path, module in model.named_modules():
        if type(module) is not spy.cls:
            continue
        width = getattr(module, "channels", None)
        assert isinstance(width, int), f"{name}: the block exposes no `channels` to build its standalone twin"
        twin = create_block(name, width, **kwargs)
        spy.replay(module, twin)
        assert_same_tensors(module, twin, f"{name} in {where} at {path}")
        found += 1
    return found


@pytest.mark.parametrize("name", NAMES)
def test_attnresnet_keeps_the_block_init(name, monkeypatch):
    spy = ResetSpy(monkeypatch, _block_class(name))
    torch.manual_seed(0)
    net = AttnResNet(1, 10, attention=name)
    assert _check_backbone(net, spy, name, "AttnResNet") >= 1


@pytest.mark.parametrize("name", NAMES)
def test_inception_net_keeps_the_block_init(name, monkeypatch):
    spy = ResetSpy(monkeypatch, _block_class(name))
    torch.manual_seed(0)
    try:
        net = InceptionNet(1, 10, attention=name)
    except ValueError:  # e.g. a block that needs BN statistics of a width this net does not have
        pytest.skip(f"InceptionNet does not build {name!r}")
    assert _check_backbone(net, spy, name, "InceptionNet") == 3


@pytest.mark.parametrize("conv", [c for c in BRANCH_CONVS if c != "plain"])
def test_branch_resnet_keeps_the_conv_init(conv, monkeypatch):
    from attncourse.experiments.branch import ARMS

    kwargs = ARMS[conv][1]
    spy = ResetSpy(monkeypatch, _block_class(conv))
    torch.manual_seed(0)
    net = BranchResNet(1, 10, conv=conv, conv_kwargs=kwargs)
    assert _check_backbone(net, spy, conv, "BranchResNet", **kwargs) == 3


SEG_BLOCKS = {"pam": ["danet_pam"], "cam": ["danet_cam"], "danet": ["danet_pam", "danet_cam"], "cbam_series": ["cbam"]}


@pytest.mark.parametrize("head", [h for h in HEADS if h in SEG_BLOCKS])
def test_segnet_keeps_the_head_init(head, monkeypatch):
    from attncourse.models.segmentation import CBAM_REDUCTION

    spies = [(n, ResetSpy(monkeypatch, _block_class(n))) for n in SEG_BLOCKS[head]]
    torch.manual_seed(0)
    net = SegNet(1, 11, head=head)
    for name, spy in spies:
        kwargs = {"reduction": CBAM_REDUCTION} if name == "cbam" else {}
        assert _check_backbone(net, spy, name, f"SegNet({head!r})", **kwargs) == 1


def test_only_top_level_blocks_are_reset():
    """CBAM's channel and spatial halves belong to CBAM; SK's branch convs (DilatedConv2d) to SK."""
    for name, cls in (("cbam", "CBAM"), ("sk", "SelectiveKernel")):
        net = AttnResNet(1, 10, attention=name)
        blocks = top_level_blocks(net)
        assert blocks and {type(b).__name__ for b in blocks} == {cls}


# --------------------------------------------------------------------------- the documented inits, where trained
def _kaiming_fan_out_std(w: torch.Tensor) -> float:
    return math.sqrt(2.0 / (w.shape[0] * w[0, 0].numel()))


def _default_std(w: torch.Tensor) -> float:
    """PyTorch's default conv init: U(−b, b) with b = 1/√fan_in (kaiming_uniform with a = √5), std b/√3."""
    return 1.0 / math.sqrt(3.0 * w[0].numel())


def _std_close(w: torch.Tensor, expected: float, rel: float, what: str) -> None:
    measured = w.detach().std().item()
    assert abs(measured / expected - 1) < rel, f"{what}: std {measured:.4g}, expected {expected:.4g}"


def _last(net: nn.Module, cls_name: str) -> nn.Module:
    return [m for m in net.modules() if type(m).__name__ == cls_name][-1]  # the widest stage: most samples


def test_sk_and_split_attention_convs_are_kaiming_inside_the_backbones():
    from attncourse.experiments.branch import ARMS

    for conv, cls in (("sk", "SelectiveKernel"), ("split_attn", "SplitAttention")):
        for net in (BranchResNet(1, 10, conv=conv, conv_kwargs=ARMS[conv][1]), AttnResNet(1, 10, attention=conv)):
            block = _last(net, cls)
            convs = [b[0] for b in block.branches] if conv == "sk" else [block.conv]
            for c in convs:
                _std_close(c.weight, _kaiming_fan_out_std(c.weight), 0.1, f"{conv} in {type(net).__name__}")


@pytest.mark.parametrize("name", ["gc", "gc_mul"])
def test_global_context_init(name):
    block = _last(AttnResNet(1, 10, attention=name), "GlobalContext")
    transform = block.channel_add if name == "gc" else block.channel_mul
    assert not transform[-1].weight.any() and not transform[-1].bias.any()
    _std_close(transform[0].weight, _default_std(transform[0].weight), 0.2, f"{name} first transform conv")
    _std_close(block.conv_mask.weight, math.sqrt(2.0 / block.channels), 0.2, f"{name} mask conv (Kaiming fan-in)")
    assert torch.equal(transform[1].weight, torch.ones_like(transform[1].weight))


@pytest.mark.parametrize("name", ["ann", "ocnet"])
def test_asymmetric_nonlocal_init(name):
    block = _last(AttnResNet(1, 10, attention=name), "AsymmetricNonLocal2d")
    assert not block.W.weight.any() and not block.W.bias.any()
    for what, conv in (("f_key", block.f_key[0]), ("f_value", block.f_value), ("fuse", block.fuse[0])):
        _std_close(conv.weight, _default_std(conv.weight), 0.2, f"{name} {what}")


def test_glore_init():
    block = _last(AttnResNet(1, 10, attention="glore"), "GloRe")
    assert not block.blocker.weight.any() and not block.blocker.bias.any()
    for what in ("conv_state", "conv_proj", "conv_extend"):
        w = getattr(block, what).weight
        _std_close(w, _default_std(w), 0.25, f"glore {what}")


def test_zero_started_blocks_start_as_documented():
    net = AttnResNet(1, 10, attention="nonlocal")
    for m in net.modules():
        if type(m).__name__ == "NonLocal2d":
            assert not m.bn.weight.any() and not m.bn.bias.any()
            _std_close(m.theta.weight, 0.01, 0.25, "non-local θ ~ N(0, 0.01²)")
    net = SegNet(1, 11, head="danet")
    gammas = [m.gamma for m in net.modules() if isinstance(getattr(m, "gamma", None), nn.Parameter)]
    assert len(gammas) == 2 and all(float(g.detach()) == 0 for g in gammas)
    net = AttnResNet(1, 10, attention="cbam")
    assert all(not m.bn.weight.any() for m in net.modules() if type(m).__name__ == "SpatialAttention")


# --------------------------------------------------------------------------- job ids follow the init change
CHANGED = ("sk", "split_attn", "gc", "gc_mul", "ann", "ocnet", "glore")


@pytest.mark.parametrize("name", CHANGED)
def test_blocks_whose_backbone_init_changed_have_a_revision(name):
    assert getattr(get_block_spec(name).factory, "spec_revision", 0) >= 1


def test_net_arm_specs_name_the_revisions_of_their_blocks():
    from attncourse.experiments import arm_spec, get_experiment

    arms = get_experiment("branch_multiscale").arms
    assert "revisions={'sk': 1}" in arm_spec(arms["sk"])
    assert "revisions={'split_attn': 1}" in arm_spec(arms["split_attn"])
    assert "revisions" not in arm_spec(arms["plain"]) and "revisions" not in arm_spec(arms["condconv"])
    assert "revision=1" in arm_spec(get_experiment("nonlocal_pairs").arms["gc"])
    assert "revisions" not in arm_spec(get_experiment("inception_noisy").arms["se_inception"])


def test_the_other_backbones_build_their_blocks_without_reinitialising_them(monkeypatch):
    """ReIDNet's clip heads and DeepStack's highway layers are built once and never re-initialised: each holds what
    the standalone head / layer holds after its own init from the same random state."""
    from attncourse.blocks.branch import Highway
    from attncourse.blocks.temporal import TemporalAttentionPool, create_temporal_head
    from attncourse.models.branch import DeepStack
    from attncourse.models.reid import ReIDNet

    spy = ResetSpy(monkeypatch, TemporalAttentionPool)
    torch.manual_seed(0)
    net = ReIDNet(1, 5, head="temporal_attention")
    twin = create_temporal_head("temporal_attention", 64)
    spy.replay(net.temporal, twin)
    assert_same_tensors(net.temporal, twin, "temporal attention in ReIDNet")
    sta = ReIDNet(1, 5, head="sta").temporal
    assert_same_tensors(sta, create_temporal_head("sta", 64), "STA in ReIDNet")  # no random tensor of its own

    spy = ResetSpy(monkeypatch, Highway)
    torch.manual_seed(0)
    stack = DeepStack(1, 10, width=8, depth=3, image_size=(8, 8))
    for i, layer in enumerate(stack.layers):
        twin = Highway(8, kernel_size=1, gate_bias=-3.0)
        spy.replay(layer, twin)
        assert_same_tensors(layer, twin, f"highway layer {i} in DeepStack")
