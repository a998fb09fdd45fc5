"""Global context without the N×N map: GCNet, CCNet, EMANet and GloRe — the cheaper routes to what the
non-local block (:mod:`attncourse.blocks.nonlocal_`) computes with all pairs.

Papers:

* **GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond** — Cao, Xu, Lin, Wei, Hu,
  arXiv:1904.11492 (``GlobalContext``): one query-independent attention map, pooled to ``[B, C, 1, 1]``.
* **CCNet: Criss-Cross Attention for Semantic Segmentation** — Huang, Wang, Huang, Huang, Wei, Liu,
  arXiv:1811.11721 (``CrissCrossAttention``): each position attends to its row and column, ``R`` times.
* **Expectation-Maximization Attention Networks for Semantic Segmentation** — Li et al.,
  arXiv:1907.13426 (``EMAUnit``): attention over ``K`` bases found by EM instead of ``N`` positions.
* **Graph-Based Global Reasoning Networks** — Chen et al., arXiv:1811.12814 (``GloRe``): positions
  projected onto a few graph nodes, a GCN over the nodes, projected back.

Registered blocks: ``gc`` and ``gc_mul`` (on the residual branch), ``cc``, ``ema``, ``glore`` (between stages),
all in the ``"nonlocal"`` family.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import register_block
from ._common import check_choice as _check_choice, check_input, picture_helper, reduced_width
from ._common import positive_int as _positive_int

__all__ = ["GlobalContext", "CrissCrossAttention", "EMAUnit", "GloRe", "criss_cross_mask"]

GC_PAPER = "GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond (arXiv:1904.11492)"
CC_PAPER = "CCNet: Criss-Cross Attention for Semantic Segmentation (arXiv:1811.11721)"
EMA_PAPER = "Expectation-Maximization Attention Networks for Semantic Segmentation (arXiv:1907.13426)"
GLORE_PAPER = "Graph-Based Global Reasoning Networks (arXiv:1811.12814)"


# =========================================================================== GCNet
@register_block("gc", family="nonlocal", paper=GC_PAPER + "; add fusion")
@register_block("gc_mul", family="nonlocal", paper=GC_PAPER + "; multiplicative (sigmoid) fusion", fuse="mul")
class GlobalContext(nn.Module):
    """The global context block (GCNet): one query-independent attention map shared by every position.

    ``context modelling``  a = softmax_HW(W_k x)             [B, C, H, W] → [B, 1, H, W] → [B, 1, N]
                           c = Σ_j a_j x_j                   → [B, C, 1, 1]
    ``transform``          t = W_v2 ReLU(LN(W_v1 c))         → [B, C/r, 1, 1] → [B, C, 1, 1]
    ``fusion``             add: x + t   |   mul: x · σ(t)    → [B, C, H, W]

    Args:
        channels: ``C``; reduction ``r`` (default 16) or ``reduced_channels`` (overrides).
        fuse: ``"add"`` (the paper's default), ``"mul"`` or ``"both"`` (mul first, then add, as the official code).
        pool: ``"att"`` (softmax context, the paper) or ``"avg"`` (global average pooling: an SE-like context).
        eps: LayerNorm epsilon; 1e-5 as ``nn.LayerNorm([C/r, 1, 1])`` in the official code (timm uses 1e-6).

    Init as the official code's ``reset_parameters`` (``kaiming_init(conv_mask, mode="fan_in")`` and
    ``last_zero_init`` for both transforms): the mask conv Kaiming-normal (fan_in), bias 0; the first conv of each
    transform PyTorch's default (the official block leaves it to ``nn.Conv2d``), LayerNorm scale 1 and shift 0; the
    last conv of each transform zero (weight and bias). With ``fuse="add"`` the block starts as the identity; with
    ``fuse="mul"`` as ``x · σ(0) = x / 2``. :meth:`reset_parameters` sets every parameter of the block, so it starts
    the same inside a backbone as on its own.
    """

    spec_revision = 1  # 1: inside a backbone the transforms' first conv keeps this init (was re-drawn Kaiming, ~10×)

    def __init__(self, channels: int, reduction: float = 16, reduced_channels: int | None = None, fuse: str = "add",
                 pool: str = "att", eps: float = 1e-5):
        super().__init__()
        name = type(self).__name__
        _positive_int(name, "channels", channels)
        _check_choice(name, "fuse", fuse, ("add", "mul", "both"))
        _check_choice(name, "pool", pool, ("att", "avg"))
        planes = reduced_width(name, channels, reduction, reduced_channels)
        self.channels, self.reduced_channels, self.fuse, self.pool = channels, planes, fuse, pool
        self.conv_mask = nn.Conv2d(channels, 1, 1) if pool == "att" else None

        def transform():
            return nn.Sequential(nn.Conv2d(channels, planes, 1), nn.LayerNorm([planes, 1, 1], eps=eps),
                                 nn.ReLU(inplace=True), nn.Conv2d(planes, channels, 1))

        self.channel_add = transform() if fuse in ("add", "both") else None
        self.channel_mul = transform() if fuse in ("mul", "both") else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.conv_mask is not None:
            nn.init.kaiming_normal_(self.conv_mask.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(self.conv_mask.bias)
        for transform in (self.channel_add, self.channel_mul):
            if transform is not None:
                transform[0].reset_parameters()
                transform[1].reset_parameters()
                nn.init.zeros_(transform[-1].weight)
                nn.init.zeros_(transform[-1].bias)

    def context_weights(self, x: torch.Tensor) -> torch.Tensor:
        """The attention over positions ``[B, 1, N]`` (softmax of the mask conv; uniform for ``pool="avg"``)."""
        b, _, h, w = x.shape
        if self.conv_mask is None:
            return x.new_full((b, 1, h * w), 1.0 / (h * w))
        return self.conv_mask(x).reshape(b, 1, h * w).softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.channels)
        b, c = x.shape[:2]
        context = torch.bmm(x.flatten(2), self.context_weights(x).transpose(1, 2)).reshape(b, c, 1, 1)
        out = x
        if self.channel_mul is not None:
            out = out * torch.sigmoid(self.channel_mul(context))
        if self.channel_add is not None:
            out = out + self.channel_add(context)
        return out

    @picture_helper
    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"context": [B, H, W]}``: the one attention map every position shares (sums to 1)."""
        check_input(self, x, self.channels)
        return {"context": self.context_weights(x).reshape(x.shape[0], *x.shape[-2:])}


