"""Exercises of module 07 (SKNet and branch attention): SK's fuse and select, the Highway gate, CondConv's routing.

=======================  ======  =====================================================================
key                      points  the learner writes
=======================  ======  =====================================================================
``07.sk_fuse_select``       4    ``sk_fuse_select(u, reduce, select)``: ``U [N, M, C, H, W] → V [N, C, H, W]``
``07.highway_gate``         3    ``highway_layer(x, transform, gate)``: ``ReLU(H(x))·T + x·(1 − T)``
``07.condconv_routing``     3    ``condconv_kernels(x, routing_fn, experts)``: per-sample kernels ``[N, C', C, k, k]``
=======================  ======  =====================================================================

Questions (counted apart, 1 point each): ``07.predict_condconv_params`` (number: how many times the plain conv's
weights does a 4-expert CondConv hold) and ``07.predict_temperature`` (choice: what τ = 30 does to the kernel
attention at the start of training).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .core import (compare_tensors, gradient_flow, match_mistakes, register_exercise, register_question, run_case,
                   seeded_generator)
from .side_properties import side_property

__all__ = ["sk_fuse_select", "highway_layer", "condconv_kernels"]


# --------------------------------------------------------------------------------------------------
# reference solutions
# --------------------------------------------------------------------------------------------------
def sk_fuse_select(u: torch.Tensor, reduce, select) -> torch.Tensor:
    """SK's fuse and select. ``u [N, M, C, H, W]`` (the M branch outputs stacked); ``reduce`` maps ``[N, C] → [N, d]``
    (FC → BN → ReLU, given); ``select`` maps ``[N, d] → [N, M·C]`` (the per-branch FCs stacked, branch-major).

    fuse: ``s = GAP(Σ_m U_m) [N, C]``, ``z = reduce(s)``; select: ``a = softmax over M of select(z) viewed [N, M, C]``;
    output ``V = Σ_m a_m · U_m``, ``[N, C, H, W]``.
    """
    n, m, c = u.shape[:3]
    s = u.sum(1).mean((2, 3))
    a = torch.softmax(select(reduce(s)).reshape(n, m, c), dim=1)
    return (a[..., None, None] * u).sum(1)


def highway_layer(x: torch.Tensor, transform, gate) -> torch.Tensor:
    """``y = H(x)·T(x) + x·(1 − T(x))`` with ``H(x) = ReLU(transform(x))`` and ``T(x) = σ(gate(x))``."""
    t = torch.sigmoid(gate(x))
    return torch.relu(transform(x)) * t + x * (1 - t)


def condconv_kernels(x: torch.Tensor, routing_fn, experts: torch.Tensor) -> torch.Tensor:
    """CondConv's per-sample kernels: ``r = σ(routing_fn(GAP(x))) [N, E]``, ``W_n = Σ_e r[n, e] · experts[e]``.

    ``x [N, C, H, W]``, ``routing_fn``: ``[N, C] → [N, E]`` (a Linear), ``experts [E, C', C, k, k]`` → ``[N, C', C, k, k]``.
    """
    r = torch.sigmoid(routing_fn(x.mean((2, 3))))
    return torch.einsum("ne,eoikl->noikl", r, experts)


def _flow(forward, reference, inputs, layers: nn.Module, **names) -> str | None:
    """:func:`gradient_flow` to the input and every parameter of ``layers`` (the given layers: a weight computed
    under ``torch.no_grad()`` or detached leaves them without a gradient, although the input still gets one).

    Layers without a gradient are reported only when the output is right (``reference(input)``): a wrong output
    that does not use a layer is the value cases' to report, once."""
    hint = gradient_flow(forward, inputs, layers, **names)
    if hint and hint.startswith(("no gradient reached these parameters", "these parameters get a zero gradient")):
        with torch.no_grad():
            right = all(isinstance(out, torch.Tensor) and out.shape == ref.shape and torch.allclose(out, ref, atol=1e-5)
                        for x in inputs for out, ref in [(forward(x), reference(x))])
        if not right:
            return None
        hint = hint.replace("(are they used in forward?)",
                            "(is their part computed under torch.no_grad() or detached?)")
    return hint


