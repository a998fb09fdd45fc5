"""Exercises of module 00 (foundations): statistics, the attention template, and what a convolution costs.

=================  ======  =====================================================================
key                points  the learner writes
=================  ======  =====================================================================
``00.channel_stat``   2    ``channel_stat(x)``: per-channel mean over space, ``[N, C, H, W] -> [N, C, 1, 1]``
``00.reweight``       3    ``reweight(x, stat_fn)``: the generic template ``x * sigmoid(stat_fn(x))``
``00.conv_params``    2    ``conv_params(c_in, c_out, k, bias=True)``: parameters of a ``k×k`` ``nn.Conv2d``
``00.conv_flops``     2    ``conv_flops(c_in, c_out, k, h, w)``: FLOPs of that convolution on an ``h×w`` map
=================  ======  =====================================================================

Questions (counted apart, 1 point each): ``00.predict_pairs_growth`` (number), ``00.interpret_channel_weights``
(choice), ``00.predict_baseline_acc`` (choice, read from the recorded ``foundations_baseline`` run).
"""
from __future__ import annotations

import random

import torch

from .core import (bucket, compare_gradient, compare_number_cases, compare_tensors, recorded, recorded_note,
                   register_exercise, register_question, run_case, seeded_generator, tensor_type_hint)
from .side_properties import side_property

__all__ = ["channel_stat", "reweight", "conv_params", "conv_flops"]


# --------------------------------------------------------------------------------------------------
# reference solutions
# --------------------------------------------------------------------------------------------------
def channel_stat(x: torch.Tensor) -> torch.Tensor:
    """Global average pooling: the mean of each channel over all positions, ``[N, C, H, W] -> [N, C, 1, 1]``."""
    return x.mean(dim=(2, 3), keepdim=True)


def reweight(x: torch.Tensor, stat_fn) -> torch.Tensor:
    """The attention template: a statistic along some dimension -> weights in (0, 1) -> reweight ``x``.

    ``stat_fn(x)`` returns a tensor with size 1 along the dimensions it summarised (``[N, C, 1, 1]``
    for channel attention, ``[N, 1, H, W]`` for spatial attention); broadcasting spreads the weights.
    """
    return x * torch.sigmoid(stat_fn(x))


def conv_params(c_in: int, c_out: int, k: int, bias: bool = True) -> int:
    """Learnable parameters of ``nn.Conv2d(c_in, c_out, k, bias=bias)``: ``c_out·c_in·k²`` (+ ``c_out``)."""
    return c_out * c_in * k * k + (c_out if bias else 0)


def conv_flops(c_in: int, c_out: int, k: int, h: int, w: int) -> int:
    """FLOPs of a ``k×k`` convolution (stride 1, "same" padding, no bias) on a ``c_in×h×w`` input.

    Each of the ``c_out·h·w`` outputs needs ``c_in·k²`` multiply-adds; one multiply-add is 2 FLOPs
    (the convention of ``torch.utils.flop_counter`` and :func:`attncourse.cost.count_flops`).
    """
    return 2 * c_in * c_out * k * k * h * w


# --------------------------------------------------------------------------------------------------
# checkers
# --------------------------------------------------------------------------------------------------
_SHAPES = [(2, 3, 5, 5), (1, 4, 7, 3), (3, 8, 4, 6), (2, 1, 2, 9)]  # batch 1, one channel, non-square


def _not_in_place(call, x: torch.Tensor) -> str | None:
    before = x.clone()
    call()
    if not torch.equal(x, before):
        return "your function changed its input in place; compute a new tensor instead (no x.mul_(), x[...] = …)"
    return None


def _case_channel_stat(learner, x: torch.Tensor) -> str | None:
    expected = channel_stat(x)
    n, c, h, w = x.shape
    mistakes = {
        "the mean was taken over the channels (dim=1); average over the spatial dims (2, 3) instead":
            x.mean(dim=1, keepdim=True),
        "that is the sum over space; divide by H·W (use .mean)": x.sum(dim=(2, 3), keepdim=True),
        "that is the maximum over space (CBAM's second statistic); this exercise asks for the mean":
            x.amax(dim=(2, 3), keepdim=True),
        "averaged over H only; average over both H and W (dim=(2, 3))": x.mean(dim=2, keepdim=True),
        "averaged over W only; average over both H and W (dim=(2, 3))": x.mean(dim=3, keepdim=True),
        "averaged over everything but the batch; keep one value per channel": x.mean(dim=(1, 2, 3), keepdim=True),
    }
    got = learner(x.clone())
    return compare_tensors(got, expected, "output", mistakes=mistakes)