# =========================================================================== CCNet
def criss_cross_mask(h: int, w: int, device=None) -> torch.Tensor:
    """Boolean ``[N, N]`` (N = h·w): True where key j shares a row or a column with query i (centre once)."""
    rows = torch.arange(h, device=device).repeat_interleave(w)
    cols = torch.arange(w, device=device).repeat(h)
    return (rows[:, None] == rows[None, :]) | (cols[:, None] == cols[None, :])


@register_block("cc", placement="stage", family="nonlocal", paper=CC_PAPER + "; R = 2 recurrences")
class CrissCrossAttention(nn.Module):
    """Criss-cross attention (CCNet), applied ``recurrence`` times with shared weights.

    Per pass, for queries ``q`` and keys ``k`` at ``C/8`` and values ``v`` at ``C`` (1×1 convs)::

        e_col[b, i, j, i'] = q[:, i, j] · k[:, i', j]        [B, H, W, H]   (−∞ where i' = i: the centre
        e_row[b, i, j, j'] = q[:, i, j] · k[:, i, j']        [B, H, W, W]    is counted once, in e_row)
        a = softmax(cat[e_col, e_row], last axis)           [B, H, W, H+W]  (no scale, as the paper)
        out = γ · (Σ_i' a_col v[:, i', j] + Σ_j' a_row v[:, i, j']) + x     [B, C, H, W]

    γ starts at 0 (identity at init). Two passes let every pixel reach every other one.
    Cost per pass: O(N·(H+W)·C) time, O(N·(H+W)) memory, against O(N²) for the non-local block.
    """

    def __init__(self, channels: int, recurrence: int = 2, reduction: float = 8, reduced_channels: int | None = None):
        super().__init__()
        name = type(self).__name__
        _positive_int(name, "channels", channels)
        _positive_int(name, "recurrence", recurrence)
        d = reduced_width(name, channels, reduction, reduced_channels)
        self.channels, self.reduced_channels, self.recurrence = channels, d, recurrence
        self.query = nn.Conv2d(channels, d, 1)
        self.key = nn.Conv2d(channels, d, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))  # built at the init reset_parameters applies

    def reset_parameters(self) -> None:
        """As the official code: the query/key/value convs PyTorch's default, γ = 0 (the identity at init)."""
        for conv in (self.query, self.key, self.value):
            conv.reset_parameters()
        nn.init.zeros_(self.gamma)

    def criss_cross_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Attention of one pass, ``[B, H, W, H+W]``: the first H over the column, the last W over the row."""
        q, k = self.query(x), self.key(x)
        h = x.shape[2]
        e_col = torch.einsum("bchw,bcgw->bhwg", q, k)  # [B, H, W, H]
        e_row = torch.einsum("bchw,bchv->bhwv", q, k)  # [B, H, W, W]
        centre = torch.eye(h, dtype=torch.bool, device=x.device)[:, None, :]  # [H, 1, H]: i' == i
        e_col = e_col.masked_fill(centre, float("-inf"))
        return torch.cat([e_col, e_row], dim=-1).softmax(dim=-1)

    def _once(self, x: torch.Tensor) -> torch.Tensor:
        h = x.shape[2]
        a = self.criss_cross_weights(x)
        v = self.value(x)
        out = torch.einsum("bhwg,bcgw->bchw", a[..., :h], v) + torch.einsum("bhwv,bchv->bchw", a[..., h:], v)
        return self.gamma * out + x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.channels)
        for _ in range(self.recurrence):
            x = self._once(x)
        return x

    @picture_helper
    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"attention": [B, H, W, H+W]}`` of the first pass (column part first, then row)."""
        check_input(self, x, self.channels)
        return {"attention": self.criss_cross_weights(x)}

    @picture_helper
    def query_attention(self, x: torch.Tensor, i: int, j: int) -> torch.Tensor:
        """Where pixel (i, j) looks in the first pass: ``[B, H, W]``, non-zero on its row and column only."""
        b, _, h, w = x.shape
        if not (0 <= i < h and 0 <= j < w):
            raise ValueError(f"{type(self).__name__}: query ({i}, {j}) outside the {h}×{w} map")
        a = self.attention_maps(x)["attention"][:, i, j]  # [B, H+W]
        out = x.new_zeros(b, h, w)
        out[:, :, j] = a[:, :h]
        out[:, i, :] += a[:, h:]
        return out

    def extra_repr(self) -> str:
        return f"channels={self.channels}, reduced_channels={self.reduced_channels}, recurrence={self.recurrence}"


