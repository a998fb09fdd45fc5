"""Exercises of module 04 (Non-local, GCNet): the affinity, the output with its zero-init, the dot-product normalisation, GC's context.

=========================  ======  =================================================================
key                        points  the learner writes
=========================  ======  =================================================================
``04.affinity``               3    ``embedded_gaussian_affinity(theta, phi)``: softmax(θᵀφ) over positions, ``[B, N, M]``
``04.nonlocal_output``        3    ``NonLocalOutput(inner_channels, channels)``: ``z = x + BN(W y)``, identity at init
``04.dot_product_norm``       2    ``dot_product_nonlocal(theta, phi, g)``: ``y = (θᵀφ / M) gᵀ``, ``[B, N, dv]``
``04.gc_context``             2    ``gc_context(x, mask_logits)``: GCNet's softmax-pooled context, ``[B, C, 1, 1]``
=========================  ======  =================================================================

Shapes follow the course notes' walk-through: θ, φ, g come flattened as ``[B, d, N]`` (channels first, positions
last, as ``conv(x).flatten(2)`` gives them); ``N`` query positions, ``M`` key positions (``M = N`` unless φ
and g are sub-sampled; the checks use ``M ≠ N`` so that a transposed answer cannot pass by accident).

Questions (counted apart, 1 point each): ``04.predict_affinity_size`` (number), ``04.predict_baseline_pairs``
(choice, read from the recorded ``nonlocal_pairs`` run), ``04.interpret_one_layer`` (choice).
"""
from __future__ import annotations

import copy as _copy

import torch
from torch import nn

from .core import (CaseResult, bucket, compare_tensors, match_mistakes, recorded, recorded_note, register_exercise,
                   register_question, run_case, seeded_generator, tensor_type_hint)
from .side_properties import side_property

__all__ = ["embedded_gaussian_affinity", "NonLocalOutput", "dot_product_nonlocal", "gc_context"]


