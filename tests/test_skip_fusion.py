"""Module 09's fusion network: the arms differ only in the fusion, and each fusion is what its docstring says.

* shapes: a 48×48 scene → logits at stride 2, every fusion;
* identities: the learned mix with weight ``[I, I]`` *is* the sum; AFF with its two branches' last BN at zero
  (``w = 0.5`` everywhere) *is* the sum, because of the authors' factor 2; the same networks otherwise;
* every arm holds the same backbone, head, skip and classifier parameters (names and shapes); only the fusion differs;
* AFF and iAFF keep their own (Xavier) init inside the network, bit for bit;
* bad input and a bad fusion name are ``ValueError``\\ s naming the network; gradients reach every parameter.
"""
from __future__ import annotations

import pytest
import torch

from attncourse.blocks import create_block
from attncourse.blocks.fusion import AFF, iAFF
from attncourse.cost import count_params
from attncourse.data import make_task
from attncourse.config import get_profile
from attncourse.experiments import get_experiment
from attncourse.experiments.runner import Job
from attncourse.models import FUSIONS, SkipFusionNet

from test_init_contract import ResetSpy, _check_backbone


def _net(fusion: str, seed: int = 0) -> SkipFusionNet:
    torch.manual_seed(seed)
    return SkipFusionNet(1, 11, fusion=fusion)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_a_scene_gives_logits_at_stride_two(fusion):
    net = _net(fusion).eval()
    assert net(torch.rand(2, 1, 48, 48)).shape == (2, 11, 24, 24)
    assert net(torch.rand(2, 1, 47, 45)).shape == (2, 11, 24, 23)


def _shared(net):
    return {k: v for k, v in net.state_dict().items() if not k.startswith("fuse.")}


def test_every_arm_shares_everything_but_the_fusion():
    nets = {f: _net(f) for f in FUSIONS}
    shapes = {f: {k: tuple(v.shape) for k, v in _shared(n).items()} for f, n in nets.items()}
    assert all(s == shapes["add"] for s in shapes.values())
    extra = {f: count_params(n) - count_params(nets["add"]) for f, n in nets.items()}
    assert extra == {"add": 0, "concat": 2 * 16 * 16, "aff": 376, "iaff": 752}


def _with_weights_of(target, source):
    target.load_state_dict(_shared(source), strict=False)
    return target


def test_the_learned_mix_with_identity_weights_is_the_sum():
    add, concat = _net("add").eval(), _with_weights_of(_net("concat", seed=1), _net("add")).eval()
    with torch.no_grad():
        eye = torch.eye(16)
        concat.fuse.mix.weight.copy_(torch.cat([eye, eye], dim=1)[:, :, None, None])
    x = torch.rand(3, 1, 48, 48)
    torch.testing.assert_close(concat(x), add(x))
    with torch.no_grad():
        concat.fuse.mix.weight[0, 0] += 0.5
    assert not torch.allclose(concat(x), add(x))


@pytest.mark.parametrize("fusion", ["aff", "iaff"])
def test_aff_at_half_weights_is_the_sum_and_iaff_half_of_it(fusion):
    """``w = 0.5``: AFF = 2·x/2 + 2·y/2 = x + y (the factor 2); iAFF, without it, (x + y)/2."""
    add, net = _net("add").eval(), _with_weights_of(_net(fusion, seed=1), _net("add")).eval()
    for m in net.fuse.modules():
        if isinstance(m, torch.nn.Sequential) and isinstance(m[-1], torch.nn.BatchNorm2d):
            torch.nn.init.zeros_(m[-1].weight), torch.nn.init.zeros_(m[-1].bias)
    x = torch.rand(3, 1, 48, 48)
    up, skip = net.features(x)
    expected = up + skip if fusion == "aff" else (up + skip) / 2
    torch.testing.assert_close(net.fuse(up, skip), expected)
    if fusion == "aff":
        torch.testing.assert_close(net(x), add(x))


@pytest.mark.parametrize("fusion,cls", [("aff", AFF), ("iaff", iAFF)])
def test_the_fusion_block_keeps_its_own_init(fusion, cls, monkeypatch):
    spy = ResetSpy(monkeypatch, cls)
    torch.manual_seed(0)
    net = SkipFusionNet(1, 11, fusion=fusion)
    assert _check_backbone(net, spy, fusion, "SkipFusionNet") == 1
    assert type(create_block(fusion, 16)) is cls


@pytest.mark.parametrize("fusion", FUSIONS)
def test_gradients_reach_every_parameter(fusion):
    net = _net(fusion).train()
    net(torch.rand(4, 1, 48, 48)).square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing


def test_bad_input_and_a_bad_fusion_name_are_clear_errors():
    with pytest.raises(ValueError, match=r"^SkipFusionNet: fusion must be one of .*'sum'"):
        SkipFusionNet(1, 11, fusion="sum")
    net = _net("aff").eval()
    with pytest.raises(ValueError, match=r"SkipFusionNet.*\(2, 3, 48, 48\)"):
        net(torch.rand(2, 3, 48, 48))
    with pytest.raises(ValueError, match=r"SkipFusionNet"):
        net.train()(torch.rand(1, 1, 2, 2))


def test_the_experiment_runs_on_digit_scenes_with_one_arm_per_fusion():
    exp = get_experiment("aff_scenes")
    assert exp.task == "digit_scenes" and exp.module == "09_position_fusion" and list(exp.arms) == list(FUSIONS)
    task = make_task(exp.task, get_profile("smoke").with_(n_train=4, n_test=4), **exp.task_kwargs)
    assert "skip" in task.info["why"] and "AFF" in task.info["why"] and "fusion" in task.info["attention"]
    x = task.float_images(task.x_train[:2])
    for arm, build in exp.arms.items():
        torch.manual_seed(0)
        net = build(task).eval()
        assert net.fusion_name == arm and net(x).shape[:2] == (2, task.num_classes)
    ids = {Job("aff_scenes", arm, 0, get_profile("full")).id for arm in exp.arms}
    assert len(ids) == len(FUSIONS)
