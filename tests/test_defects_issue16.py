"""One before/after test per defect measured in issue 16 (each failed on the code the issue was filed against).

The contract over every registered block is ``test_block_contract.py``; the helpers that must leave a
model untouched are ``test_helpers_restore.py``.
"""
from __future__ import annotations

import math

import pytest
import torch

from attncourse.blocks import create_block
from attncourse.blocks.channel import ECABlock, SEBlock
from attncourse.blocks.inception import InceptionBlock
from attncourse.models import InceptionNet
from attncourse.blocks.nonlocal_ import EMAUnit, GlobalContext
from attncourse.data import (channel_cue_digits, cluttered_digits, long_range_pairs, multiscale_digits,
                             source_digits)
from attncourse.models import AttnResNet


# --------------------------------------------------------------------------- silent corruption
def test_ema_empty_batch_in_train_mode_keeps_its_bases():
    block = EMAUnit(8, bases=4).train()
    mu = block.mu.clone()
    assert block(torch.randn(0, 8, 5, 5)).shape == (0, 8, 5, 5)
    assert torch.equal(block.mu, mu)  # was NaN, and every later output with it
    assert torch.isfinite(block.eval()(torch.randn(2, 8, 5, 5))).all()


def test_ema_empty_batch_inside_attnresnet_leaves_later_predictions_finite():
    torch.manual_seed(0)
    net = AttnResNet(1, 10, widths=(8, 16), depths=(1, 1), attention="ema", attention_kwargs={"bases": 4}).train()
    net(torch.randn(0, 1, 12, 12))
    assert all(torch.isfinite(b).all() for b in net.buffers() if b.is_floating_point())
    assert torch.isfinite(net.eval()(torch.randn(3, 1, 12, 12))).all()


# --------------------------------------------------------------------------- data
def test_source_digits_are_copies_of_the_cached_split():
    images, labels, idx = source_digits("test")
    first = (images.clone(), labels.clone(), idx.clone())
    task_before = long_range_pairs(n_train=4, n_test=4, seed=1)
    images.zero_(), labels.fill_(3), idx.zero_()  # editing the returned tensors in place …
    again = source_digits("test")
    for a, b in zip(again, first):  # … never reaches the cached split
        assert torch.equal(a, b)
    train_idx = source_digits("train")[2]
    assert not set(train_idx.tolist()) & set(again[2].tolist())
    task_after = long_range_pairs(n_train=4, n_test=4, seed=1)
    assert torch.equal(task_after.sources_test, task_before.sources_test)
    assert torch.equal(task_after.x_test, task_before.x_test)


@pytest.mark.parametrize("make", [cluttered_digits, channel_cue_digits, long_range_pairs, multiscale_digits])
@pytest.mark.parametrize("kwargs,param", [(dict(n_train=True), "n_train"), (dict(n_test=True), "n_test"),
                                          (dict(n_train=False), "n_train"), (dict(seed=True), "seed")])
def test_generators_refuse_bools_as_counts_and_seeds(make, kwargs, param):
    with pytest.raises(ValueError, match=rf"{make.__name__}: invalid {param}: must be a .*int, got (True|False)"):
        make(**{"n_train": 2, "n_test": 2, **kwargs})


# --------------------------------------------------------------------------- named errors
BN_BLOCKS_1X1 = ["ann", "ocnet", "cbam", "cbam_parallel", "cbam_spatial_first", "dnl", "ema", "glore", "nonlocal",
                 "nonlocal_concat", "nonlocal_dot", "nonlocal_gaussian", "sam", "spatial_attention"]


@pytest.mark.parametrize("name", BN_BLOCKS_1X1)
def test_batch_one_1x1_in_train_mode_names_the_block(name):
    block = create_block(name, 16).train()
    with pytest.raises(ValueError, match=rf"^{type(block).__name__}: in training mode its BatchNorm needs more than one "
                                         rf"value per channel, got shape \(1, 16, 1, 1\)"):
        block(torch.randn(1, 16, 1, 1))
    assert block.eval()(torch.randn(1, 16, 1, 1)).shape == (1, 16, 1, 1)  # eval: running statistics, fine


def test_inception_block_and_net_batch_one_1x1_in_train_mode():
    block = InceptionBlock(3, 2, 2, 2, 2, 2, 2).train()
    with pytest.raises(ValueError, match=r"^InceptionBlock: .*BatchNorm.*\(1, 3, 1, 1\)"):
        block(torch.randn(1, 3, 1, 1))
    with pytest.raises(ValueError, match=r"^InceptionNet: .*BatchNorm.*\(1, 1, 1, 1\)"):
        InceptionNet().train()(torch.randn(1, 1, 1, 1))


@pytest.mark.parametrize("name", ["se", "se_max", "se_h", "se_w", "se_fusion", "cam", "cbam", "bam", "scse", "gc",
                                  "gc_mul", "cc"])
@pytest.mark.parametrize("reduction", [float("nan"), float("inf"), -2, 0, True, "4"])
def test_bad_reduction_is_a_named_error(name, reduction):
    cls = type(create_block(name, 16)).__name__
    with pytest.raises(ValueError, match=rf"^{cls}: reduction"):
        create_block(name, 16, reduction=reduction)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.int64])