def _case_channel_stat_grad(learner) -> str | None:
    x = torch.randn(2, 3, 4, 5, generator=seeded_generator(1), requires_grad=True)
    out = learner(x)
    if not isinstance(out, torch.Tensor):
        return tensor_type_hint(out, "the output")
    if not out.requires_grad:
        return "the output is not connected to the input's autograd graph (no .detach(), .numpy() or torch.no_grad())"
    out.sum().backward()
    if x.grad is None:
        return "no gradient reached the input"
    return compare_gradient(out, channel_stat(x), x.grad, torch.full_like(x, 1 / 20), "the gradient of sum(output) w.r.t. x",
                            mistakes={"gradient is 1 everywhere: a sum, not a mean": torch.ones_like(x)})


@register_exercise("00.channel_stat", title="Per-channel statistic: global average pooling", points=2,
                   solution=channel_stat)
def _check_channel_stat(learner):
    gen = seeded_generator(0)
    for shape in _SHAPES:
        x = torch.randn(shape, generator=gen) * 2 + 0.5
        yield run_case(f"x of shape {list(shape)} -> [N, C, 1, 1]", _case_channel_stat, learner, x)
    x = torch.randn(2, 3, 4, 4, generator=gen)
    yield side_property(run_case("input left unchanged", _not_in_place, lambda: learner(x), x))
    yield side_property(run_case("gradient flows back to x", _case_channel_stat_grad, learner))


# ---- reweight ------------------------------------------------------------------------------------
def _stat_channel_mean(x):  # channel attention: [N, C, 1, 1]
    return x.mean(dim=(2, 3), keepdim=True)


def _stat_spatial_mean(x):  # spatial attention: [N, 1, H, W]
    return x.mean(dim=1, keepdim=True)


def _stat_channel_max(x):
    return x.amax(dim=(2, 3), keepdim=True)


def _stat_row_mean(x):  # one weight per (channel, row): [N, C, H, 1]
    return x.mean(dim=3, keepdim=True)


_STATS = [("channel mean [N,C,1,1]", _stat_channel_mean), ("spatial mean [N,1,H,W]", _stat_spatial_mean),
          ("channel max [N,C,1,1]", _stat_channel_max), ("row mean [N,C,H,1]", _stat_row_mean)]


_SOFTMAX = "softmax is not the gate here: use torch.sigmoid (independent weights in (0, 1))"


def _case_reweight(learner, x: torch.Tensor, stat_fn) -> str | None:
    s = stat_fn(x)
    expected = x * torch.sigmoid(s)
    mistakes = [
        ("the weights were not squashed: apply torch.sigmoid to the statistic before multiplying", x * s),
        (_SOFTMAX, x * torch.softmax(s.flatten(1), dim=1).view_as(s)),
        (_SOFTMAX, x * torch.softmax(s, dim=1)),  # over a one-channel statistic: weights of exactly 1
        ("you added the weights; attention multiplies x by them", x + torch.sigmoid(s)),
        ("x·(1 + σ(s)) is BAM's residual variant; return x·σ(s)", x * (1 + torch.sigmoid(s))),
        ("you returned the weights; return x multiplied by them", torch.sigmoid(s).expand_as(x)),
        ("you returned x unchanged", x),
    ]
    for name, other in _STATS:  # ignoring stat_fn and hard-coding one statistic
        if other is not stat_fn:
            mistakes.append((f"this is the result for the {name.split(' [')[0]} statistic: call stat_fn(x), do not "
                             "compute a statistic of your own", x * torch.sigmoid(other(x))))
    calls = []

    def counted(t):
        calls.append(1)
        return stat_fn(t)

    got = learner(x.clone(), counted)
    if not calls:
        return "stat_fn was never called: compute the statistic with stat_fn(x)"
    return compare_tensors(got, expected, "output", mistakes=mistakes)


