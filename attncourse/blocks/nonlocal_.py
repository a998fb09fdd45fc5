"""Non-local blocks and the self-attention family: exact, and memory-efficient.

Papers:

* **Non-local Neural Networks** — Wang, Girshick, Gupta, He, arXiv:1711.07971 (``NonLocal2d``).
* **Disentangled Non-Local Neural Networks** — Yin et al., arXiv:2006.06668 (``DisentangledNonLocal2d``).
* **Asymmetric Non-local Neural Networks for Semantic Segmentation** — Zhu, Xu, Bai, Huang, Bai,
  arXiv:1908.07678 (``AsymmetricNonLocal2d``, APNB); its self-attention block comes from
  **OCNet: Object Context Network for Scene Parsing** — Yuan, Wang, arXiv:1809.00916 (``psp_sizes=None``).

The non-local operation (Eq. 1 of the paper) for an input ``x`` with ``N = H·W`` positions::

    y_i = 1/C(x) · Σ_j f(x_i, x_j) · g(x_j)          z = W·y + x   (residual)

Shape flow of ``NonLocal2d`` (the course notes walk exactly this; ``d = inner_channels = C/2``)::

    x            [B, C, H, W]
    θ, φ, g      1×1 convs            → [B, d, H, W] each   (φ, g optionally 2×2 max-pooled → M = N/4 keys)
    flatten                           → [B, d, N]
    θᵀφ                               → [B, N, M]   the pairwise scores (N² memory!)
    softmax over the last axis        → [B, N, M]   each row sums to 1 over positions
    × gᵀ                              → [B, N, d]
    back to a map                     → [B, d, H, W]
    W (1×1 conv) → BN (γ = 0)         → [B, C, H, W]
    + x                               → [B, C, H, W]   (γ = 0: the block starts as the identity)

The four pairwise functions ``f`` (``mode``) and their normalisation ``C(x)``:

======================  ==========================================  ====================
mode                    f(x_i, x_j)                                 C(x)
======================  ==========================================  ====================
``embedded_gaussian``   exp(θ(x_i)ᵀ φ(x_j) · s)                     Σ_j f  (→ softmax)
``gaussian``            exp(x_iᵀ x_j · s)  (θ = φ = identity)       Σ_j f  (→ softmax)
``dot_product``         θ(x_i)ᵀ φ(x_j) · s                          M (number of keys)
``concatenation``       ReLU(w_fᵀ [θ(x_i), φ(x_j)])                 M
======================  ==========================================  ====================

``s`` is ``scale``: ``None`` means no scaling (``s = 1``), as in the paper; timm's ``NonLocalAttn`` uses
``s = C**-0.5`` (``C`` the *input* channels, not ``d``).

Efficient, exact forms (``implementation="efficient"``, the default):

* softmax modes → ``F.scaled_dot_product_attention`` with ``scale`` passed explicitly (its default would
  be ``d**-0.5``). q/k/v are made contiguous in their last dimension: a plain ``transpose`` of the conv
  output is a non-contiguous view, and then only the O(N²)-memory math kernel can run (checked with
  ``torch.nn.attention.sdpa_kernel``; see ``benchmarks/attention_blocks.py``).
* dot product → re-associated ``θ (φᵀ g) / M``: ``[B, N, d] @ [B, d, d]``, O(N·d²) time, no N×M matrix.
* concatenation → no exact sub-quadratic form (the ReLU sits between the pairwise sum and the
  normalisation). Because ``w_fᵀ[θ_i, φ_j] = w_θᵀθ_i + w_φᵀφ_j``, the efficient path builds
  ``ReLU(a_i + b_j)`` directly (O(N·M) memory) instead of the ``[B, 2d, N, M]`` concatenated tensor
  of the naive path (O(d·N·M)); both are quadratic in N.

Other registered blocks here: ``dnl``, ``ann``, ``ocnet`` (between stages). The cheaper routes to global
context — ``gc`` (GCNet), ``cc`` (CCNet), ``ema`` (EMANet), ``glore`` (GloRe) — are in
:mod:`attncourse.blocks.context`; their names are importable from this module too.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import register_block
from ._common import check_choice, check_input, picture_helper, positive_int, reduced_width
from .context import CrissCrossAttention, EMAUnit, GlobalContext, GloRe, criss_cross_mask  # noqa: F401 (re-exported)

__all__ = [
    "MODES", "IMPLEMENTATIONS", "NonLocal2d", "GlobalContext", "CrissCrossAttention", "DisentangledNonLocal2d",
    "AsymmetricNonLocal2d", "EMAUnit", "GloRe", "sdpa_backends", "criss_cross_mask",
]

NL_PAPER = "Non-local Neural Networks (arXiv:1711.07971)"
DNL_PAPER = "Disentangled Non-Local Neural Networks (arXiv:2006.06668)"
ANN_PAPER = "Asymmetric Non-local Neural Networks for Semantic Segmentation (arXiv:1908.07678)"
OC_PAPER = "OCNet: Object Context Network for Scene Parsing (arXiv:1809.00916)"

MODES = ("embedded_gaussian", "gaussian", "dot_product", "concatenation")
SOFTMAX_MODES = ("embedded_gaussian", "gaussian")
IMPLEMENTATIONS = ("efficient", "naive")


_check_choice = check_choice  # the shared argument checks
_positive_int = positive_int


def _tokens(t: torch.Tensor) -> torch.Tensor:
    """``[B, d, H, W] → [B, 1, N, d]``, contiguous in ``d`` (what SDPA's fused CPU/GPU kernels need)."""
    return t.flatten(2).transpose(1, 2).contiguous().unsqueeze(1)


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(q kᵀ · scale) v for maps ``q [B, dq, H, W]``, ``k [B, dq, h, w]``, ``v [B, dv, h, w]`` → ``[B, dv, H·W]``."""
    out = F.scaled_dot_product_attention(_tokens(q), _tokens(k), _tokens(v), scale=scale)  # [B, 1, N, dv]
    return out.squeeze(1).transpose(1, 2)


def sdpa_backends(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None) -> list[str]:
    """Which SDPA backends can run on these exact tensors (each tried alone under ``sdpa_kernel``).

    >>> x = torch.randn(1, 8, 64)                      # [B, d, N], as a conv output flattens
    >>> 'MATH' in sdpa_backends(*(x.transpose(1, 2)[:, None],) * 3)
    True
    """
    import warnings

    from torch.nn.attention import SDPBackend, sdpa_kernel

    ok = []
    for name in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH"):
        backend = getattr(SDPBackend, name, None)
        if backend is None:
            continue
        try:
            with warnings.catch_warnings(), sdpa_kernel(backend):
                warnings.simplefilter("ignore")
                F.scaled_dot_product_attention(q, k, v, scale=scale)
            ok.append(name)
        except RuntimeError:
            pass
    return ok


# =========================================================================== Non-local
@register_block("nonlocal", placement="stage", family="nonlocal", paper=NL_PAPER + "; embedded Gaussian")
@register_block("nonlocal_gaussian", placement="stage", family="nonlocal", paper=NL_PAPER + "; Gaussian", mode="gaussian")
@register_block("nonlocal_dot", placement="stage", family="nonlocal", paper=NL_PAPER + "; dot product", mode="dot_product")
@register_block("nonlocal_concat", placement="stage", family="nonlocal", paper=NL_PAPER + "; concatenation", mode="concatenation")
@register_block("nonlocal_sub", placement="stage", family="nonlocal", paper=NL_PAPER + "; embedded Gaussian, φ and g 2×2 max-pooled",
                sub_sample=True)
class NonLocal2d(nn.Module):
    """The non-local block (Wang et al. 2018), 2-D, with four pairwise functions.

    Args:
        channels: input (and output) channels ``C``.
        mode: ``"embedded_gaussian"`` (default) | ``"gaussian"`` | ``"dot_product"`` | ``"concatenation"``.
        inner_channels: width ``d`` of θ, φ, g (default ``C // 2``, at least 1).
        sub_sample: max-pool φ and g by 2×2 (stride 2) after their convs, as the official code can
            (4× fewer keys ``M``; needs H, W ≥ 2; odd sizes are floored).
        scale: multiplies ``θᵀφ`` (softmax and dot-product modes). ``None`` = 1 (the paper);
            ``C**-0.5`` reproduces timm's ``NonLocalAttn``. Not defined for ``concatenation``.
        use_bn: BatchNorm after ``W`` with γ = β = 0 (the paper); without it ``W`` itself is zero-initialised.
            Either way the block starts as the identity.
        implementation: ``"efficient"`` (default; see the module docstring) or ``"naive"`` (the
            explicit N×M matrix, for teaching and tests). Both compute the same function.

    Shape: ``[B, C, H, W] → [B, C, H, W]``. ``attention_maps(x)`` returns the N×M matrix (naive, no grad).
    """

    def __init__(self, channels: int, mode: str = "embedded_gaussian", inner_channels: int | None = None,
                 sub_sample: bool = False, scale: float | None = None, use_bn: bool = True,
                 implementation: str = "efficient"):
        super().__init__()
        name = type(self).__name__
        _positive_int(name, "channels", channels)
        _check_choice(name, "mode", mode, MODES)
        _check_choice(name, "implementation", implementation, IMPLEMENTATIONS)
        inner = max(1, channels // 2) if inner_channels is None else _positive_int(name, "inner_channels", inner_channels)
        if scale is not None:
            if mode == "concatenation":
                raise ValueError(f"{name}: scale is not defined for mode='concatenation' (its f is ReLU(w_fᵀ[θ, φ]))")
            if not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
                raise ValueError(f"{name}: scale must be a positive finite number or None, got {scale!r}")
        self.channels, self.inner_channels, self.mode = channels, inner, mode
        self.sub_sample, self.scale, self.implementation = bool(sub_sample), scale, implementation
        gaussian = mode == "gaussian"
        self.theta = None if gaussian else nn.Conv2d(channels, inner, 1)
        self.phi = None if gaussian else nn.Conv2d(channels, inner, 1)
        self.g = nn.Conv2d(channels, inner, 1)
        self.concat_project = nn.Conv2d(2 * inner, 1, 1, bias=False) if mode == "concatenation" else None
        self.pool = nn.MaxPool2d(2) if sub_sample else nn.Identity()
        self.W = nn.Conv2d(inner, channels, 1)
        self.bn = nn.BatchNorm2d(channels) if use_bn else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """As the authors' code: convs ~ N(0, 0.01²) with zero bias; BN γ = β = 0 (or W = 0 without BN)."""
        for conv in (self.theta, self.phi, self.g, self.concat_project, self.W):
            if conv is not None:
                nn.init.normal_(conv.weight, 0.0, 0.01)
                if conv.bias is not None:
                    nn.init.zeros_(conv.bias)
        if self.bn is not None:
            nn.init.zeros_(self.bn.weight)
            nn.init.zeros_(self.bn.bias)
        else:
            nn.init.zeros_(self.W.weight)
            nn.init.zeros_(self.W.bias)

    # ------------------------------------------------------------------ pieces
    @property
    def _s(self) -> float:
        return 1.0 if self.scale is None else float(self.scale)

    def _check(self, x: torch.Tensor) -> None:
        check_input(self, x, self.channels)
        if self.sub_sample and min(x.shape[-2:]) < 2:
            raise ValueError(f"{type(self).__name__}: sub_sample=True needs H, W >= 2 for the 2×2 max-pool, "
                             f"got shape {tuple(x.shape)}")

    def key_size(self, h: int, w: int) -> tuple[int, int]:
        """The key grid (h', w') for an h×w input: halved (floored) with ``sub_sample``."""
        return (h // 2, w // 2) if self.sub_sample else (h, w)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries θ(x) ``[B, dq, H, W]``, keys φ(x) and values g(x) ``[B, ·, h', w']`` (pooled if ``sub_sample``)."""
        q = x if self.theta is None else self.theta(x)
        k = x if self.phi is None else self.phi(x)
        return q, self.pool(k), self.pool(self.g(x))

    def pairwise(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """The normalised pairwise matrix ``f(x_i, x_j) / C(x)``: ``[B, N, M]`` (explicit, O(N·M) memory)."""
        qf, kf = q.flatten(2), k.flatten(2)  # [B, dq, N], [B, dq, M]
        m = kf.shape[-1]
        if self.mode == "concatenation":
            n = qf.shape[-1]
            cat = torch.cat([qf.unsqueeze(3).expand(-1, -1, n, m), kf.unsqueeze(2).expand(-1, -1, n, m)], dim=1)
            return F.relu(self.concat_project(cat)).squeeze(1) / m  # [B, 2d, N, M] → [B, N, M]
        scores = torch.bmm(qf.transpose(1, 2), kf) * self._s  # [B, N, M]
        return scores.softmax(dim=-1) if self.mode in SOFTMAX_MODES else scores / m

    def _aggregate_naive(self, q, k, v) -> torch.Tensor:
        return torch.bmm(self.pairwise(q, k), v.flatten(2).transpose(1, 2)).transpose(1, 2)  # [B, d, N]

    def _aggregate_efficient(self, q, k, v) -> torch.Tensor:
        kf, vf = k.flatten(2), v.flatten(2)  # [B, dq, M], [B, d, M]
        m = kf.shape[-1]
        if self.mode in SOFTMAX_MODES:
            return _sdpa(q, k, v, self._s)
        if self.mode == "dot_product":  # θ (φᵀ g) / M : [B, d, dq] @ [B, dq, N]
            context = torch.bmm(vf, kf.transpose(1, 2))  # [B, d, dq] = Σ_j g_j φ_jᵀ
            return torch.bmm(context, q.flatten(2)) * (self._s / m)
        # concatenation: ReLU(w_θᵀθ_i + w_φᵀφ_j) without the [B, 2d, N, M] tensor
        w = self.concat_project.weight.flatten()  # [2d]
        dq = q.shape[1]
        a = torch.einsum("c,bcn->bn", w[:dq], q.flatten(2))
        b = torch.einsum("c,bcm->bm", w[dq:], kf)
        f = F.relu(a.unsqueeze(2) + b.unsqueeze(1)) / m  # [B, N, M]
        return torch.bmm(vf, f.transpose(1, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        b, _, h, w = x.shape
        q, k, v = self.project(x)
        aggregate = self._aggregate_efficient if self.implementation == "efficient" else self._aggregate_naive
        y = aggregate(q, k, v).reshape(b, self.inner_channels, h, w)
        z = self.W(y)
        if self.bn is not None:
            z = self.bn(z)
        return x + z

    @picture_helper
    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"attention": [B, N, M]}``: row ``i·W + j`` holds what query (i, j) takes from each key
        (keys on the :meth:`key_size` grid, row-major). Explicit matrix: use small inputs."""
        self._check(x)
        q, k, _ = self.project(x)
        return {"attention": self.pairwise(q, k)}

    @picture_helper
    def query_attention(self, x: torch.Tensor, i: int, j: int) -> torch.Tensor:
        """Where query position (i, j) looks: ``[B, h', w']`` on the key grid."""
        h, w = x.shape[-2:]
        if not (0 <= i < h and 0 <= j < w):
            raise ValueError(f"{type(self).__name__}: query ({i}, {j}) outside the {h}×{w} map")
        a = self.attention_maps(x)["attention"][:, i * w + j]
        return a.reshape(x.shape[0], *self.key_size(h, w))

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, mode={self.mode!r}, inner_channels={self.inner_channels}, "
                f"sub_sample={self.sub_sample}, scale={self.scale}, implementation={self.implementation!r}")


# =========================================================================== Disentangled non-local
@register_block("dnl", placement="stage", family="nonlocal", paper=DNL_PAPER)
class DisentangledNonLocal2d(nn.Module):
    """Disentangled non-local block: a *whitened* pairwise term plus a separate *unary* term.

    ::

        θ̄ = θ(x) − mean_positions θ(x),  φ̄ = φ(x) − mean_positions φ(x)           [B, d, N]
        pairwise  P = softmax(θ̄ᵀ φ̄ / (√d · T))                                    [B, N, N]
        unary     u = softmax_positions(W_m x)                                     [B, 1, N] (same for every query)
        z = x + BN(W · ((P + u) gᵀ))                                               [B, C, H, W]

    As mmsegmentation's ``DisentangledNonLocal2d`` (the DNL head: ``d = C/2``, √d scaling, temperature
    ``T = 0.05``); BN γ = 0 so the block starts as the identity. Efficient path: SDPA on the whitened
    queries/keys with scale ``1/(√d·T)``, and the unary term is one context vector ``u gᵀ`` [B, d]
    broadcast to all queries (O(N·d)).
    """

    def __init__(self, channels: int, inner_channels: int | None = None, temperature: float = 0.05,
                 use_scale: bool = True, implementation: str = "efficient"):
        super().__init__()
        name = type(self).__name__
        _positive_int(name, "channels", channels)
        _check_choice(name, "implementation", implementation, IMPLEMENTATIONS)
        if not temperature > 0:
            raise ValueError(f"{name}: temperature must be positive, got {temperature!r}")
        d = max(1, channels // 2) if inner_channels is None else _positive_int(name, "inner_channels", inner_channels)
        self.channels, self.inner_channels, self.temperature = channels, d, float(temperature)
        self.use_scale, self.implementation = use_scale, implementation
        self.theta, self.phi, self.g = (nn.Conv2d(channels, d, 1) for _ in range(3))
        self.conv_mask = nn.Conv2d(channels, 1, 1)
        self.W = nn.Conv2d(d, channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for conv in (self.theta, self.phi, self.g, self.conv_mask, self.W):
            nn.init.normal_(conv.weight, 0.0, 0.01)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        nn.init.zeros_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)

    @property
    def _s(self) -> float:
        return (self.inner_channels ** -0.5 if self.use_scale else 1.0) / self.temperature

    def _whitened(self, x):
        q, k = self.theta(x), self.phi(x)
        return q - q.mean(dim=(2, 3), keepdim=True), k - k.mean(dim=(2, 3), keepdim=True)

    def _unary(self, x):
        return self.conv_mask(x).flatten(2).softmax(dim=-1)  # [B, 1, N]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.channels)
        b, _, h, w = x.shape
        q, k = self._whitened(x)
        v = self.g(x)
        vf = v.flatten(2)  # [B, d, N]
        u = self._unary(x)
        if self.implementation == "efficient":
            y = _sdpa(q, k, v, self._s) + torch.bmm(vf, u.transpose(1, 2))  # [B, d, N] + [B, d, 1]
        else:
            p = (torch.bmm(q.flatten(2).transpose(1, 2), k.flatten(2)) * self._s).softmax(dim=-1)
            y = torch.bmm(p + u, vf.transpose(1, 2)).transpose(1, 2)
        return x + self.bn(self.W(y.reshape(b, self.inner_channels, h, w)))

    @picture_helper
    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"pairwise": [B, N, N], "unary": [B, H, W]}``."""
        check_input(self, x, self.channels)
        q, k = self._whitened(x)
        p = (torch.bmm(q.flatten(2).transpose(1, 2), k.flatten(2)) * self._s).softmax(dim=-1)
        return {"pairwise": p, "unary": self._unary(x).reshape(x.shape[0], *x.shape[-2:])}


# =========================================================================== ANN (APNB) / OCNet (base-OC)
def pyramid_pool(x: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """Adaptive-average-pool ``x [B, C, H, W]`` to each ``s×s`` in ``sizes`` and concatenate: ``[B, C, Σ s²]``."""
    return torch.cat([F.adaptive_avg_pool2d(x, s).flatten(2) for s in sizes], dim=-1)


@register_block("ann", placement="stage", family="nonlocal", paper=ANN_PAPER + "; APNB, keys/values pyramid-pooled (1, 3, 6, 8)")
@register_block("ocnet", placement="stage", family="nonlocal", paper=OC_PAPER + "; base object-context block", psp_sizes=None)
class AsymmetricNonLocal2d(nn.Module):
    """Asymmetric pyramid non-local block (ANN's APNB); with ``psp_sizes=None`` OCNet's base-OC block.

    ::

        key = query = ReLU(BN(conv1×1(x)))                    [B, dk, H, W]   (one shared transform)
        value = conv1×1(x)                                    [B, dv, H, W]
        K, V = pyramid_pool(key), pyramid_pool(value)         [B, ·, S],  S = 1 + 9 + 36 + 64 = 110
        context = W · (softmax(qᵀK · dk^-½) Vᵀ)               [B, N, S] → [B, C, H, W]   (W zero-init)
        out = Dropout(ReLU(BN(conv1×1(cat[context, x]))))     [B, 2C, H, W] → [B, C, H, W]

    The N×N matrix becomes N×S: O(N·S·d) time and memory, linear in N. The output is a fusion of
    ``cat[context, x]`` (as the official code), not a residual sum, so the block is not the identity at
    init. ``psp_sizes=None`` keeps all N keys (OCNet's base-OC: quadratic).

    Init as the official blocks (ANN's APNB and OCNet's self-attention block), which set only ``W``: ``W`` zero
    (weight and bias); every other conv PyTorch's default, every BatchNorm scale 1, shift 0.
    :meth:`reset_parameters` sets every parameter, so the block starts the same inside a backbone as on its own.
    """

    spec_revision = 1  # 1: inside a backbone the key/value/fuse convs keep this init (was re-drawn Kaiming, ~3.5×)

    def __init__(self, channels: int, key_channels: int | None = None, value_channels: int | None = None,
                 psp_sizes: Sequence[int] | None = (1, 3, 6, 8), dropout: float = 0.05,
                 implementation: str = "efficient"):
        super().__init__()
        name = type(self).__name__
        _positive_int(name, "channels", channels)
        _check_choice(name, "implementation", implementation, IMPLEMENTATIONS)
        dk = max(1, channels // 2) if key_channels is None else _positive_int(name, "key_channels", key_channels)
        dv = max(1, channels // 2) if value_channels is None else _positive_int(name, "value_channels", value_channels)
        if psp_sizes is not None:
            psp_sizes = tuple(psp_sizes)
            if not psp_sizes or any(not isinstance(s, int) or s < 1 for s in psp_sizes):
                raise ValueError(f"{name}: psp_sizes must be positive ints or None, got {psp_sizes!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"{name}: dropout must be in [0, 1), got {dropout!r}")
        self.channels, self.key_channels, self.value_channels = channels, dk, dv
        self.psp_sizes, self.implementation = psp_sizes, implementation
        self.f_key = nn.Sequential(nn.Conv2d(channels, dk, 1), nn.BatchNorm2d(dk), nn.ReLU(inplace=True))
        self.f_value = nn.Conv2d(channels, dv, 1)
        self.W = nn.Conv2d(dv, channels, 1)
        self.fuse = nn.Sequential(nn.Conv2d(2 * channels, channels, 1), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
                                  nn.Dropout2d(dropout))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in (self.f_key[0], self.f_key[1], self.f_value, self.fuse[0], self.fuse[1]):
            m.reset_parameters()
        nn.init.zeros_(self.W.weight)
        nn.init.zeros_(self.W.bias)

    def _pool(self, t: torch.Tensor) -> torch.Tensor:
        """``[B, d, H, W] → [B, d, S, 1]`` (pyramid-pooled keys/values as a 1-wide map) or unchanged."""
        return t if self.psp_sizes is None else pyramid_pool(t, self.psp_sizes).unsqueeze(-1)

    def _qkv(self, x):
        key = self.f_key(x)
        return key, self._pool(key), self._pool(self.f_value(x))

    def _weights(self, q, k) -> torch.Tensor:
        return (torch.bmm(q.flatten(2).transpose(1, 2), k.flatten(2)) * self.key_channels ** -0.5).softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.channels)
        b, _, h, w = x.shape
        q, k, v = self._qkv(x)
        if self.implementation == "efficient":
            y = _sdpa(q, k, v, self.key_channels ** -0.5)
        else:
            y = torch.bmm(self._weights(q, k), v.flatten(2).transpose(1, 2)).transpose(1, 2)
        context = self.W(y.reshape(b, self.value_channels, h, w))
        return self.fuse(torch.cat([context, x], dim=1))

    @picture_helper
    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"attention": [B, N, S]}`` (S = 110 pooled keys, or N without pooling)."""
        check_input(self, x, self.channels)
        q, k, _ = self._qkv(x)
        return {"attention": self._weights(q, k)}
