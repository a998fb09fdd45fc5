"""Dual attention (DANet): a position attention module (PAM) and a channel attention module (CAM).

Paper: **Dual Attention Network for Scene Segmentation** — Fu, Liu, Tian, Li, Bao, Fang, Lu, CVPR 2019,
arXiv:1809.02983. The facts below follow the paper and the authors' code (``junfu1115/DANet``,
``encoding/nn/da_att.py``).

**PAM** (``PositionAttention``, registered ``"danet_pam"``) — self-attention over the ``N = H·W`` positions::

    x              [B, C, H, W]
    Q, K = 1×1 conv(x)               → [B, C/8, H, W] each          V = 1×1 conv(x) → [B, C, H, W]
    E = Qᵀ K                         → [B, N, N]   energy, NO 1/√d scale
    S = softmax(E) over the keys     → [B, N, N]   row i: where position i looks
    out = V · Sᵀ                     → [B, C, N] → [B, C, H, W]
    y = γ · out + x                  γ a learned scalar, 0 at init: the block starts as the identity

**CAM** (``ChannelSelfAttention``, registered ``"danet_cam"``) — self-attention over the channels, no convs::

    A = x.view(B, C, N)              → [B, C, N]
    E = A Aᵀ                         → [B, C, C]   channel affinity
    S = softmax(max_j E − E) per row → [B, C, C]   as the authors' code (the paper's Eq. 3: softmax(E))
    out = S · A                      → [B, C, N] → [B, C, H, W]
    y = γ · out + x                  γ = 0 at init

``softmax(max(E) − E)`` equals ``softmax(−E)``: softmax is unchanged by adding the same number to a whole
row, and ``max_j E_ij`` is one number per row ``i``. What the shift does in numbers: written by hand as
``exp(·) / Σ exp(·)``, ``exp(−E)`` underflows to 0 in every entry of a row whose energies are all large (then
0 / 0 = nan), while ``exp(max − E)`` starts from ``exp(0) = 1``; it does not bound the exponent, though
(``max − E`` reaches ``max − min``, which overflows above ~88 in float32). PyTorch's ``softmax`` subtracts the
row maximum of its own input internally, so with it both forms are safe.

**Paper vs code.** The paper's Eq. 3 is ``S = softmax(E)``: a channel attends most to the channels *most* similar to
it. The authors' code computes ``softmax(max(E) − E) = softmax(−E)``: the *least* similar. The max is a shift; the
minus sign is not — the two are different functions. ``ChannelSelfAttention(C, form="code")`` (the default, what
the recorded models trained) is the code's form; ``form="paper"`` is Eq. 3.

Efficient PAM: ``F.scaled_dot_product_attention(q, k, v, scale=1.0)`` with q/k/v contiguous
``[B, 1, N, ·]`` tokens (``scale=1.0`` because PAM has no scale; SDPA's default would be ``d**-0.5``); the
naive form builds the ``N × N`` matrix explicitly. Both compute the same function
(``tests/test_blocks_dual.py`` checks it in float64 to 1e-5). One more fact matters for memory: PAM's
queries and keys are ``C/8`` wide but its values ``C`` wide, and the fused CPU kernel (flash attention)
only runs when all three have the same width — otherwise only the math kernel can, which materialises the
``N × N`` matrix like the naive form (``sdpa_backends`` shows it). On maps of at least ``pad_from_tokens``
positions (default 1024, i.e. 32×32) the efficient path therefore zero-pads q and k to ``C``: the zeros add
nothing to ``qᵀk`` (exact), the fused kernel runs in O(N) memory, at the price of computing ``qᵀk`` over
``C`` instead of ``C/8`` numbers (``benchmarks/pam_memory.py`` measures both). Smaller maps keep the
unpadded call, whose ``N × N`` matrix is small.

Public-code deviations worth knowing: a popular collection of attention modules
(``xmu-xiaoma666/External-Attention-pytorch``, ``DANet.py``) calls a ``DAModule`` "DANet" but builds its
position branch from a generic scaled multi-head self-attention (with ``1/√d``) and its channel branch from
a scaled softmax over the plain ``A Aᵀ`` — neither the ``max − E`` energy nor the γ = 0 residual; it is a
different block. The segmentation head that puts the two modules in parallel is
:class:`attncourse.models.segmentation.DualHead`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import register_block
from ._common import check_input, picture_helper, reduced_width

__all__ = ["PositionAttention", "ChannelSelfAttention", "PAM", "CAM", "pam_naive", "cam_naive", "CAM_FORMS",
           "DANET_PAPER"]

DANET_PAPER = "Dual Attention Network for Scene Segmentation (arXiv:1809.02983)"
IMPLEMENTATIONS = ("efficient", "naive")


def _tokens(t: torch.Tensor) -> torch.Tensor:
    """``[B, d, H, W] → [B, 1, N, d]``, contiguous in ``d`` (so SDPA's fused kernels may run)."""
    return t.flatten(2).transpose(1, 2).contiguous().unsqueeze(1)


def pam_naive(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The PAM aggregation written out: ``(V·Sᵀ as [B, C, H, W], S [B, N, N])`` with ``S = softmax(QᵀK)``."""
    b, c, h, w = v.shape
    energy = torch.bmm(q.flatten(2).transpose(1, 2), k.flatten(2))  # [B, N, N]
    attention = energy.softmax(dim=-1)
    out = torch.bmm(v.flatten(2), attention.transpose(1, 2))  # [B, C, N]
    return out.view(b, c, h, w), attention


CAM_FORMS = ("code", "paper")


def cam_naive(x: torch.Tensor, form: str = "code") -> tuple[torch.Tensor, torch.Tensor]:
    """The CAM aggregation: ``(S·A as [B, C, H, W], S [B, C, C])`` with ``E = A Aᵀ`` and ``S = softmax(max(E) − E)``
    (``form="code"``, the authors' code) or ``S = softmax(E)`` (``form="paper"``, the paper's Eq. 3)."""
    if form not in CAM_FORMS:
        raise ValueError(f"cam_naive: form must be one of {CAM_FORMS}, got {form!r}")
    b, c, h, w = x.shape
    a = x.reshape(b, c, h * w)
    energy = torch.bmm(a, a.transpose(1, 2))  # [B, C, C]
    if form == "code":
        energy = energy.amax(dim=-1, keepdim=True) - energy
    attention = energy.softmax(dim=-1)
    return torch.bmm(attention, a).view(b, c, h, w), attention


@register_block("danet_pam", placement="stage", family="dual", paper=DANET_PAPER + "; position attention module")
class PositionAttention(nn.Module):
    """DANet's position attention module (PAM).

    Args:
        channels: input (and output) channels ``C``.
        reduction: query/key width ``C // reduction`` (the paper's 8), at least 1.
        reduced_channels: explicit query/key width (overrides ``reduction``).
        implementation: ``"efficient"`` (SDPA, ``scale=1.0``) or ``"naive"`` (the explicit ``N × N`` matrix).
        pad_from_tokens: from this many positions on, the efficient path zero-pads q and k to ``C`` so a fused
            SDPA kernel can run (see the module docstring); ``None`` never pads.

    Shape: ``[B, C, H, W] → [B, C, H, W]``. ``attention_maps(x)`` returns ``{"position": S [B, N, N]}``.
    """

    def __init__(self, channels: int, reduction: float = 8, reduced_channels: int | None = None,
                 implementation: str = "efficient", pad_from_tokens: int | None = 1024):
        super().__init__()
        name = type(self).__name__
        d = reduced_width(name, channels, reduction, reduced_channels)
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(f"{name}: implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
        self.channels, self.inner_channels, self.implementation = channels, d, implementation
        self.pad_from_tokens = pad_from_tokens
        self.query = nn.Conv2d(channels, d, 1)
        self.key = nn.Conv2d(channels, d, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default conv initialisation (as the authors' code); γ = 0 so the block starts as the identity."""
        for conv in (self.query, self.key, self.value):
            conv.reset_parameters()
        nn.init.zeros_(self.gamma)

    def aggregate(self, x: torch.Tensor) -> torch.Tensor:
        """``V · softmax(QᵀK)ᵀ`` as a map ``[B, C, H, W]`` (no γ, no residual)."""
        q, k, v = self.query(x), self.key(x), self.value(x)
        if self.implementation == "naive":
            return pam_naive(q, k, v)[0]
        b, c, h, w = v.shape
        qt, kt, vt = _tokens(q), _tokens(k), _tokens(v)  # [B, 1, N, d], [B, 1, N, d], [B, 1, N, C]
        if self.pad_from_tokens is not None and h * w >= self.pad_from_tokens and qt.shape[-1] < c:
            qt, kt = F.pad(qt, (0, c - qt.shape[-1])), F.pad(kt, (0, c - kt.shape[-1]))  # exact: zeros add 0 to qᵀk
        out = F.scaled_dot_product_attention(qt, kt, vt, scale=1.0)  # [B, 1, N, C]
        return out.squeeze(1).transpose(1, 2).reshape(b, c, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.channels)
        return self.gamma.to(x.dtype) * self.aggregate(x).to(x.dtype) + x

    @picture_helper
    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"position": S}``, ``S [B, N, N]``: row ``i`` is where position ``i`` (row-major) looks."""
        check_input(self, x, self.channels)
        return {"position": pam_naive(self.query(x), self.key(x), self.value(x))[1]}


@register_block("danet_cam", placement="stage", family="dual", paper=DANET_PAPER + "; channel attention module")
class ChannelSelfAttention(nn.Module):
    """DANet's channel attention module (CAM): channel self-attention without convolutions.

    Args:
        channels: input (and output) channels ``C``.
        form: ``"code"`` (default) — ``S = softmax(max(E) − E) = softmax(−E)``, the authors' code, what the
            recorded models trained — or ``"paper"`` — ``S = softmax(E)``, the paper's Eq. 3 (module docstring).

    Shape: ``[B, C, H, W] → [B, C, H, W]``. ``attention_maps(x)`` returns ``{"channel": S [B, C, C]}``.
    """

    def __init__(self, channels: int, form: str = "code"):
        super().__init__()
        name = type(self).__name__
        reduced_width(name, channels, 1)  # validates channels
        if form not in CAM_FORMS:
            raise ValueError(f"{name}: form must be one of {CAM_FORMS} (the authors' code or the paper's Eq. 3), "
                             f"got {form!r}")
        self.channels, self.form = channels, form
        self.gamma = nn.Parameter(torch.zeros(1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """γ = 0: the block starts as the identity."""
        nn.init.zeros_(self.gamma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.channels)
        return self.gamma.to(x.dtype) * cam_naive(x, self.form)[0].to(x.dtype) + x

    @picture_helper
    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"channel": S}``, ``S [B, C, C]``: row ``c`` is how channel ``c`` mixes the others."""
        check_input(self, x, self.channels)
        return {"channel": cam_naive(x, self.form)[1]}

    def extra_repr(self) -> str:
        return f"channels={self.channels}, form={self.form!r}"


PAM, CAM = PositionAttention, ChannelSelfAttention