# --------------------------------------------------------------------------------------------------
# 07.sk_fuse_select
# --------------------------------------------------------------------------------------------------
class _Linear(nn.Module):
    """``[N, in] → [N, out]``: ``act(s @ Wᵀ + b)`` with given weights (the checker's FC layers, with parameters so
    that the gradient case can see whether they get a gradient)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, act=None):
        super().__init__()
        self.weight, self.bias, self.act = nn.Parameter(weight), nn.Parameter(bias), act

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        out = s @ self.weight.T + self.bias
        return self.act(out) if self.act is not None else out


def _sk_parts(n: int, m: int, c: int, hw: tuple[int, int], seed: int):
    """Branches ``u [N, M, C, H, W]``, ``reduce`` (FC → ReLU, C → d) and ``select`` (d → M·C). The reduce bias
    keeps ``z`` away from 0 (a zero ``z`` makes every branch weight 1/M, where several mistakes give the right
    answer)."""
    gen = seeded_generator(seed)
    d = max(2, c // 2)
    u = torch.relu(torch.randn(n, m, c, *hw, generator=gen) + 0.3)
    reduce = _Linear(torch.randn(d, c, generator=gen) / c ** 0.5, torch.rand(d, generator=gen) + 0.5, torch.relu)
    select = _Linear(torch.randn(m * c, d, generator=gen), torch.zeros(m * c))
    return u, reduce, select


_SK_CHANNEL_SOFTMAX = "the softmax runs across channels; SK's softmax runs across the M branches (dim of size M)"
_SK_SIGMOID = "a sigmoid per branch is not SK's select: the branch weights are a softmax across branches (they sum to 1)"
_SK_NO_SOFTMAX = "the select logits were used without a softmax across branches"
_SK_MEAN_FUSE = "the branches were averaged before pooling; SK fuses them by a sum (s = GAP(Σ_m U_m))"
_SK_MAX_POOL = "the fused map was max-pooled; SK's squeeze is global AVERAGE pooling"
_SK_LAYOUT = "the select output was viewed as [N, C, M]; it is branch-major, [N, M, C] (branch m's C logits together)"
_SK_WEIGHTS = "that is the weights a [N, M, C]; return the weighted sum V = Σ_m a_m · U_m"
_SK_FIRST = "only the first branch was returned; V is the weighted sum of ALL branches"


def _sk_mistakes(u, reduce, select):
    n, m, c = u.shape[:3]
    logits = select(reduce(u.sum(1).mean((2, 3))))
    mix = lambda a: (a[..., None, None] * u).sum(1)  # noqa: E731
    return [
        (_SK_CHANNEL_SOFTMAX, mix(torch.softmax(logits.reshape(n, m, c), dim=2))),
        (_SK_SIGMOID, mix(torch.sigmoid(logits.reshape(n, m, c)))),
        (_SK_NO_SOFTMAX, mix(logits.reshape(n, m, c))),
        (_SK_MEAN_FUSE, mix(torch.softmax(select(reduce(u.mean(1).mean((2, 3)))).reshape(n, m, c), dim=1))),
        (_SK_MAX_POOL, mix(torch.softmax(select(reduce(u.sum(1).amax((2, 3)))).reshape(n, m, c), dim=1))),
        (_SK_LAYOUT, mix(torch.softmax(logits.reshape(n, c, m).transpose(1, 2), dim=1))),
        (_SK_WEIGHTS, torch.softmax(logits.reshape(n, m, c), dim=1)),
        (_SK_FIRST, u[:, 0]),
    ]


def _case_sk(learner, n, m, c, hw, seed):
    u, reduce, select = _sk_parts(n, m, c, hw, seed)
    with torch.no_grad():
        expected = sk_fuse_select(u, reduce, select)
        mistakes = _sk_mistakes(u, reduce, select)
    got = learner(u.clone(), reduce, select)
    hint = match_mistakes(got, expected, mistakes)
    return hint or compare_tensors(got, expected, "V")


def _case_sk_grad(learner):
    u, reduce, select = _sk_parts(2, 2, 6, (4, 5), 11)
    layers = nn.ModuleDict({"reduce": reduce, "select": select})
    return _flow(lambda t: learner(t, reduce, select), lambda t: sk_fuse_select(t, reduce, select), [u], layers,
                 input_name="U", output_name="V")


@register_exercise("07.sk_fuse_select", title="SK: fuse the branches, select with a softmax across branches", points=4,
                   solution=sk_fuse_select)
def _check_sk(learner):
    for n, m, c, hw, seed in [(2, 2, 8, (5, 5), 1), (3, 3, 6, (4, 7), 2), (1, 2, 4, (6, 3), 3)]:
        yield run_case(f"U [{n}, {m}, {c}, {hw[0]}, {hw[1]}]", _case_sk, learner, n, m, c, hw, seed)
    yield side_property(run_case("gradient reaches every branch and the reduce and select layers", _case_sk_grad,
                                 learner))


# --------------------------------------------------------------------------------------------------
# 07.highway_gate
# --------------------------------------------------------------------------------------------------
_HW_SWAPPED = "the gate is swapped: T weighs the transform H(x) and (1 − T) the carried x"
_HW_NO_SIGMOID = "the gate T needs a sigmoid: T(x) = σ(gate(x))"
_HW_NO_RELU = "H(x) = ReLU(transform(x)): the ReLU on the transform is missing"
_HW_NO_CARRY = "the carry term x·(1 − T) is missing"
_HW_RESIDUAL = "that is a residual sum H(x) + x; a highway layer gates between them: H·T + x·(1 − T)"
_HW_CARRY_T = "the carry uses x·T; it is x·(1 − T) (carry gate C = 1 − T)"


def _hw_parts(c: int, seed: int):
    gen = seeded_generator(seed)
    transform, gate = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)
    with torch.no_grad():
        for p in (*transform.parameters(), *gate.parameters()):
            p.copy_(torch.randn(p.shape, generator=gen) * 0.4)
    return transform, gate


def _case_hw(learner, shape, seed):
    transform, gate = _hw_parts(shape[1], seed)
    x = torch.randn(shape, generator=seeded_generator(seed + 100))
    with torch.no_grad():
        expected = highway_layer(x, transform, gate)
        got = learner(x.clone(), transform, gate)
        h, tl = torch.relu(transform(x)), gate(x)
        t = torch.sigmoid(tl)
        mistakes = [(_HW_SWAPPED, h * (1 - t) + x * t), (_HW_NO_SIGMOID, h * tl + x * (1 - tl)),
                    (_HW_NO_RELU, transform(x) * t + x * (1 - t)), (_HW_NO_CARRY, h * t), (_HW_RESIDUAL, h + x),
                    (_HW_CARRY_T, h * t + x * t)]
    return match_mistakes(got, expected, mistakes) or compare_tensors(got, expected, "y")


def _case_hw_grad(learner):
    transform, gate = _hw_parts(4, 7)
    x = torch.randn(2, 4, 5, 5, generator=seeded_generator(9))
    layers = nn.ModuleDict({"transform": transform, "gate": gate})
    return _flow(lambda t: learner(t, transform, gate), lambda t: highway_layer(t, transform, gate), [x], layers,
                 output_name="y")


@register_exercise("07.highway_gate", title="Highway: y = H(x)·T(x) + x·(1 − T(x))", points=3, solution=highway_layer)
def _check_hw(learner):
    for shape, seed in [((2, 4, 5, 5), 1), ((1, 6, 3, 7), 2), ((3, 2, 4, 4), 3)]:
        yield run_case(f"x {list(shape)}", _case_hw, learner, shape, seed)
    yield side_property(run_case("gradient reaches x, the transform and the gate", _case_hw_grad, learner))


# --------------------------------------------------------------------------------------------------
# 07.condconv_routing
# --------------------------------------------------------------------------------------------------
_CC_SOFTMAX = "the routing weights are independent sigmoids in CondConv (a softmax across experts is Dynamic Convolution)"
_CC_NO_SIGMOID = "the routing logits need a sigmoid: r = σ(routing_fn(GAP(x)))"
_CC_MAX_POOL = "the routing reads GLOBAL AVERAGE pooling of x, not max pooling"
_CC_UNIFORM = "every expert got the same weight: the mixture must use each sample's routing weights r[n, e]"
_CC_SUM = "the experts were summed without the routing weights"
_CC_WEIGHTS = "that is the routing weights r [N, E]; return the mixed kernels Σ_e r[n, e] · W_e"


def _cc_parts(n, c, cout, k, e, seed):
    gen = seeded_generator(seed)
    x = torch.randn(n, c, 5, 6, generator=gen) + torch.randn(n, c, 1, 1, generator=gen)
    routing_fn = nn.Linear(c, e)
    with torch.no_grad():
        routing_fn.weight.copy_(torch.randn(e, c, generator=gen))
        routing_fn.bias.copy_(torch.randn(e, generator=gen) * 0.5)
    experts = torch.randn(e, cout, c, k, k, generator=gen)
    return x, routing_fn, experts


def _case_cc(learner, n, c, cout, k, e, seed):
    x, routing_fn, experts = _cc_parts(n, c, cout, k, e, seed)
    with torch.no_grad():
        expected = condconv_kernels(x, routing_fn, experts)
        got = learner(x.clone(), routing_fn, experts)
        logits = routing_fn(x.mean((2, 3)))
        mix = lambda r: torch.einsum("ne,eoikl->noikl", r, experts)  # noqa: E731
        mistakes = [(_CC_SOFTMAX, mix(torch.softmax(logits, 1))), (_CC_NO_SIGMOID, mix(logits)),
                    (_CC_MAX_POOL, mix(torch.sigmoid(routing_fn(x.amax((2, 3)))))),
                    (_CC_UNIFORM, experts.mean(0).expand(n, *experts.shape[1:])),
                    (_CC_SUM, experts.sum(0).expand(n, *experts.shape[1:])),
                    (_CC_WEIGHTS, torch.sigmoid(logits))]
    return match_mistakes(got, expected, mistakes) or compare_tensors(got, expected, "kernels")


def _case_cc_grad(learner):
    x, routing_fn, experts = _cc_parts(2, 4, 6, 3, 3, 5)
    layers = nn.Module()
    layers.routing_fn, layers.experts = routing_fn, nn.Parameter(experts)
    return _flow(lambda t: learner(t, routing_fn, layers.experts), lambda t: condconv_kernels(t, routing_fn, experts),
                 [x], layers, output_name="the kernel tensor")


@register_exercise("07.condconv_routing", title="CondConv: sigmoid routing from GAP, one mixed kernel per sample", points=3,
                   solution=condconv_kernels)
def _check_cc(learner):
    for n, c, cout, k, e, seed in [(2, 4, 6, 3, 3, 1), (3, 8, 8, 1, 4, 2), (1, 3, 5, 5, 2, 3)]:
        yield run_case(f"x [{n}, {c}, 5, 6], {e} experts [{cout}, {c}, {k}, {k}]", _case_cc, learner, n, c, cout, k, e, seed)
    yield side_property(run_case("gradient reaches x, the routing layer and the experts", _case_cc_grad, learner))


# --------------------------------------------------------------------------------------------------
# questions (predict first; counted apart from the exercises)
# --------------------------------------------------------------------------------------------------
def _condconv_ratio(c: int = 64, e: int = 4) -> float:
    from ..blocks.branch import CondConv2d

    plain = nn.Conv2d(c, c, 3, padding=1, bias=False)
    return sum(p.numel() for p in CondConv2d(c, num_experts=e).parameters()) / sum(p.numel() for p in plain.parameters())


register_question(
    "07.predict_condconv_params",
    title="Predict: a 3×3 conv 64 → 64 becomes a CondConv with 4 experts (and its routing Linear). How many times the "
          "plain conv's parameters does it hold?",
    when="predict", tolerance=0.05, answer=_condconv_ratio,
    explanation=lambda correct: (
        f"{correct:.3f}×: four expert kernels of 64·64·9 weights each, plus the routing Linear (64·4 weights and 4 "
        "biases), against one kernel of 64·64·9. The FLOPs barely change (each sample still runs ONE 3×3 conv, with "
        "its mixed kernel, plus the mixing of 4 kernels): CondConv buys capacity with weights, not with compute."))

register_question(
    "07.predict_temperature",
    title="Predict: Dynamic Convolution starts with temperature τ = 30. What does its attention over the K kernels "
          "look like at the first step?",
    when="predict",
    choices={"a": "nearly uniform (≈ 1/K each), whatever the input",
             "b": "one kernel gets almost all the weight",
             "c": "the weights are independent numbers in (0, 1) that need not sum to 1"},
    answer="a",
    explanation="softmax(z / 30) of logits z of order 1 is close to uniform: every kernel is used and every kernel "
                "gets a gradient, so none is starved early on. As fit anneals τ to 1 (set_training_progress), the "
                "attention can become selective. (c) describes CondConv's sigmoid routing, not a softmax.")
