"""Helpers every block shares: the input contract, side-effect-free picture helpers, reduced-width arithmetic.

The block contract (enforced for every registered block by ``tests/test_block_contract.py``): a block's
``forward`` either returns the right output or raises a ``ValueError`` that names the block and the
input's shape. :func:`check_input` is the one function every block calls first to get there.
"""
from __future__ import annotations

import functools
import math
import numbers

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["check_input", "picture_helper", "reduced_width", "make_divisible", "positive_int", "GateBlock", "DilatedConv2d"]

_LAYOUTS = {4: "[N, C, H, W]", 5: "[N, C, T, H, W]", 3: "[N, C, L]"}


def _autocast_on(device_type: str) -> bool:
    """Whether autocast is active for ``device_type`` (inputs may then be bf16/fp16 while weights are fp32)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4: no device argument
        if device_type == "cpu":
            return torch.is_autocast_cpu_enabled()
        return torch.is_autocast_enabled()


def _first_param(module: nn.Module) -> torch.Tensor | None:
    """The first parameter in ``module.parameters()`` order, found without the generator machinery (runs per forward)."""
    for p in module._parameters.values():
        if p is not None:
            return p
    for child in module._modules.values():
        if child is not None:
            p = _first_param(child)
            if p is not None:
                return p
    return None


def check_input(block: nn.Module | str, x, channels: int | None = None, ndim: int = 4, *, name: str | None = None) -> None:
    """Raise ``ValueError`` naming the block and ``x``'s shape when ``x`` breaks the block contract.

    ``block`` is the module itself (preferred: it enables the checks that need it) or its name; ``name``
    overrides the name in messages. Checked, in order:

    * ``x`` is a tensor of ``ndim`` dimensions with ``channels`` channels and non-empty spatial axes
      (the batch may be empty);
    * ``x`` is floating point and — for a module with parameters, outside autocast — has the
      parameters' dtype (a float64 input to a float32 block is an error, not a silent cast);
    * a module in training mode that holds BatchNorm gets more than one value per channel
      (batch 1 with a 1×1 map cannot be normalised with batch statistics).

    Plain Python checks on shapes and dtypes: nothing is computed on the tensor.
    """
    module = block if isinstance(block, nn.Module) else None
    if name is None:
        name = type(block).__name__ if module is not None else str(block)
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    layout = _LAYOUTS.get(ndim, f"{ndim}-D")
    shape = tuple(x.shape)
    if x.dim() != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D input {layout}, got shape {shape}")
    if channels is not None and shape[1] != channels:
        raise ValueError(
            f"{name}: expected {channels} channels (input {layout} with C={channels}), "
            f"got shape {shape} with C={shape[1]}"
        )
    if 0 in shape[2:]:
        raise ValueError(f"{name}: the spatial size must be at least 1 along every axis, got shape {shape}")
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point input, got a {x.dtype} tensor of shape {shape}; "
                         f"convert it with x.float()")
    if module is None:
        return
    p = _first_param(module)
    if p is not None and x.dtype != p.dtype and not _autocast_on(x.device.type):
        raise ValueError(f"{name}: the input dtype {x.dtype} does not match the block's parameters ({p.dtype}), "
                         f"got shape {shape}; convert the input (x.to({p.dtype})) or the block (e.g. .double())")
    if math.prod(shape[:1] + shape[2:]) == 1 and any(isinstance(m, _BatchNorm) and m.training
                                                      for m in module.modules()):
        raise ValueError(f"{name}: in training mode its BatchNorm needs more than one value per channel, got "
                         f"shape {shape} (batch 1 with a 1×1 map); use a larger batch or map, or eval()")


def check_batch_one_training(net: nn.Module, x: torch.Tensor, *, name: str | None = None,
                             per_sample: str | None = None) -> None:
    """``ValueError`` when a network in training mode gets batch 1 whose map some BatchNorm would see as 1×1.

    BatchNorm in training mode needs more than one value per channel. A network's first layers may see a large map
    while a later stage sees one pixel, so :func:`check_input` on the input cannot tell. Only for batch 1 in
    training mode (the rare case), this runs the network once in eval mode without gradients — no running statistic
    or other state moves, every submodule's mode is restored — and records what each BatchNorm would get. Call it
    at the top of ``forward`` (after :func:`check_input`); it costs nothing for any other batch.

    ``per_sample`` names a BatchNorm of the network that normalises one vector per sample (e.g. re-ID's
    ``"BNNeck"``, which eval mode skips): it sees one value per channel for every batch 1, so batch 1 in training
    fails at once, naming it, without the dry run.
    """
    if not net.training or x.ndim < 2 or x.shape[0] != 1:
        return
    if per_sample:
        raise ValueError(f"{name or type(net).__name__}: in training mode its {per_sample} (a BatchNorm over one vector "
                         f"per sample) needs more than one value per channel, but got batch 1 of shape "
                         f"{tuple(x.shape)}; use a batch of 2 or more, or eval()")
    bns = [(n, m) for n, m in net.named_modules() if isinstance(m, _BatchNorm)]
    if not bns:
        return
    single = []
    hooks = [m.register_forward_pre_hook(
        lambda mod, inp, where=n: single.append((where, tuple(inp[0].shape)))
        if inp[0].numel() == inp[0].shape[1] else None) for n, m in bns]
    modes = {m: m.training for m in net.modules()}
    try:
        net.eval()
        with torch.no_grad():
            net(x)
    finally:
        for h in hooks:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    if single:
        where, shape = single[0]
        raise ValueError(f"{name or type(net).__name__}: in training mode its BatchNorm needs more than one value per "
                         f"channel, but batch 1 of shape {tuple(x.shape)} reaches {where!r} as {shape}; use a larger "
                         f"batch or image, or eval()")


def picture_helper(fn):
    """Decorator for no-grad helpers that look at a block (``attention_maps``, ``query_attention``).

    The helper runs under ``torch.no_grad()`` with the block in eval mode, so it never updates BatchNorm
    running statistics or other training-mode state; every submodule's mode is restored afterwards,
    also when the helper raises.
    """

    @functools.wraps(fn)
    def wrapper(self: nn.Module, *args, **kwargs):
        modes = [(m, m.training) for m in self.modules()]
        self.eval()
        try:
            with torch.no_grad():
                return fn(self, *args, **kwargs)
        finally:
            for m, training in modes:
                m.training = training

    return wrapper


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def positive_int(block: str, what: str, value) -> int:
    """``value`` as an int, or ``ValueError`` naming ``block`` unless it is a positive integer (not a bool)."""
    if not _is_int(value) or value < 1:
        raise ValueError(f"{block}: {what} must be a positive int, got {value!r}")
    return int(value)


def check_choice(block: str, what: str, value, choices: tuple) -> None:
    """``ValueError`` naming ``block`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{block}: {what} must be one of {choices}, got {value!r}")


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` (not below 90 % of it), as timm does."""
    min_value = min_value or divisor
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def reduced_width(block: str, channels: int, reduction: float, reduced_channels: int | None = None, min_channels: int = 1) -> int:
    """The bottleneck width ``channels // reduction`` (at least ``min_channels``), or the explicit override.

    Raises ``ValueError`` naming ``block`` for non-positive channels, a reduction that is not a positive
    finite number (``nan``, ``inf``, a bool, a string) or one larger than ``channels``.
    """
    if not _is_int(channels) or channels < 1:
        raise ValueError(f"{block}: channels must be a positive int, got {channels!r}")
    if reduced_channels is not None:
        if not _is_int(reduced_channels) or reduced_channels < 1:
            raise ValueError(f"{block}: reduced_channels must be a positive int, got {reduced_channels!r}")
        return int(reduced_channels)
    if (isinstance(reduction, bool) or not isinstance(reduction, numbers.Real) or not math.isfinite(reduction)
            or reduction <= 0):
        raise ValueError(f"{block}: reduction must be a positive finite number, got {reduction!r}")
    if reduction > channels:
        raise ValueError(
            f"{block}: reduction={reduction} is larger than channels={channels}; "
            f"use a smaller reduction or pass reduced_channels"
        )
    return max(min_channels, int(channels // reduction))


class GateBlock(nn.Module):
    """Base of the blocks that compute one gate and multiply by it: ``y = x · weights(x)``.

    A subclass defines ``weights(x)`` (broadcastable to ``x``, values in (0, 1); it calls
    :func:`check_input` first) and ``map_name``, the key under which :meth:`attention_maps` returns the
    gate for pictures.
    """

    map_name = "weights"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(x)

    @picture_helper
    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{map_name: weights(x)}`` — the gate this block multiplies its input by (eval mode, no grad)."""
        return {self.map_name: self.weights(x)}