def test_wrong_dtype_is_a_named_error(dtype):
    x = torch.zeros(2, 16, 5, 5, dtype=dtype)
    for name in ("se", "cbam", "nonlocal"):
        block = create_block(name, 16)
        with pytest.raises(ValueError, match=rf"^{type(block).__name__}: .*{str(dtype).split('.')[-1]}.*\(2, 16, 5, 5\)"):
            block(x)
    assert create_block("se", 16).double()(x.double() if dtype != torch.int64 else x.double()).dtype == torch.float64


@pytest.mark.parametrize("bad,match", [(torch.randn(2, 3, 12, 12), r"expected 1 channels.*\(2, 3, 12, 12\)"),
                                       (torch.randn(1, 12, 12), r"expected a 4-D input.*\(1, 12, 12\)"),
                                       (torch.randn(2, 1, 12, 12).double(), r".*float64.*\(2, 1, 12, 12\)")])
def test_attnresnet_input_errors_name_the_network(bad, match):
    with pytest.raises(ValueError, match=rf"^AttnResNet: {match}"):
        AttnResNet(1, 10)(bad)


def test_attnresnet_batch_one_reaching_a_1x1_map_in_training():
    net = AttnResNet(1, 10)  # three stages: 4×4 → 2×2 → 1×1
    with pytest.raises(ValueError, match=r"^AttnResNet: .*BatchNorm.*\(1, 1, 4, 4\)"):
        net.train()(torch.randn(1, 1, 4, 4))
    assert net(torch.randn(1, 1, 5, 5)).shape == (1, 10)  # 5 → 3 → 2: fine
    assert net.eval()(torch.randn(1, 1, 4, 4)).shape == (1, 10)


# --------------------------------------------------------------------------- smaller deviations
def test_gc_mul_zero_inits_its_last_conv_as_the_official_code():
    block = create_block("gc_mul", 16)
    assert torch.all(block.channel_mul[-1].weight == 0) and torch.all(block.channel_mul[-1].bias == 0)
    x = torch.randn(2, 16, 5, 4)
    assert torch.equal(block(x), x * 0.5)  # σ(0): the block starts neutral
    both = GlobalContext(16, fuse="both")
    assert torch.all(both.channel_mul[-1].weight == 0) and torch.all(both.channel_add[-1].weight == 0)
    # the add-fusion arm (used by the experiments) keeps its init: identity at start
    assert torch.equal(create_block("gc", 16)(x), x)


@pytest.mark.parametrize("kernel_size", [0, 2, -3, 1.5, True])
def test_eca_and_conv1d_excitation_refuse_bad_kernel_sizes(kernel_size):
    with pytest.raises(ValueError, match=r"^ECABlock: kernel sizes must be odd positive ints"):
        ECABlock(16, kernel_size=kernel_size)
    with pytest.raises(ValueError, match=r"^SEBlock: kernel sizes must be odd positive ints"):
        SEBlock(16, excitation="conv1d", kernel_size=kernel_size)


def test_eca_default_kernel_is_unchanged():
    assert ECABlock(16).kernel_size == 3 and ECABlock(256).kernel_size == 5 and ECABlock(16, kernel_size=5).kernel_size == 5
    with pytest.raises(ValueError, match="gamma"):
        ECABlock(16, gamma=0)
    assert math.isclose(sum(p.numel() for p in ECABlock(256).parameters()), 5)


def test_cbam_spatial_bn_momentum_is_the_official_one():
    from attncourse.blocks import create_block

    for name in ("cbam", "cbam_spatial_first", "cbam_parallel"):
        assert create_block(name, 16, reduction=4).spatial.bn.momentum == 0.01
    assert create_block("spatial_attention", 16).bn.momentum == 0.01
    assert create_block("cbam", 16, reduction=4, bn_momentum=0.1).spatial.bn.momentum == 0.1
    with pytest.raises(ValueError, match="SpatialAttention: bn_momentum"):
        create_block("spatial_attention", 16, bn_momentum=0)


def test_a_block_revision_retires_runs_recorded_before_the_change(monkeypatch):
    from attncourse.blocks import mixed
    from attncourse.config import PROFILES
    from attncourse.experiments import Job, arm_spec, get_experiment

    exp = get_experiment("cbam_order")
    before = {arm: Job("cbam_order", arm, 0, PROFILES["full"]).id for arm in exp.arms}
    assert "revision=1" in arm_spec(exp.arms["channel_spatial"]) and "revision" not in arm_spec(exp.arms["baseline"])
    monkeypatch.setattr(mixed.CBAM, "spec_revision", 2)
    after = {arm: Job("cbam_order", arm, 0, PROFILES["full"]).id for arm in exp.arms}
    changed = {arm for arm in exp.arms if before[arm] != after[arm]}
    assert changed == {"channel_spatial", "spatial_channel", "parallel"}  # spatial_only is SpatialAttention's own
