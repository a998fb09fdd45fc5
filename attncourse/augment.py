"""Augmentation shared by the training loop and the objectives: random integer translations.

Below both :mod:`attncourse.train` and :mod:`attncourse.objectives` (each imports it from here), so neither
imports the other to reach it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["random_translate", "translate_batch"]


def random_translate(x: torch.Tensor, max_shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shift each image in the batch by its own random integer offset in ``[-max_shift, max_shift]`` px.

    Runs on ``x``'s device (``grid_sample`` with zero padding); ``[N, C, H, W] → [N, C, H, W]``.
    """
    if max_shift <= 0:
        return x
    n, _, h, w = x.shape
    shifts = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=generator, device="cpu").to(x.device, torch.float32)
    theta = torch.zeros(n, 2, 3, device=x.device)
    theta[:, 0, 0] = 1
    theta[:, 1, 1] = 1
    theta[:, 0, 2] = -2 * shifts[:, 0] / w  # grid coordinates span [-1, 1]
    theta[:, 1, 2] = -2 * shifts[:, 1] / h
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid.to(x.dtype), mode="nearest", padding_mode="zeros", align_corners=False)


def translate_batch(x: torch.Tensor, max_shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """:func:`random_translate` for ``[N, C, H, W]`` or ``[N, T, C, H, W]`` (one shift per sample)."""
    if x.dim() == 5:
        n, t, c, h, w = x.shape
        return random_translate(x.reshape(n, t * c, h, w), max_shift, generator).reshape(n, t, c, h, w)
    return random_translate(x, max_shift, generator)
