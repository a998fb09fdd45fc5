"""Spatial-temporal attention for video re-identification (STA), and the temporal pooling baselines.

Fu et al., "STA: Spatial-Temporal Attention for Large-Scale Video-based Person Re-Identification",
AAAI 2019, arXiv:1811.04129. Baselines after Gao & Nevatia, "Revisiting Temporal Modeling for Video-based
Person ReID", arXiv:1805.02104 (temporal average pooling; temporal attention pooling).

These blocks are **clip heads**, not in-network blocks: each turns the frame feature maps of a tracklet,
``[N, T, C, H, W]``, into one clip feature map ``[N, C_out, H, W]`` (``out_channels``), which the model then
pools globally. So they are not in the ``[N, C, H, W] → [N, C, H, W]`` block registry (and not in
``tests/test_block_contract.py``); ``tests/test_blocks_temporal.py`` holds them to the same contract for
their shapes: a bad input raises a ``ValueError`` naming the block, the expected ``[N, T, C, H, W]`` and the
shape received.

* :class:`TemporalAvgPool` (TAP) — the mean over frames. ``out_channels = C``.
* :class:`TemporalAttentionPool` — one learned weight per frame: ``softmax_t(w·GAP(f_t) + b)``, then the
  weighted sum of the frames. ``out_channels = C``; zero-initialised, so it starts as TAP.
* :class:`STA` — parameter-free. ``out_channels = 2C``. Shape flow for ``f [N, T, C, H, W]``:

  1. spatial map per frame: ``g[n,t,h,w] = Σ_c f² / Σ_{h,w} Σ_c f²`` → ``[N, T, H, W]`` (sums to 1 per frame);
  2. the map cut into ``K`` horizontal regions (rows split as evenly as possible, row ``h`` in region
     ``⌊h·K/H⌋``); region score ``s[n,t,k] = Σ_{h,w ∈ k} g`` → ``[N, T, K]``;
  3. scores normalised across the frames: ``S[n,t,k] = s[n,t,k] / Σ_t s[n,t,k]`` → the ``T×K`` matrix;
  4. fusion, per region ``k``: the rows of the frame with the highest score (``argmax_t S``) → ``X₁``, and the
     score-weighted sum ``Σ_t S[n,t,k]·f[n,t,rows_k]`` → ``X₂``; each is a full ``[N, C, H, W]`` map;
     ``concat(X₁, X₂)`` → ``[N, 2C, H, W]``.

  In training it also sets ``aux_loss = reg_weight · mean_n ‖g_i − g_j‖_F`` for two frames ``i ≠ j`` chosen
  at random (the inter-frame regularisation), which :func:`attncourse.train.fit` adds to the loss.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._common import _autocast_on, _first_param, picture_helper, positive_int

__all__ = ["check_tracklets", "TemporalAvgPool", "TemporalAttentionPool", "STA", "TEMPORAL_HEADS", "create_temporal_head",
           "region_index"]

LAYOUT = "[N, T, C, H, W]"


def check_tracklets(block: nn.Module, x, channels: int | None = None) -> None:
    """``ValueError`` naming the block, the expected ``[N, T, C, H, W]`` and the shape when ``x`` cannot be taken.

    Checked: a tensor of 5 dimensions, ``C = channels``, at least one frame and a non-empty map, floating
    point, and (outside autocast) the dtype of the block's parameters. The batch may be empty.
    """
    name = type(block).__name__
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor {LAYOUT}, got {type(x).__name__}")
    shape = tuple(x.shape)
    if x.dim() != 5:
        raise ValueError(f"{name}: expected a 5-D tracklet batch {LAYOUT}, got shape {shape}")
    if channels is not None and shape[2] != channels:
        raise ValueError(f"{name}: expected {channels} channels (input {LAYOUT} with C={channels}), got shape {shape} "
                         f"with C={shape[2]}")
    if 0 in shape[1:]:
        raise ValueError(f"{name}: expected at least one frame and a non-empty map in {LAYOUT}, got shape {shape}")
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point input {LAYOUT}, got a {x.dtype} tensor of shape {shape}")
    p = _first_param(block)
    if p is not None and x.dtype != p.dtype and not _autocast_on(x.device.type):
        raise ValueError(f"{name}: the input dtype {x.dtype} does not match the block's parameters ({p.dtype}), got "
                         f"shape {shape} ({LAYOUT}); convert the input or the block")


def region_index(height: int, regions: int, device=None) -> torch.Tensor:
    """Region of each row: ``⌊h · K / H⌋`` → ``int64 [H]`` (regions as even as possible; empty when ``H < K``)."""
    return torch.arange(height, device=device) * regions // height


class TemporalAvgPool(nn.Module):
    """Temporal average pooling (TAP): ``[N, T, C, H, W] → [N, C, H, W]``, the mean over the frames."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = positive_int(type(self).__name__, "channels", channels)
        self.out_channels = self.channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tracklets(self, x, self.channels)
        return x.mean(1)

    @picture_helper
    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"frame_weights": [N, T]}`` — uniform ``1/T``."""
        check_tracklets(self, x, self.channels)
        return {"frame_weights": torch.full(x.shape[:2], 1.0 / x.shape[1], dtype=x.dtype, device=x.device)}


class TemporalAttentionPool(nn.Module):
    """Temporal attention pooling: one weight per frame, ``a = softmax_t(w·GAP(f_t) + b)``.

    ``[N, T, C, H, W] → GAP → [N, T, C] → linear → [N, T] → softmax over T → Σ_t a_t f_t → [N, C, H, W]``.
    The scoring layer is zero-initialised, so training starts from TAP.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.channels = positive_int(type(self).__name__, "channels", channels)
        self.out_channels = self.channels
        self.score = nn.Linear(self.channels, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)

    def frame_weights(self, x: torch.Tensor) -> torch.Tensor:
        check_tracklets(self, x, self.channels)
        s = self.score(x.mean((3, 4))).squeeze(-1)                               # [N, T]
        return (s if s.dtype == torch.float64 else s.float()).softmax(1).to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.frame_weights(x)
        return (a[:, :, None, None, None] * x).sum(1)

    @picture_helper
    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"frame_weights": [N, T]}``."""
        return {"frame_weights": self.frame_weights(x)}


class STA(nn.Module):
    """Spatial-temporal attention (Fu et al., AAAI 2019): ``[N, T, C, H, W] → [N, 2C, H, W]``.

    Args:
        channels: ``C`` of the frame features.
        regions: ``K`` horizontal regions (the paper's K = 4).
        reg_weight: weight of the inter-frame regularisation ``‖g_i − g_j‖_F`` set as ``aux_loss`` in training
            (0 switches it off). The paper adds it to the loss with a weight λ; ``0.1`` is this course's choice.
        eps: floor of the normalising sums (an all-zero frame or region gets no NaN).

    Parameter-free: every score is computed from the features themselves (see the module docstring).
    """

    def __init__(self, channels: int, regions: int = 4, reg_weight: float = 0.1, eps: float = 1e-12):
        super().__init__()
        self.channels = positive_int(type(self).__name__, "channels", channels)
        self.regions = positive_int(type(self).__name__, "regions", regions)
        if not reg_weight >= 0:
            raise ValueError(f"STA: reg_weight must be >= 0, got {reg_weight!r}")
        self.out_channels = 2 * self.channels
        self.reg_weight = float(reg_weight)
        self.eps = eps
        self.aux_loss = None

    def spatial_map(self, x: torch.Tensor) -> torch.Tensor:
        """``g [N, T, H, W]``: squared L2 norm over channels, normalised over positions (float32 or float64)."""
        check_tracklets(self, x, self.channels)
        energy = (x if x.dtype == torch.float64 else x.float()).square().sum(2)
        return energy / energy.sum((2, 3), keepdim=True).clamp_min(self.eps)

    def scores(self, g: torch.Tensor) -> torch.Tensor:
        """``S [N, T, K]`` from ``g [N, T, H, W]``: region sums, normalised across frames (uniform where all are 0)."""
        n, t, h, _ = g.shape
        rows = g.sum(3)                                                       # [N, T, H]
        region = region_index(h, self.regions, g.device)
        s = rows.new_zeros(n, t, self.regions).index_add_(2, region, rows)    # [N, T, K]
        total = s.sum(1, keepdim=True)
        return torch.where(total > self.eps, s / total.clamp_min(self.eps), torch.full_like(s, 1.0 / t))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.spatial_map(x)
        n, t, c, h, w = x.shape
        if self.training and self.reg_weight > 0 and t > 1 and n > 0:
            i, j = torch.randperm(t, device="cpu")[:2].tolist()
            self.aux_loss = self.reg_weight * (g[:, i] - g[:, j]).flatten(1).norm(dim=1).mean()
        s = self.scores(g)                                                    # [N, T, K]
        region = region_index(h, self.regions, x.device)
        weights = s[:, :, region].to(x.dtype)                                 # [N, T, H]: each row's region score
        best = F.one_hot(s.argmax(1), t).permute(0, 2, 1)[:, :, region].to(x.dtype)  # [N, T, H]: the best frame
        x1 = (best[:, :, None, :, None] * x).sum(1)                           # [N, C, H, W]
        x2 = (weights[:, :, None, :, None] * x).sum(1)
        return torch.cat([x1, x2], dim=1)

    @picture_helper
    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"spatial": g [N, T, H, W], "scores": S [N, T, K], "best_frame": [N, K]}``."""
        g = self.spatial_map(x)
        s = self.scores(g)
        return {"spatial": g, "scores": s, "best_frame": s.argmax(1)}

    def extra_repr(self) -> str:
        return f"{self.channels}, regions={self.regions}, reg_weight={self.reg_weight}"


TEMPORAL_HEADS = {"tap": TemporalAvgPool, "temporal_attention": TemporalAttentionPool, "sta": STA}


def create_temporal_head(name: str, channels: int, **kwargs) -> nn.Module:
    """Build a clip head by name: ``"tap"``, ``"temporal_attention"`` or ``"sta"``."""
    if name not in TEMPORAL_HEADS:
        raise ValueError(f"unknown temporal head {name!r}; choose one of {', '.join(TEMPORAL_HEADS)}")
    return TEMPORAL_HEADS[name](channels, **kwargs)
