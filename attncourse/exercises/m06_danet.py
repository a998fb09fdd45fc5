"""Exercises of module 06 (DANet): PAM's attention, CAM's attention with the max trick, the parallel fusion.

=========================  ======  =================================================================
key                        points  the learner writes
=========================  ======  =================================================================
``06.pam_attention``          3    ``pam_attention(q, k)``: softmax(QᵀK) over the key positions, no scale, ``[B, N, N]``
``06.cam_attention``          3    ``cam_attention(a)``: softmax(max(E) − E) per row, E = A Aᵀ, ``[B, C, C]``
``06.parallel_fusion``        2    ``parallel_fusion(x, pam_branch, cam_branch)``: the two branches' outputs summed
=========================  ======  =================================================================

Shapes follow the notebook: queries and keys come flattened as ``[B, d, N]`` (channels first, positions
last, as ``conv(x).flatten(2)`` gives them), CAM's input as ``A [B, C, N]``.

Questions (counted apart, 1 point each): ``06.predict_pam_size`` (number), ``06.predict_max_trick`` (choice),
``06.predict_fcn_miou`` (choice, read from the recorded ``danet_scenes`` run), ``06.interpret_parallel`` (choice).
"""
from __future__ import annotations

import torch

from .core import bucket, compare_tensors, recorded, recorded_note, register_exercise, register_question, run_case, \
    seeded_generator, tensor_type_hint
from .side_properties import side_property

__all__ = ["pam_attention", "cam_attention", "parallel_fusion"]