def _case_reweight_grad(learner) -> str | None:
    gen = seeded_generator(2)
    x = torch.randn(2, 4, 3, 5, generator=gen, requires_grad=True)
    a = torch.tensor(1.5, requires_grad=True)  # a learnable scale inside the statistic

    def stat_fn(t):
        return a * t.mean(dim=(2, 3), keepdim=True)

    out = learner(x, stat_fn)
    if not isinstance(out, torch.Tensor):
        return tensor_type_hint(out, "the output")
    if not out.requires_grad:
        return "the output is not connected to the autograd graph (no .detach(), .numpy() or torch.no_grad())"
    out.sum().backward()
    if a.grad is None:
        return "no gradient reached the statistic's parameters: the weights must come from stat_fn(x) in the graph"
    def run(combine):  # (output, d/da, d/dx) of sum(combine(x, a * mean(x))) for a formula
        x_ref = x.detach().clone().requires_grad_(True)
        a_ref = torch.tensor(1.5, requires_grad=True)
        y = combine(x_ref, a_ref * x_ref.mean(dim=(2, 3), keepdim=True))
        y.sum().backward()
        return y.detach(), a_ref.grad, x_ref.grad

    reference, want_a, want_x = run(lambda t, s: t * torch.sigmoid(s))
    formulas = [("x * stat_fn(x) without the sigmoid", lambda t, s: t * s),
                ("x + sigmoid(stat_fn(x)): multiply, do not add", lambda t, s: t + torch.sigmoid(s)),
                (f"a softmax gate: {_SOFTMAX}", lambda t, s: t * torch.softmax(s, dim=1)),
                (f"a softmax gate: {_SOFTMAX}", lambda t, s: t * torch.softmax(s.flatten(1), dim=1).view_as(s)),
                ("x·(1 + σ(stat_fn(x))), BAM's residual variant; return x·σ(stat_fn(x))",
                 lambda t, s: t * (1 + torch.sigmoid(s))),
                ("the weights σ(stat_fn(x)) alone; return x multiplied by them",
                 lambda t, s: torch.sigmoid(s).expand_as(t))]
    mistakes = []  # a formula is named only when the output, not just this gradient, is the formula's
    for hint, formula in formulas:
        y, grad_a, _ = run(formula)
        if out.shape == y.shape and torch.allclose(out.detach(), y, atol=1e-5, rtol=1e-4):
            mistakes.append((f"it matches {hint}", grad_a))
    return (compare_gradient(out, reference, a.grad, want_a, "the gradient w.r.t. the statistic's parameter",
                             mistakes=mistakes)
            or compare_gradient(out, reference, x.grad, want_x, "the gradient w.r.t. x"))


@register_exercise("00.reweight", title="The attention template: statistic -> sigmoid weights -> reweight", points=3,
                   solution=reweight)
def _check_reweight(learner):
    gen = seeded_generator(0)
    for (name, stat_fn), shape in zip(_STATS, _SHAPES):
        x = torch.randn(shape, generator=gen) * 1.5
        yield run_case(f"{name}, x {list(shape)}", _case_reweight, learner, x, stat_fn)
    x = torch.randn(2, 3, 4, 4, generator=gen)
    yield side_property(run_case("input left unchanged", _not_in_place, lambda: learner(x, _stat_channel_mean), x))
    yield side_property(run_case("gradient flows to x and to the statistic", _case_reweight_grad, learner))


# ---- conv_params ---------------------------------------------------------------------------------
def _conv_configs(rng: random.Random, n: int, *, k=None, bias=None):
    for _ in range(n):
        yield (rng.randint(1, 96), rng.randint(1, 128), k if k is not None else rng.choice([1, 3, 5, 7]),
               bias if bias is not None else rng.random() < 0.5)


def _case_conv_params(learner, configs) -> str | None:
    cases = []
    for c_in, c_out, k, bias in configs:
        expected = conv_params(c_in, c_out, k, bias)
        weights = c_out * c_in * k * k
        mistakes = {
            "the bias adds one parameter per output channel (c_out)": weights,
            "there is one bias per OUTPUT channel, not per input channel": weights + (c_in if bias else 0),
            "bias=False means no bias parameters": weights + c_out,
            "a k×k kernel has k·k weights per (input, output) channel pair, not k": c_out * c_in * k + (c_out if bias else 0),
            "each output channel's filter spans all c_in input channels: multiply by c_in": c_out * k * k + (c_out if bias else 0),
        }
        cases.append((f"conv_params({c_in}, {c_out}, {k}, bias={bias})", learner(c_in, c_out, k, bias), expected, mistakes))
    return compare_number_cases(cases, integer=True)


@register_exercise("00.conv_params", title="Parameters of a convolution", points=2, solution=conv_params)
def _check_conv_params(learner):
    rng = random.Random(0)
    yield run_case("1×1 convolutions (pointwise)", _case_conv_params, learner, list(_conv_configs(rng, 5, k=1)))
    yield run_case("3×3 convolutions with bias", _case_conv_params, learner, list(_conv_configs(rng, 5, k=3, bias=True)))
    yield run_case("convolutions without bias", _case_conv_params, learner, list(_conv_configs(rng, 5, bias=False)))
    yield run_case("5×5 and 7×7 convolutions", _case_conv_params, learner,
                   [c for kk in (5, 7) for c in _conv_configs(rng, 3, k=kk)])
    yield run_case("20 random convolutions", _case_conv_params, learner, list(_conv_configs(rng, 20)))


