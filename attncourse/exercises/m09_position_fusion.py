"""Exercises of module 09 (Coordinate Attention, SA-Net, AFF/iAFF): the capstone, design your own block.

=======================  ======  =====================================================================
key                      points  the learner writes
=======================  ======  =====================================================================
``09.design_block``         6    a block class ``Block(channels)`` (or its name after ``register_block``)
=======================  ======  =====================================================================

``09.design_block`` grades the **block contract** only — what every block of the course keeps, so that any
backbone can place it (:mod:`attncourse.blocks`):

* it builds as ``Block(channels)`` and maps ``[N, C, H, W] → [N, C, H, W]``, in train and in eval mode, for odd and
  non-square maps;
* in eval mode a batch of one gives that sample's row of a larger batch (batch 1 works, samples do not mix);
* an input with the wrong channel count or the wrong rank raises a ``ValueError`` that names the block and the
  input's shape (``attncourse.blocks.check_input(self, x, channels)`` does exactly this);
* a gradient reaches the input and every parameter (checked with the parameters moved off their initial values,
  so a gate that starts at zero — SA-Net's ``w = 0`` — is as good a design as any).

How well the block does on a task is the experiment's business: it is reported, never graded.
"""
from __future__ import annotations

import torch
from torch import nn

from ..blocks import check_input
from .core import describe_exception, gradient_flow, register_exercise, run_case, seeded_generator

__all__ = ["ExampleBlock"]

C_SMALL, C_LARGE = 16, 32


class ExampleBlock(nn.Module):
    """A reference block in the module-00 template: statistic (per-channel mean and max) → transform (a shared 1×1
    conv pair) → reweight (sigmoid gate). ``[N, C, H, W] → [N, C, H, W]``."""

    def __init__(self, channels: int, hidden: int = 4):
        super().__init__()
        self.channels = channels
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.channels)
        stats = (x.mean(dim=(2, 3), keepdim=True), x.amax(dim=(2, 3), keepdim=True))
        logits = sum(self.fc2(torch.relu(self.fc1(s))) for s in stats)
        return x * torch.sigmoid(logits)


_NOT_A_MODULE = "Block(channels) must build an nn.Module (a class deriving from torch.nn.Module)"
_WRONG_SHAPE = "the block must return a tensor of the input's shape [N, C, H, W]"
_NOT_FINITE = "the output holds NaN or inf"
_BATCH_MIXES = ("in eval mode a batch of one must give that sample's row of a larger batch (do not mix samples: "
                "BatchNorm in eval mode, no statistics over the batch)")
_NO_VALUE_ERROR = "raise a ValueError for this input (attncourse.blocks.check_input(self, x, channels) does it)"
_UNNAMED = "the ValueError must name the block's class and the input's shape"
_UNKNOWN_NAME = "is not a registered block name"


def _block_class(learner):
    """The learner's class: the object itself, or the factory registered under a name."""
    if isinstance(learner, str):
        from ..blocks import BLOCKS

        key = learner.lower()
        if key not in BLOCKS:
            raise ValueError(f"{learner!r} {_UNKNOWN_NAME}: call register_block({learner!r})(YourBlock) first")
        return BLOCKS[key].factory
    if not callable(learner):
        raise TypeError(f"expected a block class (or its registered name), got {type(learner).__name__}")
    return learner


def _build(learner, channels: int) -> nn.Module:
    block = _block_class(learner)(channels)
    if not isinstance(block, nn.Module):
        raise TypeError(f"{_NOT_A_MODULE}; what it built is not one")
    return block


def _x(shape, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=seeded_generator(seed)) + 0.2


def _check_output(y, x) -> str | None:
    if not isinstance(y, torch.Tensor):
        return f"{_WRONG_SHAPE}; got a {type(y).__name__}"
    if tuple(y.shape) != tuple(x.shape):
        return f"{_WRONG_SHAPE}; for input shape {list(x.shape)} it returned {list(y.shape)}"
    if not torch.isfinite(y).all():
        return _NOT_FINITE
    return None


def _case_builds(learner):
    for c in (C_SMALL, C_LARGE):
        _build(learner, c)


def _case_shape(learner, channels: int, hw: tuple[int, int], train: bool):
    torch.manual_seed(0)
    block = _build(learner, channels).train(train)
    x = _x((3, channels, *hw), seed=hw[0] * 10 + hw[1])
    with torch.no_grad():
        return _check_output(block(x.clone()), x)


def _case_batch_one(learner):
    torch.manual_seed(0)
    block = _build(learner, C_SMALL).eval()
    x = _x((3, C_SMALL, 5, 7), seed=3)
    with torch.no_grad():
        whole = block(x.clone())
        problem = _check_output(whole, x)
        if problem:
            return problem
        for i in range(3):
            one = block(x[i:i + 1].clone())
            problem = _check_output(one, x[i:i + 1])
            if problem:
                return problem
            if not torch.allclose(one, whole[i:i + 1], rtol=1e-4, atol=1e-5):
                return _BATCH_MIXES
    return None


def _case_value_error(learner, shape: tuple[int, ...]):
    torch.manual_seed(0)
    block = _build(learner, C_SMALL).eval()
    x = _x(shape, seed=5)
    try:
        with torch.no_grad():
            block(x)
    except ValueError as err:
        message = str(err)
        if type(block).__name__ not in message or str(tuple(x.shape)) not in message:
            return f"{_UNNAMED} {tuple(x.shape)}; got {describe_exception(err)}"
        return None
    except Exception as err:  # noqa: BLE001 — any other exception is the mistake being graded
        return f"{_NO_VALUE_ERROR}; input of shape {tuple(x.shape)} raised {type(err).__name__} instead"
    return f"{_NO_VALUE_ERROR}; input of shape {tuple(x.shape)} was accepted"


def _case_gradient(learner):
    torch.manual_seed(0)
    block = _build(learner, C_SMALL).train()
    gen = seeded_generator(9)
    with torch.no_grad():  # moved off its init: a zero-initialised gate (SA's w = 0, γ = 0) is a fair design
        for p in block.parameters():
            if p.is_floating_point():
                p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.3)
    inputs = [_x((2, C_SMALL, 5, 4), seed=s) for s in (7, 8)]
    return gradient_flow(block, inputs, module=block, output_name="the block's output")


@register_exercise("09.design_block", title="Design your own block: keep the block contract", points=6,
                   solution=ExampleBlock, expects="any")
def _check_design(learner):
    yield run_case(f"Block({C_SMALL}) and Block({C_LARGE}) build nn.Modules", _case_builds, learner)
    yield run_case(f"train mode: [3, {C_SMALL}, 8, 8] → the same shape", _case_shape, learner, C_SMALL, (8, 8), True)
    yield run_case(f"eval mode, odd non-square map: [3, {C_LARGE}, 7, 5] → the same shape", _case_shape, learner,
                   C_LARGE, (7, 5), False)
    yield run_case("eval mode: batch 1 works and equals its row of a batch", _case_batch_one, learner)
    yield run_case(f"wrong channels [2, {C_SMALL + 1}, 5, 5] → ValueError naming the block and the shape",
                   _case_value_error, learner, (2, C_SMALL + 1, 5, 5))
    yield run_case(f"wrong rank [2, {C_SMALL}, 5] → ValueError naming the block and the shape",
                   _case_value_error, learner, (2, C_SMALL, 5))
    yield run_case("a gradient reaches the input and every parameter", _case_gradient, learner)
