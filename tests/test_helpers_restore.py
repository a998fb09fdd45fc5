"""Picture and cost helpers leave the model bit-for-bit as they found it (issue 16).

``attention_maps`` / ``query_attention`` (every registered block that has them), ``cost.measure_latency``
(forward and ``backward=True``), ``cost.peak_memory(..., model=)`` and ``cost_report(..., memory=True)``:
before and after, the state dict (parameters and every buffer: BN running statistics and batch counters,
EMA bases), every parameter's ``.grad`` (the same tensor with the same values, or ``None``) and the
mode of every submodule are identical.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from attncourse.blocks import create_block, list_blocks
from attncourse.cost import cost_report, measure_latency, peak_memory, preserved
from attncourse.models import AttnResNet

C = 16
MAP_BLOCKS = [n for n in list_blocks() if hasattr(create_block(n, C), "attention_maps")]


class Snapshot:
    """State dict (cloned), grads (object and values) and per-submodule modes of a model."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.grads = [(p.grad, None if p.grad is None else p.grad.clone()) for p in model.parameters()]
        self.modes = [m.training for m in model.modules()]

    def assert_unchanged(self) -> None:
        now = self.model.state_dict()
        assert now.keys() == self.state.keys()
        for key, value in self.state.items():
            assert now[key].dtype == value.dtype and torch.equal(now[key], value), f"{key} changed"
        for p, (grad, values) in zip(self.model.parameters(), self.grads):
            assert p.grad is grad, "a gradient was replaced, created or cleared"
            if grad is not None:
                assert torch.equal(grad, values), "a gradient's values changed"
        assert [m.training for m in self.model.modules()] == self.modes, "a module's mode changed"


def _with_grads(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Give every parameter that takes part a gradient (as in the middle of a training step); a block without
    parameters (the parameter-free Gather-Excite) has none to give."""
    if any(p.requires_grad for p in model.parameters()):
        model(x).float().square().mean().backward()
    return model


def _net(attention: str = "cbam") -> AttnResNet:
    torch.manual_seed(0)
    return AttnResNet(1, 10, widths=(8, 16), depths=(1, 1), attention=attention, attention_kwargs={"reduction": 4}
                      if attention in ("cbam", "bam", "se") else None)


# --------------------------------------------------------------------------- attention_maps
@pytest.mark.parametrize("name", MAP_BLOCKS)
def test_attention_maps_change_nothing_in_train_mode(name):
    torch.manual_seed(0)
    block = create_block(name, C).train()
    x = torch.randn(3, C, 6, 5)
    _with_grads(block, x)
    block.train()
    snap = Snapshot(block)
    maps = block.attention_maps(x)
    snap.assert_unchanged()  # BN running statistics (CBAM, BAM, ANN/OCNet, …) did not move
    assert maps and all(torch.isfinite(m).all() and not m.requires_grad for m in maps.values())
    # the maps are those of the model as it predicts (eval mode)
    block.eval()
    expected = block.attention_maps(x)
    block.train()
    for key, m in maps.items():
        assert torch.equal(m, expected[key]), key
    if hasattr(block, "query_attention"):
        block.query_attention(x, 1, 2)
        snap.assert_unchanged()


@pytest.mark.parametrize("name", ["cbam", "bam", "ann", "spatial_attention"])
def test_attention_maps_restore_mixed_modes_even_when_they_raise(name):
    torch.manual_seed(0)
    block = create_block(name, C).train()
    for i, m in enumerate(block.modules()):
        m.train(i % 2 == 0)  # a mix of modes, restored one by one
    snap = Snapshot(block)
    with pytest.raises(ValueError, match=type(block).__name__):
        block.attention_maps(torch.randn(2, C + 1, 5, 5))
    snap.assert_unchanged()
    block.attention_maps(torch.randn(1, C, 5, 5))  # batch 1: fine, the picture is taken in eval mode
    snap.assert_unchanged()


# --------------------------------------------------------------------------- cost helpers
@pytest.mark.parametrize("backward", [False, True])
@pytest.mark.parametrize("train", [True, False])
def test_measure_latency_restores_mode_statistics_gradients_and_parameters(backward, train):
    net = _net("cbam")
    x = torch.randn(4, 1, 12, 12)
    _with_grads(net, x)
    net.train(train)
    snap = Snapshot(net)
    out = measure_latency(net, x, warmup=1, repeats=2, backward=backward)
    assert len(out["times_ms"]) == 2
    snap.assert_unchanged()


def test_measure_latency_restores_models_without_gradients_and_ema_bases():
    torch.manual_seed(0)
    net = AttnResNet(1, 10, widths=(8, 16), depths=(1, 1), attention="ema", attention_kwargs={"bases": 4}).train()
    assert all(p.grad is None for p in net.parameters())
    snap = Snapshot(net)
    measure_latency(net, (3, 1, 8, 8), warmup=1, repeats=1, backward=True)
    snap.assert_unchanged()  # EMA bases, BN statistics and None gradients


def test_peak_memory_restores_the_model_it_is_given():
    net = _net("bam")
    x = torch.randn(4, 1, 12, 12)
    _with_grads(net, x)
    net.eval()
    snap = Snapshot(net)

    def train_step():
        net.train()
        net(x).sum().backward()

    assert peak_memory(train_step, "cpu", model=net) > 0
    snap.assert_unchanged()


def test_cost_report_with_memory_restores_the_model():
    net = _net("se").eval()
    snap = Snapshot(net)
    row = cost_report(net, torch.randn(2, 1, 12, 12), latency=True, memory=True, repeats=1)
    assert row["peak_mem_bytes"] > 0 and row["latency_ms"] > 0
    snap.assert_unchanged()


def test_preserved_restores_after_an_exception():
    net = _net("cbam")
    snap = Snapshot(net)
    with pytest.raises(RuntimeError, match="boom"), preserved(net):
        net.eval()
        with torch.no_grad():
            for p in net.parameters():
                p.add_(1.0)
        raise RuntimeError("boom")
    snap.assert_unchanged()
