"""Helpers every block shares: input validation and reduced-width arithmetic."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["check_input", "reduced_width", "make_divisible", "GateBlock"]


def check_input(block: str, x: torch.Tensor, channels: int | None = None, ndim: int = 4) -> None:
    """Raise ``ValueError`` naming ``block`` when ``x`` is not ``ndim``-D with ``channels`` channels.

    Blocks call this first in ``forward`` so bad input never broadcasts silently.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{block}: expected a torch.Tensor, got {type(x).__name__}")
    layout = {4: "[N, C, H, W]", 5: "[N, C, T, H, W]", 3: "[N, C, L]"}.get(ndim, f"{ndim}-D")
    if x.dim() != ndim:
        raise ValueError(f"{block}: expected a {ndim}-D input {layout}, got shape {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(
            f"{block}: expected {channels} channels (input {layout} with C={channels}), "
            f"got shape {tuple(x.shape)} with C={x.shape[1]}"
        )


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` (not below 90 % of it), as timm does."""
    min_value = min_value or divisor
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def reduced_width(block: str, channels: int, reduction: float, reduced_channels: int | None = None, min_channels: int = 1) -> int:
    """The bottleneck width ``channels // reduction`` (at least ``min_channels``), or the explicit override.

    Raises ``ValueError`` naming ``block`` for non-positive channels or a reduction larger than ``channels``.
    """
    if channels < 1:
        raise ValueError(f"{block}: channels must be positive, got {channels}")
    if reduced_channels is not None:
        if reduced_channels < 1:
            raise ValueError(f"{block}: reduced_channels must be positive, got {reduced_channels}")
        return int(reduced_channels)
    if reduction <= 0:
        raise ValueError(f"{block}: reduction must be positive, got {reduction}")
    if reduction > channels:
        raise ValueError(
            f"{block}: reduction={reduction} is larger than channels={channels}; "
            f"use a smaller reduction or pass reduced_channels"
        )
    return max(min_channels, int(channels // reduction))


class GateBlock(nn.Module):
    """Base of the blocks that compute one gate and multiply by it: ``y = x · weights(x)``.

    A subclass defines ``weights(x)`` (broadcastable to ``x``, values in (0, 1)) and ``map_name``, the key under
    which :meth:`attention_maps` returns the gate for pictures.
    """

    map_name = "weights"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(x)

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{map_name: weights(x)}`` — the gate this block multiplies its input by."""
        return {self.map_name: self.weights(x)}
