"""Attention blocks, one file per family, and a string registry to build them by name.

>>> from attncourse.blocks import create_block, list_blocks
>>> block = create_block("none", 16)        # identity: the baseline
>>> sorted(list_blocks())[:1]
['none']

Each family file registers its blocks with :func:`register_block`. A registered block is built as
``factory(channels, **kwargs)`` and maps ``[N, C, H, W] -> [N, C, H, W]``. Its ``placement`` tells the
backbone in :mod:`attncourse.models` where the paper puts it:

* ``"residual"`` — inside every residual block, on the residual branch before the add (SE, CBAM, GC, …);
* ``"stage"``    — between stages, after a whole stage (Non-local, BAM, CCNet, …).

``inputs`` is the number of tensors ``forward`` takes: 1 for the attention blocks a backbone places, 2 for the
fusion blocks (AFF, iAFF) whose ``forward(x, y)`` fuses two maps of the same shape. :func:`list_blocks` lists the
one-input blocks unless asked (``inputs=2``, or ``inputs=None`` for all), and :class:`attncourse.models.AttnResNet`
refuses a two-input name.

``stages`` (optional) names the 1-based stages that get the block by default — e.g. BAM sits at the
stage boundaries, after stages 1 and 2, where the resolution is about to halve.

A block class whose *default* training behaviour changes (an init, a momentum) gets a ``spec_revision``
class attribute (default 0) that is bumped with the change: recorded experiment runs are identified by it
(:func:`attncourse.experiments.arm_spec`), so the old runs are retrained instead of reused.

Blocks that compute an attention map expose ``attention_maps(x) -> dict[str, Tensor]``, which
:mod:`attncourse.viz` draws. It is a picture of the model as it predicts: no grad, eval mode, and the
block's modes are restored afterwards, so it never moves BatchNorm statistics (:func:`picture_helper`).

The block contract: ``forward`` returns the right output or raises a ``ValueError`` naming the block and
the input's shape — for a wrong rank, channel count or dtype (a float64 input to a float32 block; under
autocast lower-precision activations are fine), an input BatchNorm cannot normalise in training mode
(batch 1 with a 1×1 map), and so on. A block gets this by calling :func:`check_input` (``check_input(self,
x, channels)``) first in ``forward``. ``tests/test_block_contract.py`` runs every registered block, new
ones included, through the contract (wrong input, empty batch, batch 1, 1×1 and odd maps, channels_last
and non-contiguous input, autocast, float64 gradcheck, determinism, efficient vs naive forms).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from torch import nn

from ._common import check_input, picture_helper

__all__ = ["BlockSpec", "register_block", "create_block", "list_blocks", "get_block_spec", "BLOCKS", "check_input",
           "picture_helper"]

PLACEMENTS = ("residual", "stage")


@dataclass(frozen=True)
class BlockSpec:
    name: str
    factory: Callable[..., nn.Module]
    placement: str = "residual"
    family: str = ""
    paper: str = ""
    defaults: dict = field(default_factory=dict)
    stages: tuple[int, ...] | None = None
    inputs: int = 1


BLOCKS: dict[str, BlockSpec] = {}


def register_block(name: str, *, placement: str = "residual", family: str = "", paper: str = "",
                   stages: tuple[int, ...] | None = None, inputs: int = 1, **defaults):
    """Decorator registering a block class (or factory) under ``name``.

    ``defaults`` are keyword arguments passed to the factory unless the caller overrides them
    (so ``"scse_max"`` can be ``SCSE`` with ``combine="max"``). ``inputs`` is how many tensors ``forward``
    takes (1, or 2 for a fusion block ``forward(x, y)``).
    """
    if isinstance(inputs, bool) or inputs not in (1, 2):
        raise ValueError(f"register_block({name!r}): inputs must be 1 or 2, got {inputs!r}")
    if placement not in PLACEMENTS:
        raise ValueError(f"register_block({name!r}): placement must be one of {PLACEMENTS}, got {placement!r}")

    def decorator(factory):
        key = name.lower()
        if key in BLOCKS and BLOCKS[key].factory is not factory:
            raise ValueError(f"register_block: name {name!r} is already registered by {BLOCKS[key].factory!r}")
        BLOCKS[key] = BlockSpec(key, factory, placement, family, paper, dict(defaults),
                                tuple(stages) if stages is not None else None, inputs)
        return factory

    return decorator


def get_block_spec(name: str) -> BlockSpec:
    key = str(name).lower()
    if key not in BLOCKS:
        raise ValueError(f"unknown attention block {name!r}; registered blocks: {', '.join(sorted(BLOCKS))}")
    return BLOCKS[key]


def create_block(name: str, channels: int, **kwargs) -> nn.Module:
    """Build the block registered as ``name`` for ``channels`` input channels."""
    spec = get_block_spec(name)
    return spec.factory(channels, **{**spec.defaults, **kwargs})


def list_blocks(family: str | None = None, inputs: int | None = 1) -> list[str]:
    """Registered block names, optionally only those of one family (e.g. ``"channel"``).

    ``inputs``: 1 (default) lists the one-input blocks a backbone can place, 2 the two-input fusion blocks,
    ``None`` every block.
    """
    return sorted(n for n, s in BLOCKS.items()
                  if (family is None or s.family == family) and (inputs is None or s.inputs == inputs))


class Identity(nn.Identity):
    """The baseline: no attention. Accepts and ignores block keyword arguments.

    It keeps the block contract: the input must be ``[N, C, H, W]`` (with ``C = channels`` when given).
    """

    def __init__(self, channels: int | None = None, **_):
        super().__init__()
        self.channels = channels

    def forward(self, x):
        check_input(self, x, self.channels)
        return x


register_block("none", family="baseline", paper="(no attention)")(Identity)

# Family files register their blocks on import.
from . import inception, channel, second_order, gather_excite, nonlocal_, mixed, dual, branch, temporal, position, fusion  # noqa: E402,F401