# --------------------------------------------------------------------------------------------------
# reference solutions
# --------------------------------------------------------------------------------------------------
def embedded_gaussian_affinity(theta: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    """The embedded-Gaussian affinity: ``softmax_j(θ_iᵀ φ_j)``.

    ``theta [B, d, N]`` (queries), ``phi [B, d, M]`` (keys) → ``[B, N, M]``; row ``i`` sums to 1 over the
    ``M`` key positions. No scaling (the paper's embedded Gaussian).
    """
    return torch.bmm(theta.transpose(1, 2), phi).softmax(dim=-1)


class NonLocalOutput(nn.Module):
    """The end of a non-local block: ``z = x + BN(W(y))``, starting as the identity.

    ``x [B, C, H, W]`` is the block's input and ``y [B, N, d]`` (N = H·W) the aggregated values, as the
    matrix product ``f · gᵀ`` leaves them. ``W`` is a 1×1 conv ``d → C`` and ``BN`` a BatchNorm2d over
    ``C`` whose scale γ is initialised to 0 (the paper), so ``z = x`` at initialisation.
    """

    def __init__(self, inner_channels: int, channels: int):
        super().__init__()
        self.W = nn.Conv2d(inner_channels, channels, 1)
        self.bn = nn.BatchNorm2d(channels)
        nn.init.zeros_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        y = y.transpose(1, 2).reshape(b, -1, h, w)  # [B, N, d] → [B, d, N] → [B, d, H, W]
        return x + self.bn(self.W(y))


def dot_product_nonlocal(theta: torch.Tensor, phi: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """The dot-product non-local aggregation ``y_i = 1/M · Σ_j (θ_iᵀ φ_j) g_j``.

    ``theta [B, d, N]``, ``phi [B, d, M]``, ``g [B, dv, M]`` → ``y [B, N, dv]``. The normalisation is the
    number of *key* positions ``M`` (no softmax).
    """
    m = phi.shape[-1]
    return torch.bmm(torch.bmm(theta.transpose(1, 2), phi) / m, g.transpose(1, 2))


def gc_context(x: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
    """GCNet's context: attention weights ``softmax`` over all H·W positions, then the weighted sum of ``x``.

    ``x [B, C, H, W]``, ``mask_logits [B, 1, H, W]`` (the output of the 1×1 mask conv) → ``[B, C, 1, 1]``.
    """
    b, c = x.shape[:2]
    a = mask_logits.reshape(b, 1, -1).softmax(dim=-1)  # [B, 1, N]
    return torch.bmm(x.reshape(b, c, -1), a.transpose(1, 2)).reshape(b, c, 1, 1)


# --------------------------------------------------------------------------------------------------
# 04.affinity
# --------------------------------------------------------------------------------------------------
def _qk(b: int, d: int, n: int, m: int, seed: int):
    gen = seeded_generator(seed)
    return torch.randn(b, d, n, generator=gen), torch.randn(b, d, m, generator=gen)


_RESHAPED_THETA = ("θ [B, d, N] was reshaped/viewed to [B, N, d], which scrambles channels and positions: transpose it "
                   "(theta.transpose(1, 2)) to get θᵀ")


def _case_affinity(learner, b, d, n, m, seed) -> str | None:
    theta, phi = _qk(b, d, n, m, seed)
    got = learner(theta.clone(), phi.clone())
    scores = torch.bmm(theta.transpose(1, 2), phi)  # [B, N, M]
    mistakes = {
        "softmax taken over the wrong axis: each row (one query position) should sum to 1 over the key positions "
        "(softmax over the last axis, dim=-1)": scores.softmax(dim=1),
        "the softmax is missing: f = exp(θᵀφ) normalised over positions, i.e. softmax(θᵀφ, dim=-1)": scores,
        "exp without the normalisation: divide by the sum over key positions (or use softmax)": scores.exp(),
        "scaled by 1/√d: that is the Transformer's convention; the paper's embedded Gaussian has no scale":
            (scores / d ** 0.5).softmax(dim=-1),
        "that is the dot-product version (÷ M); the embedded Gaussian normalises with a softmax": scores / m,
        "that is φᵀθ (keys × queries): rows must be the N query positions, columns the M key positions":
            torch.bmm(phi.transpose(1, 2), theta).softmax(dim=-1),
        _RESHAPED_THETA: torch.bmm(theta.reshape(b, n, d), phi).softmax(dim=-1),
    }
    if isinstance(got, torch.Tensor) and got.shape == (b, d, d):
        return (f"affinity has shape [{b}, {d}, {d}]: that is θφᵀ, a channel×channel matrix. Transpose θ to "
                f"[B, N, d] and multiply by φ [B, d, M] to get the position×position matrix [B, N, M]")
    return compare_tensors(got, scores.softmax(dim=-1), "affinity", atol=1e-5, mistakes=mistakes)


def _case_affinity_rows(learner) -> str | None:
    theta, phi = _qk(2, 4, 6, 9, 11)
    got = learner(theta, phi)
    if not isinstance(got, torch.Tensor) or got.shape != (2, 6, 9):
        return f"expected a tensor of shape [2, 6, 9], got {getattr(got, 'shape', type(got).__name__)}"
    rows = got.detach().sum(-1)
    if not torch.allclose(rows, torch.ones_like(rows), atol=1e-5):
        return (f"rows sum to {float(rows.min()):.3g}…{float(rows.max()):.3g}, not 1: each query's weights must "
                f"sum to 1 over the key positions (softmax over dim=-1)")
    return None


def _case_affinity_grad(learner) -> str | None:
    theta, phi = _qk(1, 3, 5, 4, 3)
    theta.requires_grad_(True)
    phi.requires_grad_(True)
    got = learner(theta, phi)
    if not isinstance(got, torch.Tensor):
        return tensor_type_hint(got, "the output")
    if not got.requires_grad:
        return "the affinity is not connected to the autograd graph (no .detach(), .numpy() or torch.no_grad())"
    weights = torch.linspace(-1, 1, got.numel()).reshape(got.shape)
    (got * weights).sum().backward()
    if theta.grad is None or float(theta.grad.abs().sum()) == 0:
        return "no gradient reached θ: is it detached (.detach(), .data, .numpy()) on the way?"
    t2, p2 = theta.detach().clone().requires_grad_(True), phi.detach().clone().requires_grad_(True)
    reference = embedded_gaussian_affinity(t2, p2)
    if got.shape != reference.shape or not torch.allclose(got.detach(), reference.detach(), atol=1e-5):
        return None  # the values are wrong, which the cases above report; here only the flow counts
    (reference * weights).sum().backward()
    return compare_tensors(theta.grad, t2.grad, "the gradient w.r.t. theta", atol=1e-5)


@register_exercise("04.affinity", title="The embedded-Gaussian affinity: softmax(θᵀφ) over positions", points=3,
                   solution=embedded_gaussian_affinity)
def _check_affinity(learner):
    for b, d, n, m, seed in [(2, 4, 6, 9, 0), (1, 8, 12, 3, 1), (3, 2, 5, 5, 2)]:
        yield run_case(f"θ [{b}, {d}, {n}], φ [{b}, {d}, {m}] -> [{b}, {n}, {m}]", _case_affinity, learner, b, d, n, m, seed)
    yield side_property(run_case("each row sums to 1 over the key positions", _case_affinity_rows, learner))
    yield side_property(run_case("gradients flow back to θ", _case_affinity_grad, learner))


# --------------------------------------------------------------------------------------------------
# 04.nonlocal_output
# --------------------------------------------------------------------------------------------------
class _W:
    """The learner's W, whatever its layer (a 1×1 Conv2d, a kernel-1 Conv1d or a Linear ``d → C``), as a function
    on ``[B, d, H, W]`` maps, so the reference uses the learner's own weights."""

    def __init__(self, layer: nn.Module, c: int, d: int):
        self.layer, self.weight, self.bias = layer, layer.weight, getattr(layer, "bias", None)
        self.c, self.d = c, d

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        out = torch.einsum("cd,bdhw->bchw", self.weight.reshape(self.c, self.d), t)
        return out if self.bias is None else out + self.bias.reshape(1, -1, 1, 1)


def _output_parts(module: nn.Module, d: int, c: int):
    """``(W, BN)`` of the learner's module, found by role: the one layer mapping d → C, the BatchNorm2d over C."""
    layers = [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Conv1d, nn.Linear))]
    ws = [m for m in layers if tuple(m.weight.shape) in ((c, d, 1, 1), (c, d, 1), (c, d))]
    bns = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    if len(ws) != 1 or len(layers) != 1:
        return None, (f"expected exactly one layer W from {d} to {c} channels (a 1×1 Conv2d({d}, {c}, 1); a Linear or "
                      f"kernel-1 Conv1d works too), found {[tuple(m.weight.shape) for m in layers]}")
    if len(bns) != 1 or bns[0].num_features != c:
        return None, f"expected one BatchNorm2d({c}) after W, found {[m.num_features for m in bns]}"
    return (_W(ws[0], c, d), bns[0]), None


def _build_output(learner, d: int, c: int):
    module = learner(d, c)
    if not isinstance(module, nn.Module):
        return None, f"NonLocalOutput({d}, {c}) should be an nn.Module, got {type(module).__name__}"
    parts, err = _output_parts(module, d, c)
    if err:
        return None, err
    return (module, *parts), None


def _xy(b, c, d, h, w, seed):
    gen = seeded_generator(seed)
    return torch.randn(b, c, h, w, generator=gen), torch.randn(b, h * w, d, generator=gen)


_NO_RESIDUAL = "the residual is missing: the block outputs x + BN(W y)"
_BN_AFTER_ADD = "BN was applied after the residual add: z = x + BN(W y), not BN(x + W y)"


def _output_mistakes(x, y, conv, bn):
    """The right output for the learner's own W and BN, and what each known mistake gives."""
    b, _, h, w = x.shape
    right = y.transpose(1, 2).reshape(b, -1, h, w)
    wrong_view = y.reshape(b, -1, h, w)
    expected = x + bn(conv(right))
    mistakes = [
        (_NO_RESIDUAL, bn(conv(right))),
        ("y is [B, N, d]: transpose it to [B, d, N] BEFORE reshaping to [B, d, H, W] — a plain reshape/view "
         "scrambles positions and channels", x + bn(conv(wrong_view))),
        ("BN is missing (or skipped): z = x + BN(W y)", x + conv(right)),
        (_BN_AFTER_ADD, bn(x + conv(right))),
        ("the spatial axes are swapped: reshape y's N positions to (H, W), not (W, H)",
         x + bn(conv(y.transpose(1, 2).reshape(b, -1, w, h).transpose(2, 3))) if h != w else None),
    ]
    return expected, mistakes


def _randomise(conv: _W, bn: nn.BatchNorm2d, c: int, gen: torch.Generator) -> None:
    with torch.no_grad():  # random weights and statistics: the zero-init would hide every mistake
        for p in (conv.weight, conv.bias, bn.weight, bn.bias):
            if p is not None:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        bn.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
        bn.running_var.copy_(torch.rand(c, generator=gen) + 0.5)


def _wiring(module: nn.Module, d: int, c: int) -> str | None:
    """What is wrong in forward, found on a copy of the module with random W and BN (None if nothing known)."""
    try:
        copy = _copy.deepcopy(module)
    except Exception:
        return None
    parts, err = _output_parts(copy, d, c)
    if err:
        return None
    conv, bn = parts
    _randomise(conv, bn, c, seeded_generator(99))
    copy.eval()
    x, y = _xy(2, c, d, 3, 5, 98)
    with torch.no_grad():
        got = copy(x.clone(), y.clone())
        expected, mistakes = _output_mistakes(x, y, conv, bn)
    return match_mistakes(got, expected, mistakes)


def _case_identity_at_init(learner, training: bool) -> str | None:
    built, err = _build_output(learner, 4, 8)
    if err:
        return err
    module, conv, bn = built
    module.train(training)
    x, y = _xy(2, 8, 4, 3, 5, 7)
    with torch.no_grad():
        got = module(x.clone(), y.clone())
    hint = compare_tensors(got, x, "output at initialisation", atol=1e-6)
    if not hint:
        return None
    zero = lambda *ps: all(p is None or not bool(p.detach().ne(0).any()) for p in ps)  # noqa: E731
    if zero(bn.weight, bn.bias) or zero(conv.weight, conv.bias):  # the init is right: forward is wrong
        wiring = _wiring(module, 4, 8)
        if wiring:
            return f"output at initialisation is not x although BN(W y) = 0 there: {wiring}"
        return (hint + " — BN(W y) is 0 at initialisation (your zero-init is right), so z = x + BN(W y) must be x: "
                "check how forward combines x and BN(W y)")
    return (hint + " — at initialisation the block must return x unchanged: initialise the BN's weight γ "
            "(and bias β) to zero, so BN(W y) = 0")


def _case_output_values(learner, b, c, d, h, w, seed) -> str | None:
    built, err = _build_output(learner, d, c)
    if err:
        return err
    module, conv, bn = built
    _randomise(conv, bn, c, seeded_generator(seed + 100))
    module.eval()
    x, y = _xy(b, c, d, h, w, seed)
    with torch.no_grad():
        got = module(x.clone(), y.clone())
        expected, mistakes = _output_mistakes(x, y, conv, bn)
    return compare_tensors(got, expected, "output", atol=1e-5, mistakes=mistakes)


def _case_output_grad(learner) -> str | None:
    built, err = _build_output(learner, 3, 6)
    if err:
        return err
    module, conv, bn = built
    module.train()
    x, y = _xy(2, 6, 3, 4, 4, 5)
    y.requires_grad_(True)
    (module(x, y) * torch.linspace(-1, 1, x.numel()).reshape(x.shape)).sum().backward()
    # a real gradient here is of order 1; W's bias alone normalises to 0 up to rounding noise (≈ 1e-4)
    alive = [p for p in (bn.weight, conv.weight) if p is not None and p.grad is not None and float(p.grad.abs().max()) > 1e-3]
    if not alive:
        return ("neither W nor the BN's γ gets a gradient at initialisation: zero only γ (the paper) — if W is zero "
                "too, each blocks the other's gradient and the block stays the identity forever")
    return None


@register_exercise("04.nonlocal_output", title="The non-local output: z = x + BN(W y), the identity at initialisation",
                   points=3, solution=NonLocalOutput)
def _check_nonlocal_output(learner):
    yield side_property(run_case("identity at initialisation (train mode)", _case_identity_at_init, learner, True))
    yield side_property(run_case("identity at initialisation (eval mode)", _case_identity_at_init, learner, False))
    for b, c, d, h, w, seed in [(2, 8, 4, 3, 5, 0), (1, 6, 3, 4, 4, 1), (3, 4, 2, 2, 7, 2)]:
        yield run_case(f"x [{b}, {c}, {h}, {w}], y [{b}, {h * w}, {d}] with random W and BN", _case_output_values, learner,
                       b, c, d, h, w, seed)
    yield side_property(run_case("trainable from the initialisation (γ or W gets a gradient)", _case_output_grad,
                                 learner))


# --------------------------------------------------------------------------------------------------
# 04.dot_product_norm
# --------------------------------------------------------------------------------------------------
def _case_dot(learner, b, d, dv, n, m, seed) -> str | None:
    gen = seeded_generator(seed)
    theta, phi, g = torch.randn(b, d, n, generator=gen), torch.randn(b, d, m, generator=gen), torch.randn(b, dv, m, generator=gen)
    got = learner(theta.clone(), phi.clone(), g.clone())
    scores = torch.bmm(theta.transpose(1, 2), phi)
    gt = g.transpose(1, 2)
    mistakes = {
        "divided by N (the number of query positions); C(x) is the number of KEY positions M (what each sum runs over)":
            torch.bmm(scores / n, gt),
        "the normalisation is missing: divide by M, the number of key positions": torch.bmm(scores, gt),
        "divided by d (the channel width); the dot-product version divides by M, the number of key positions":
            torch.bmm(scores / d, gt),
        "divided by √d (the Transformer's scale); the dot-product version divides by M": torch.bmm(scores / d ** 0.5, gt),
        "a softmax was used: that is the embedded Gaussian; the dot-product version divides by M instead":
            torch.bmm(scores.softmax(-1), gt),
        _RESHAPED_THETA: torch.bmm(torch.bmm(theta.reshape(b, n, d), phi) / m, gt),
        "g [B, dv, M] was reshaped/viewed to [B, M, dv], which scrambles channels and positions: transpose it "
        "(g.transpose(1, 2))": torch.bmm(scores / m, g.reshape(b, m, dv)),
    }
    return compare_tensors(got, torch.bmm(scores / m, gt), "y", atol=1e-5, mistakes=mistakes)


@register_exercise("04.dot_product_norm", title="Dot-product non-local: y = (θᵀφ / M) gᵀ", points=2,
                   solution=dot_product_nonlocal)
def _check_dot(learner):
    for b, d, dv, n, m, seed in [(2, 4, 3, 6, 10, 0), (1, 3, 5, 12, 4, 1), (3, 2, 2, 5, 5, 2)]:
        yield run_case(f"θ [{b}, {d}, {n}], φ [{b}, {d}, {m}], g [{b}, {dv}, {m}] -> y [{b}, {n}, {dv}]", _case_dot,
                       learner, b, d, dv, n, m, seed)


# --------------------------------------------------------------------------------------------------
# 04.gc_context
# --------------------------------------------------------------------------------------------------
def _case_gc(learner, b, c, h, w, seed) -> str | None:
    gen = seeded_generator(seed)
    x, logits = torch.randn(b, c, h, w, generator=gen), torch.randn(b, 1, h, w, generator=gen) * 2
    got = learner(x.clone(), logits.clone())
    mistakes = {
        "softmax over dim=1 (a single channel) gives all ones: flatten the H·W positions and take the softmax over them":
            x.sum((2, 3), keepdim=True),
        "that is global average pooling (SE's squeeze); GCNet weights the positions with softmax(mask logits)":
            x.mean((2, 3), keepdim=True),
        "the softmax is missing: the weights must sum to 1 over the H·W positions":
            (x * logits).sum((2, 3), keepdim=True),
        "softmax over each row only (dim=-1 of [B, 1, H, W]); take it over all H·W positions at once":
            (x * logits.softmax(-1)).sum((2, 3), keepdim=True),
        "x was rescaled but not summed over positions: the context is one vector per sample, [B, C, 1, 1]":
            x * logits.reshape(b, 1, -1).softmax(-1).reshape(b, 1, h, w),
        "x [B, C, H, W] was reshaped/viewed to [B, H·W, C], which scrambles channels and positions: flatten it to "
        "[B, C, H·W] (x.flatten(2)) and transpose if needed":
            torch.bmm(logits.reshape(b, 1, -1).softmax(-1), x.reshape(b, h * w, c)).reshape(b, c, 1, 1),
    }
    return compare_tensors(got, gc_context(x, logits), "context", atol=1e-5, mistakes=mistakes)


@register_exercise("04.gc_context", title="GCNet's context: softmax over positions, then the weighted sum", points=2,
                   solution=gc_context)
def _check_gc(learner):
    for b, c, h, w, seed in [(2, 5, 4, 6, 0), (1, 3, 7, 3, 1), (3, 8, 5, 5, 2)]:
        yield run_case(f"x [{b}, {c}, {h}, {w}], logits [{b}, 1, {h}, {w}] -> [{b}, {c}, 1, 1]", _case_gc, learner,
                       b, c, h, w, seed)


# --------------------------------------------------------------------------------------------------
# questions (predict first, interpret after; counted apart from the exercises)
# --------------------------------------------------------------------------------------------------
register_question(
    "04.predict_affinity_size", title="Predict: how big is the affinity matrix of one 40×40 map?", when="predict",
    tolerance=0.01, answer=(40 * 40) ** 2 / 1e6, unit="million entries",
    explanation="A 40×40 map has N = 1,600 positions; the affinity pairs every position with every other: "
                "N² = 2,560,000 entries per image (and per head), about 10 MB in float32 — for a batch of 32, "
                "about 330 MB. Section 5 measures what this costs.")


def _pairs_acc(arm: str) -> float:
    return 100 * recorded("nonlocal_pairs")["arms"][arm]["mean_test_acc"]


register_question(
    "04.predict_baseline_pairs", title="Predict: how does the plain CNN do on long-range pairs?", when="predict",
    choices={"a": "below 60 % (near chance: 50 % for two classes)", "b": "60 to 85 %", "c": "85 % or more"},
    answer=lambda: bucket(_pairs_acc("baseline"), [60, 85]),
    explanation=lambda correct: (
        f"Recorded ({recorded_note('nonlocal_pairs')}): the baseline reaches {_pairs_acc('baseline'):.1f} %, the "
        f"non-local network {_pairs_acc('nonlocal'):.1f} %. The two digits never fall in one receptive field of "
        "the baseline, and its global pooling followed by a linear classifier cannot compare them; one non-local "
        "block lets every position read every other, so the comparison can happen inside the network."))

register_question(
    "04.interpret_one_layer", title="Interpret: what lets one non-local block relate the two digits?",
    when="interpret",
    choices={"a": "it makes the network deeper, so the receptive field grows",
             "b": "each output position is a weighted sum over all positions, with weights computed from the input",
             "c": "its 1×1 convolutions see a larger neighbourhood than a 3×3 convolution",
             "d": "batch norm after W mixes information across the batch"},
    answer="b",
    explanation="y_i = Σ_j f(x_i, x_j) g(x_j) / C(x) sums over *every* position j, so a query on the left digit "
                "can take features from the right digit in a single layer, however far apart they are; the "
                "weights f depend on the content, which is what the attention map of section 9 shows. Depth grows a "
                "CNN's receptive field only a few pixels per layer, 1×1 convolutions see one position, and batch "
                "norm does not relate positions of one image.")