# --------------------------------------------------------------------------------------------------
# reference solutions
# --------------------------------------------------------------------------------------------------
def pam_attention(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """PAM's attention ``S = softmax(QᵀK)``: ``q, k [B, d, N]`` → ``[B, N, N]``; row ``i`` (query position ``i``)
    sums to 1 over the key positions. No ``1/√d`` scale (DANet's code has none)."""
    return torch.bmm(q.transpose(1, 2), k).softmax(dim=-1)


def cam_attention(a: torch.Tensor) -> torch.Tensor:
    """CAM's attention: ``E = A Aᵀ`` ``[B, C, C]``, then ``softmax(max_j E_ij − E_ij)`` over ``j`` (each row)."""
    energy = torch.bmm(a, a.transpose(1, 2))
    return (energy.amax(dim=-1, keepdim=True) - energy).softmax(dim=-1)


def parallel_fusion(x: torch.Tensor, pam_branch, cam_branch) -> torch.Tensor:
    """DANet's fusion: both branches see the same features ``x``; their outputs are summed (element-wise)."""
    return pam_branch(x) + cam_branch(x)


# --------------------------------------------------------------------------------------------------
# 06.pam_attention
# --------------------------------------------------------------------------------------------------
def _case_pam(learner, b, d, n, seed, scale=1.0) -> str | None:
    gen = seeded_generator(seed)
    q, k = torch.randn(b, d, n, generator=gen) * scale, torch.randn(b, d, n, generator=gen) * scale
    got = learner(q.clone(), k.clone())
    energy = torch.bmm(q.transpose(1, 2), k)
    if isinstance(got, torch.Tensor) and got.shape == (b, d, d) and d != n:
        return (f"the attention has shape [{b}, {d}, {d}]: that is Q Kᵀ over channels (CAM's kind). PAM relates "
                f"positions: Qᵀ [B, N, d] times K [B, d, N] gives [B, N, N]")
    mistakes = {
        "scaled by 1/√d: the Transformer's convention; DANet's PAM has no scale": (energy / d ** 0.5).softmax(-1),
        "softmax over the wrong axis: each row (one query position) must sum to 1 over the key positions (dim=-1)":
            energy.softmax(dim=1),
        "the softmax is missing: S = softmax(QᵀK) over the key positions": energy,
        "that is KᵀQ (keys × queries): rows must be the query positions": torch.bmm(k.transpose(1, 2), q).softmax(-1),
        "q [B, d, N] was reshaped/viewed to [B, N, d], which scrambles channels and positions: transpose it "
        "(q.transpose(1, 2))": torch.bmm(q.reshape(b, n, d), k).softmax(-1),
    }
    return compare_tensors(got, energy.softmax(-1), "attention", atol=1e-5, mistakes=mistakes)


def _case_pam_grad(learner) -> str | None:
    gen = seeded_generator(5)
    q = torch.randn(1, 3, 6, generator=gen).requires_grad_(True)
    k = torch.randn(1, 3, 6, generator=gen).requires_grad_(True)
    got = learner(q, k)
    if not isinstance(got, torch.Tensor):
        return tensor_type_hint(got, "the attention")
    if not got.requires_grad:
        return "the attention is not connected to the autograd graph (no .detach(), .numpy() or torch.no_grad())"
    (got * torch.linspace(-1, 1, got.numel()).reshape(got.shape)).sum().backward()
    if q.grad is None or float(q.grad.abs().sum()) == 0 or k.grad is None:
        return "no gradient reached q or k: is something detached on the way?"
    return None


@register_exercise("06.pam_attention", title="PAM: softmax(QᵀK) over positions, no scale", points=3,
                   solution=pam_attention)
def _check_pam(learner):
    for b, d, n, seed in [(2, 4, 9, 0), (1, 2, 12, 1), (3, 8, 5, 2)]:
        yield run_case(f"q, k [{b}, {d}, {n}] -> [{b}, {n}, {n}]", _case_pam, learner, b, d, n, seed)
    yield run_case("large energies (no overflow: use softmax, not exp / sum)", _case_pam, learner, 2, 4, 6, 3, 8.0)
    yield side_property(run_case("gradients flow back to q and k", _case_pam_grad, learner))


# --------------------------------------------------------------------------------------------------
# 06.cam_attention
# --------------------------------------------------------------------------------------------------
def _case_cam(learner, b, c, n, seed, scale=1.0) -> str | None:
    gen = seeded_generator(seed)
    a = torch.randn(b, c, n, generator=gen) * scale
    got = learner(a.clone())
    energy = torch.bmm(a, a.transpose(1, 2))
    if isinstance(got, torch.Tensor) and got.shape == (b, n, n) and n != c:
        return (f"the attention has shape [{b}, {n}, {n}]: that is Aᵀ A, position × position (PAM's kind). CAM "
                f"relates channels: A [B, C, N] times Aᵀ [B, N, C] gives [B, C, C]")
    expected = (energy.amax(-1, keepdim=True) - energy).softmax(-1)
    mistakes = {
        "softmax(E): that is the paper's equation (Eq. 3); this exercise asks for the code's form, "
        "softmax(max(E) − E), which equals softmax(−E)":
            energy.softmax(-1),
        "softmax(E − max(E)) is softmax(E): the code subtracts the OTHER way round, max(E) − E":
            (energy - energy.amax(-1, keepdim=True)).softmax(-1),
        "softmax over the wrong axis: each row (one output channel) must sum to 1 over the channels it mixes (dim=-1)":
            (energy.amax(-1, keepdim=True) - energy).softmax(dim=1),
        "the softmax is missing": energy.amax(-1, keepdim=True) - energy,
        "scaled by 1/√N: CAM has no scale": ((energy.amax(-1, keepdim=True) - energy) / n ** 0.5).softmax(-1),
    }
    return compare_tensors(got, expected, "attention", atol=1e-5, mistakes=mistakes)


@register_exercise("06.cam_attention", title="CAM: softmax(max(E) − E) with E = A Aᵀ", points=3, solution=cam_attention)
def _check_cam(learner):
    for b, c, n, seed in [(2, 4, 10, 0), (1, 6, 3, 1), (3, 5, 7, 2)]:
        yield run_case(f"A [{b}, {c}, {n}] -> [{b}, {c}, {c}]", _case_cam, learner, b, c, n, seed)
    yield run_case("large activations (where a hand-written exp(−E) / Σ exp(−E) gives nan)", _case_cam, learner, 2, 4, 16, 3, 12.0)


# --------------------------------------------------------------------------------------------------
# 06.parallel_fusion
# --------------------------------------------------------------------------------------------------
def _branches(c: int, seed: int):
    gen = seeded_generator(seed)
    wp, wc = torch.randn(c, c, generator=gen) * 0.5, torch.randn(c, c, generator=gen) * 0.5

    def pam_branch(t):
        return torch.tanh(torch.einsum("dc,bchw->bdhw", wp, t)) + 1.0

    def cam_branch(t):
        return torch.einsum("dc,bchw->bdhw", wc, t).relu() - 0.3

    return pam_branch, cam_branch


def _case_fusion(learner, b, c, h, w, seed) -> str | None:
    p, q = _branches(c, seed)
    x = torch.randn(b, c, h, w, generator=seeded_generator(seed + 50))
    got = learner(x.clone(), p, q)
    mistakes = {
        "in series: CAM was applied to PAM's output. DANet runs the two branches in PARALLEL on the same features "
        "and sums them (CBAM is the one that runs in series)": q(p(x)),
        "in series: PAM was applied to CAM's output; DANet runs them in parallel on the same x and sums": p(q(x)),
        "averaged: DANet sums the two outputs (no ÷ 2)": (p(x) + q(x)) / 2,
        "multiplied: DANet sums the two outputs": p(x) * q(x),
        "x was added as well: the residuals live inside PAM and CAM (γ·out + x); the fusion only sums the branches":
            p(x) + q(x) + x,
        "only the PAM branch": p(x),
        "only the CAM branch": q(x),
        "concatenated: DANet sums the two outputs element-wise (same shape as each branch's output)":
            torch.cat([p(x), q(x)], dim=1),
    }
    return compare_tensors(got, p(x) + q(x), "fused features", atol=1e-5, mistakes=mistakes)


@register_exercise("06.parallel_fusion", title="DANet's fusion: PAM ∥ CAM, outputs summed", points=2,
                   solution=parallel_fusion)
def _check_fusion(learner):
    for b, c, h, w, seed in [(2, 4, 3, 5, 0), (1, 6, 4, 4, 1), (3, 2, 7, 1, 2)]:
        yield run_case(f"x [{b}, {c}, {h}, {w}] through two branches", _case_fusion, learner, b, c, h, w, seed)


# --------------------------------------------------------------------------------------------------
# questions
# --------------------------------------------------------------------------------------------------
register_question(
    "06.predict_pam_size", title="Predict: how many entries has PAM's attention for ONE 12×12 feature map?",
    when="predict", tolerance=0, answer=(12 * 12) ** 2, unit="entries",
    explanation="N = 12·12 = 144 positions, each attending to all 144: N² = 20,736 entries per image. At the "
                "paper's Cityscapes resolution (output stride 8 on 768×768 crops: 96×96 maps) it is 9,216² ≈ 85 "
                "million per image, which is why the efficient path matters (benchmarks/pam_memory.py).")

register_question(
    "06.predict_max_trick", title="Predict: what changes if CAM used softmax(−E) instead of softmax(max(E) − E)?",
    when="predict",
    choices={"a": "nothing: softmax is unchanged by subtracting the same number from a whole row",
             "b": "the attention flips: channels would attend to their most similar channels",
             "c": "the rows would no longer sum to 1"},
    answer="a",
    explanation="max_j E_ij is one number per row i; softmax(z + c) = softmax(z) for any constant c in a row. "
                "max(E) − E = −E + max(E), so both give the same attention. In numbers the shift matters only for a "
                "hand-written exp / sum (it avoids 0 / 0 when a row's energies are all large); PyTorch's softmax "
                "subtracts the row maximum of its input internally anyway.")


def _scenes_miou(arm: str, key: str = "mean_test_acc") -> float:
    return 100 * recorded("danet_scenes")["arms"][arm][key]


register_question(
    "06.predict_fcn_miou", title="Predict: the plain FCN's mIoU on digit scenes (full profile)?", when="predict",
    choices={"a": "below 50 %", "b": "50 to 75 %", "c": "75 % or more"},
    answer=lambda: bucket(_scenes_miou("fcn"), [50, 75]),
    explanation=lambda correct: (
        f"Recorded ({recorded_note('danet_scenes')}): the FCN reaches {_scenes_miou('fcn'):.1f} % mIoU, DANet "
        f"{_scenes_miou('danet'):.1f} %. The FCN labels small digits from what its 35-px receptive field sees; "
        "a large digit's far end is outside it, so the FCN must guess its class from a piece of stroke."))

register_question(
    "06.interpret_parallel", title="Interpret: what is the difference between DANet's and CBAM's way of combining?",
    when="interpret",
    choices={"a": "DANet computes both attentions from the same features and sums the results; CBAM gates the "
                  "channels first and computes the spatial gate from the already gated features",
             "b": "DANet multiplies the two attention maps; CBAM adds them",
             "c": "there is none: both run channel and spatial attention in series"},
    answer="a",
    explanation="In DANet, PAM and CAM each read the same backbone features, each returns γ·out + x, and the two "
                "branches' outputs are summed: neither depends on the other. CBAM's spatial map is computed from "
                "x·Mc(x), so the second step sees what the first one chose (the course notes' serial-vs-parallel contrast).")