# =========================================================================== EMANet
@register_block("ema", placement="stage", family="nonlocal", paper=EMA_PAPER + "; K = 64 bases, T = 3 EM iterations")
class EMAUnit(nn.Module):
    """Expectation-maximisation attention unit (EMANet's EMAU): attention over K bases instead of N positions.

    ::

        x' = conv1×1(x)                        [B, C, N]
        repeat T times (no gradient, as the official code):
            E: z = softmax_K(x'ᵀ μ)            [B, N, K]     responsibilities
            M: μ = x' z / Σ_n z, then ℓ2-normalise each basis over C      [B, C, K]
        x̃ = ReLU(μ zᵀ)                         [B, C, N]     low-rank reconstruction
        out = ReLU(x + BN(conv1×1(x̃)))         [B, C, H, W]

    μ is a buffer, initialised N(0, 2/K) and ℓ2-normalised; in training mode it is updated after each
    forward pass by a moving average of the batch-mean bases (momentum 0.9; the official code does this
    in its training loop). Because the E/M steps run under ``no_grad``, ``conv1`` gets no gradient
    (as in the official code; its author says so in XiaLiPKU/EMANet issue #14).
    An empty batch leaves μ as it is (its batch mean would be NaN). Cost O(N·K·C·T): linear in N.
    """

    #: what the block deliberately detaches (read by the contract test: the gradient with respect to the
    #: input then skips this path, so a numerical gradient check of ``x`` cannot match).
    stops_gradient = "the E/M steps: μ and z carry no gradient to x or conv1 (official code)"

    def __init__(self, channels: int, bases: int = 64, iterations: int = 3, momentum: float = 0.9):
        super().__init__()
        name = type(self).__name__
        _positive_int(name, "channels", channels)
        _positive_int(name, "bases", bases)
        _positive_int(name, "iterations", iterations)
        if not 0 <= momentum <= 1:
            raise ValueError(f"{name}: momentum must be in [0, 1], got {momentum!r}")
        self.channels, self.bases, self.iterations, self.momentum = channels, bases, iterations, momentum
        self.conv1 = nn.Conv2d(channels, channels, 1)
        self.conv2 = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.register_buffer("mu", torch.zeros(1, channels, bases))
        self.reset_parameters()

    @staticmethod
    def _l2norm(t: torch.Tensor) -> torch.Tensor:
        return t / (1e-6 + t.norm(dim=1, keepdim=True))

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.mu.normal_(0, math.sqrt(2.0 / self.bases))
            self.mu.copy_(self._l2norm(self.mu))
        for conv in (self.conv1, self.conv2):
            nn.init.normal_(conv.weight, 0, math.sqrt(2.0 / conv.out_channels))
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        nn.init.ones_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)

    @torch.no_grad()
    def em(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """T EM iterations on ``x' [B, C, N]``: ``(μ [B, C, K], z [B, N, K])``."""
        mu = self.mu.expand(x.shape[0], -1, -1).to(x.dtype)
        for _ in range(self.iterations):
            z = torch.bmm(x.transpose(1, 2), mu).softmax(dim=2)
            mu = self._l2norm(torch.bmm(x, z / (1e-6 + z.sum(dim=1, keepdim=True))))
        return mu, z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.channels)
        b, c, h, w = x.shape
        mu, z = self.em(self.conv1(x).flatten(2))
        rec = F.relu(torch.bmm(mu, z.transpose(1, 2))).reshape(b, c, h, w)
        if self.training and b > 0:
            with torch.no_grad():
                self.mu.mul_(self.momentum).add_(mu.mean(dim=0, keepdim=True).to(self.mu.dtype), alpha=1 - self.momentum)
        return F.relu(x + self.bn(self.conv2(rec)))

    @picture_helper
    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"responsibilities": [B, K, H, W]}``: how much each position belongs to each basis."""
        check_input(self, x, self.channels)
        _, z = self.em(self.conv1(x).flatten(2))
        return {"responsibilities": z.transpose(1, 2).reshape(x.shape[0], self.bases, *x.shape[-2:])}


# =========================================================================== GloRe
@register_block("glore", placement="stage", family="nonlocal", paper=GLORE_PAPER)
class GloRe(nn.Module):
    """Global reasoning unit: project positions onto a few graph nodes, reason with a GCN, project back.

    ::

        S = conv(x) [B, 2m, N] (states),  P = conv(x) [B, m, N] (projection)
        V = S Pᵀ                        [B, 2m, m]   positions → node features (÷N if ``normalize``)
        V' = W_s ReLU(V + V A_gᵀ)       [B, 2m, m]   graph conv: node mixing (A_g, with bias) + identity,
                                                     then state update (W_s, no bias)
        Y = V' P                        [B, 2m, N]   nodes → positions
        out = x + BN(conv(Y))           [B, C, H, W] (BN γ = 0: identity at init)

    ``m = num_mid`` defaults to ``C/4`` as in the official ResNet-50. Cost O(N·m²): linear in N.

    Init: the output BatchNorm (the official code's "blocker", which it marks to be zero-initialised) scale and shift
    0, so the unit starts as the identity; every conv (state, projection, both GCN convs, extension) PyTorch's
    default (the official unit sets none of its own). :meth:`reset_parameters` sets every parameter, so the unit
    starts the same inside a backbone as on its own.
    """

    spec_revision = 1  # 1: inside a backbone its convs keep this init (were re-drawn Kaiming, 1.7–4.9×)

    def __init__(self, channels: int, num_mid: int | None = None, normalize: bool = False):
        super().__init__()
        name = type(self).__name__
        _positive_int(name, "channels", channels)
        m = max(1, channels // 4) if num_mid is None else _positive_int(name, "num_mid", num_mid)
        self.channels, self.num_node, self.num_state, self.normalize = channels, m, 2 * m, normalize
        self.conv_state = nn.Conv2d(channels, 2 * m, 1)
        self.conv_proj = nn.Conv2d(channels, m, 1)
        self.gcn_node = nn.Conv1d(m, m, 1)
        self.gcn_state = nn.Conv1d(2 * m, 2 * m, 1, bias=False)
        self.conv_extend = nn.Conv2d(2 * m, channels, 1, bias=False)
        self.blocker = nn.BatchNorm2d(channels, eps=1e-4)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for conv in (self.conv_state, self.conv_proj, self.gcn_node, self.gcn_state, self.conv_extend):
            conv.reset_parameters()
        self.blocker.reset_parameters()
        nn.init.zeros_(self.blocker.weight)
        nn.init.zeros_(self.blocker.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.channels)
        b = x.shape[0]
        s = self.conv_state(x).flatten(2)  # [B, 2m, N]
        p = self.conv_proj(x).flatten(2)  # [B, m, N]
        v = torch.bmm(s, p.transpose(1, 2))  # [B, 2m, m]
        if self.normalize:
            v = v / s.shape[2]
        h = self.gcn_node(v.transpose(1, 2)).transpose(1, 2) + v
        v = self.gcn_state(F.relu(h))
        y = torch.bmm(v, p).reshape(b, self.num_state, *x.shape[-2:])
        return x + self.blocker(self.conv_extend(y))

    @picture_helper
    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"projection": [B, m, H, W]}``: how each position is assigned to each graph node."""
        check_input(self, x, self.channels)
        return {"projection": self.conv_proj(x)}