class DilatedConv2d(nn.Conv2d):
    """``nn.Conv2d`` that computes in the standard (NCHW) layout when a *dilated* conv runs under CPU bf16 autocast,
    and is a plain ``nn.Conv2d`` everywhere else (same parameters, same state dict). The SK and split-attention
    branches and the plain stacks of module 01 (``ConvBNReLU``) use it. The segmentation backbone's dilated conv
    (64 channels on 12×12 maps) trains correctly in channels_last and stays an ``nn.Conv2d``.

    Why: measured on torch 2.14.1 on an x86-64 CPU with AVX512-BF16, dilated convs under bf16 autocast return NaN
    weight gradients for some shapes when the weight or the input is channels_last, and correct ones in NCHW or in
    float32: ``Conv2d(16, 16, 3, dilation=2, padding=2, groups=2)`` on a ``[128, 16, 40, 40]`` batch (an SK unit's
    branch), and ``Conv2d(26, 26, 3, dilation=2, padding=2)`` on ``[64, 26, 40, 40]`` (the first stage of
    module 01's receptive-field control). Others of the same kind train correctly, so the cause is a kernel choice,
    not the shape family; ``fit`` picks bf16 and channels_last on such a CPU, so any dilated conv computes in NCHW
    there. ``tests/test_blocks_branch.py`` runs both failing cases through this class.
    """

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias):
        if input.device.type == "cpu" and max(self.dilation) > 1 and _autocast_on("cpu"):
            input, weight = input.contiguous(), weight.contiguous()
        return super()._conv_forward(input, weight, bias)
