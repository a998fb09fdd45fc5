"""Module 07's experiments and backbones: arms at matched FLOPs that replace (not add) the 3×3 conv, the branch-weight
read-out used for the weight-by-digit-size picture, and the Highway deep stack."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from attncourse.blocks.branch import CondConv2d, DynamicConv2d, Highway, SelectiveKernel, SplitAttention
from attncourse.models.branch import BRANCH_CONVS, BranchResNet, DeepStack, branch_weights
from attncourse.cost import count_flops, count_params
from attncourse.data import make_task
from attncourse.experiments import get_experiment, list_experiments
from attncourse.experiments.branch import ARMS, HIGHWAY_DEPTH, branch_net
from attncourse.models import AttnResNet


@pytest.fixture(scope="module")
def task():
    exp = get_experiment("branch_multiscale")
    return make_task(exp.task, "smoke", seed=0, **exp.task_kwargs)


def test_experiments_are_registered_for_the_module():
    assert {"branch_multiscale", "highway_depth"} <= set(list_experiments())
    exp = get_experiment("branch_multiscale")
    assert list(exp.arms) == ["plain", "sk", "condconv", "dynamic_conv", "split_attn", "plain_wide", "condconv_narrow",
                              "dynamic_conv_narrow"]
    assert exp.module == "07_sknet" and exp.task == "multiscale_digits"
    assert exp.task_kwargs["noise"] > 0.1  # not the saturated default task
    assert list(get_experiment("highway_depth").arms) == ["plain_stack", "highway_stack"]


def test_every_arm_replaces_the_conv_at_the_plain_conv_flops(task):
    x = torch.zeros(1, *task.x_train.shape[1:])
    nets = {arm: get_experiment("branch_multiscale").arms[arm](task) for arm in ARMS}
    kinds = {"plain": nn.Conv2d, "sk": SelectiveKernel, "condconv": CondConv2d, "dynamic_conv": DynamicConv2d,
             "split_attn": SplitAttention}
    flops = {arm: count_flops(net, x) for arm, net in nets.items()}
    params = {arm: count_params(net) for arm, net in nets.items()}
    for arm, net in nets.items():
        blocks = [m for m in net.modules() if type(m).__name__ == "BranchBasicBlock"]
        assert len(blocks) == 3 and all(isinstance(b.conv2, kinds[arm]) for b in blocks), arm
        assert abs(flops[arm] / flops["plain"] - 1) < 0.02, (arm, flops)
    assert abs(params["sk"] / params["plain"] - 1) < 0.10 and abs(params["split_attn"] / params["plain"] - 1) < 0.15
    assert params["condconv"] > 2 * params["plain"]  # CondConv buys capacity with weights, not FLOPs
    # the same skeleton as the course backbone: the plain arm IS AttnResNet's baseline, parameter for parameter
    base = AttnResNet(task.in_channels, task.num_classes)
    assert params["plain"] == count_params(base) and flops["plain"] == count_flops(base, x)


def test_branch_net_and_bad_conv_names(task):
    assert isinstance(branch_net(task, "sk").stages[0][0].conv2, SelectiveKernel)
    with pytest.raises(ValueError, match="BranchResNet: conv must be one of"):
        BranchResNet(conv="se")
    with pytest.raises(ValueError, match="plain conv takes no conv_kwargs"):
        BranchResNet(conv="plain", conv_kwargs={"groups": 2})
    assert set(BRANCH_CONVS) == set(ARMS)


@pytest.mark.parametrize("conv", ["sk", "split_attn"])
def test_branch_weights_reads_every_unit_without_moving_anything(conv, task):
    torch.manual_seed(0)
    net = branch_net(task, conv).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = task.x_train[:6].float() / 255
    weights = branch_weights(net, x)
    assert list(weights) == ["stages.0.0.conv2", "stages.1.0.conv2", "stages.2.0.conv2"]
    for w in weights.values():
        assert w.shape == (6,) and ((w > 0) & (w < 1)).all()
    assert net.training and all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    # it is the mean over channels of the unit's own weights on the last branch
    unit = net.stages[1][0].conv2
    captured = {}
    handle = net.stages[1][0].conv1.register_forward_hook(lambda m, i, o: captured.setdefault("h", torch.relu(o)))
    net.eval()(x)
    handle.remove()
    expected = unit.attention_maps(captured["h"])["branch_weights" if conv == "sk" else "radix_weights"][:, -1].mean(1)
    torch.testing.assert_close(weights["stages.1.0.conv2"], expected)
    with pytest.raises(ValueError, match="no SK unit"):
        branch_weights(branch_net(task, "plain"), x)


def test_deep_stack_with_and_without_gates():
    gated, plain = DeepStack(depth=HIGHWAY_DEPTH, gated=True), DeepStack(depth=HIGHWAY_DEPTH, gated=False)
    assert sum(isinstance(m, Highway) for m in gated.modules()) == HIGHWAY_DEPTH
    assert not any(isinstance(m, Highway) for m in plain.modules())
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in gated.modules())
    # the only difference is the gates: the plain stack has the highway stack's parameters minus the gate convs
    gates = sum(p.numel() for m in gated.modules() if isinstance(m, Highway) for p in m.gate.parameters())
    assert count_params(plain) == count_params(gated) - gates
    y = gated(torch.randn(2, 1, 24, 24))
    assert y.shape == (2, 10)
    with pytest.raises(ValueError, match="DeepStack"):
        gated(torch.randn(2, 3, 24, 24))
    with pytest.raises(ValueError, match=r"DeepStack: expected images of size \(24, 24\)"):
        gated(torch.randn(2, 1, 20, 24))
    # the experiment's stacks are built for its task's images
    exp = get_experiment("highway_depth")
    task = make_task(exp.task, "smoke", seed=0, **exp.task_kwargs)
    for arm in exp.arms.values():
        assert arm(task)(task.x_train[:2].float() / 255).shape == (2, 10)


def test_the_matched_parameter_controls_are_fair(task):
    """plain_wide has the 4-expert convs' parameters, the narrow 4-expert arms the plain net's: each within 1 % (the
    issue asks 3 %); they differ from their reference arm only in the widths (and the conv)."""
    exp = get_experiment("branch_multiscale")
    nets = {arm: exp.arms[arm](task) for arm in exp.arms}
    params = {arm: count_params(net) for arm, net in nets.items()}
    assert params["condconv"] / params["plain"] > 2.5  # what makes the controls necessary
    for wide_of in ("condconv", "dynamic_conv"):
        assert abs(params["plain_wide"] / params[wide_of] - 1) < 0.01
    for narrow in ("condconv_narrow", "dynamic_conv_narrow"):
        assert abs(params[narrow] / params["plain"] - 1) < 0.01
    kinds = {"plain_wide": nn.Conv2d, "condconv_narrow": CondConv2d, "dynamic_conv_narrow": DynamicConv2d}
    for arm, kind in kinds.items():
        convs = [b.conv2 for b in nets[arm].modules() if type(b).__name__ == "BranchBasicBlock"]
        assert len(convs) == 3 and all(type(c) is kind for c in convs)
    experts = [b.conv2.num_kernels for b in nets["condconv_narrow"].modules() if type(b).__name__ == "BranchBasicBlock"]
    assert experts == [4] * 3
    assert exp.arms["condconv_narrow"].kwargs["conv_kwargs"] == exp.arms["condconv"].kwargs["conv_kwargs"]
    x = torch.zeros(2, *task.x_train.shape[1:])
    for arm in kinds:
        assert nets[arm].eval()(x).shape == (2, task.num_classes)