# ---- conv_flops ----------------------------------------------------------------------------------
def _case_conv_flops(learner, configs) -> str | None:
    cases = []
    for c_in, c_out, k, h, w in configs:
        expected = conv_flops(c_in, c_out, k, h, w)
        mistakes = {
            "that counts multiply-adds (MACs); FLOPs count the multiply and the add: 2 per MAC": expected / 2,
            "a k×k kernel has k² taps, not k": expected / k,
            "the kernel is applied at each of the h·w output positions: multiply by h·w": expected / (h * w),
            "each output needs c_in·k² multiply-adds; multiply by c_in": expected / c_in,
            "every one of the c_out output channels is computed: multiply by c_out": expected / c_out,
            "the bias was counted (this exercise has no bias): leave out the c_out·h·w additions":
                expected + c_out * h * w,
            "the map shrank: with same padding the output keeps its h×w size, no (h − k + 1)·(w − k + 1)":
                expected // (h * w) * (h - k + 1) * (w - k + 1) if k > 1 else None,
        }
        cases.append((f"conv_flops({c_in}, {c_out}, {k}, {h}, {w})", learner(c_in, c_out, k, h, w), expected, mistakes))
    return compare_number_cases(cases, integer=True)


def _flop_configs(rng: random.Random, n: int, k=None):
    for _ in range(n):
        yield (rng.randint(2, 64), rng.randint(2, 64), k if k is not None else rng.choice([3, 5, 7]),
               rng.randint(2, 48), rng.randint(2, 48))


@register_exercise("00.conv_flops", title="FLOPs of a convolution", points=2, solution=conv_flops)
def _check_conv_flops(learner):
    rng = random.Random(0)
    yield run_case("1×1 convolutions", _case_conv_flops, learner, list(_flop_configs(rng, 5, k=1)))
    yield run_case("3×3 convolutions", _case_conv_flops, learner, list(_flop_configs(rng, 5, k=3)))
    yield run_case("non-square maps, k in {3, 5, 7}", _case_conv_flops, learner, list(_flop_configs(rng, 5)))
    yield run_case("20 random convolutions", _case_conv_flops, learner, list(_flop_configs(rng, 20)))


# --------------------------------------------------------------------------------------------------
# questions (predict first, interpret after; counted apart from the exercises)
# --------------------------------------------------------------------------------------------------
register_question(
    "00.predict_pairs_growth", title="Predict: how fast does the pairwise matrix grow?", when="predict",
    tolerance=0, answer=16,
    explanation="A map of h×w has N = h·w positions and the matrix has N² entries. Doubling h and w multiplies "
                "N by 4 and N² by 4² = 16. That quadratic growth is why self-attention needs small maps or the "
                "cheaper forms of module 04.")

register_question(
    "00.interpret_channel_weights", title="Interpret: what do channel weights of shape [N, C, 1, 1] change?",
    when="interpret",
    choices={"a": "which positions of the image count more",
             "b": "how much each channel counts, the same at every position of that channel",
             "c": "how much each image of the batch counts in the loss",
             "d": "the kernel weights of the next convolution"},
    answer="b",
    explanation="The weights have one number per image and channel and size 1 along H and W, so broadcasting "
                "multiplies every position of channel c by the same number. Channel attention chooses *what* "
                "(which features), never *where*; a map of shape [N, 1, H, W] would choose where.")


def _baseline_acc() -> float:
    return 100 * recorded("foundations_baseline")["arms"]["baseline"]["mean_test_acc"]


register_question(
    "00.predict_baseline_acc", title="Predict: how well does the plain baseline read cluttered digits?",
    when="predict",
    choices={"a": "below 50 %", "b": "50 to 80 %", "c": "80 to 95 %", "d": "95 % or more"},
    answer=lambda: bucket(_baseline_acc(), [50, 80, 95]),
    explanation=lambda correct: (
        f"The recorded baseline reached {_baseline_acc():.1f} % test accuracy "
        f"({recorded_note('foundations_baseline')}); chance is 10 % with ten classes. A plain convolutional "
        "network already reads most digits among the clutter: what is left is the room spatial attention "
        "(module 05) has to show a gain in, and why a gain of a point or two needs its 95 % interval over seeds "
        "and test images before it counts."))
