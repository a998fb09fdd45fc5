"""Exercises of module 03 (beyond the average): SRM's style pooling, GSoP's covariance pooling, GE's gather.

=========================  ======  ===================================================================
key                        points  the learner writes
=========================  ======  ===================================================================
``03.style_pool``             3    ``style_pool(x, eps=1e-5)``: per-channel mean and std, ``[N, C, 2]``
``03.covariance_pool``        3    ``covariance_pool(x)``: centred covariance ÷ M, ``[N, d, d]``
``03.ge_gather``              3    ``ge_gather(x, extent)``: GE-θ⁻'s parameter-free gather at an extent
=========================  ======  ===================================================================

Questions (counted apart, 1 point each, all predict-first): ``03.predict_mean_blind``, ``03.predict_relu_mean`` and
``03.predict_covariance_cost`` (choices).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .core import (compare_gradient, compare_tensors, register_exercise, register_question, run_case, seeded_generator,
                   tensor_type_hint)
from .side_properties import side_property

__all__ = ["style_pool", "covariance_pool", "ge_gather"]


# --------------------------------------------------------------------------------------------------
# reference solutions
# --------------------------------------------------------------------------------------------------
def style_pool(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """SRM's style pooling: ``[N, C, H, W] → [N, C, 2]``; ``[..., 0]`` the mean, ``[..., 1]`` ``sqrt(var + eps)``
    with the *unbiased* variance (divisor ``H·W − 1``), as the official code."""
    flat = x.flatten(2)
    return torch.stack([flat.mean(2), (flat.var(2, unbiased=True) + eps).sqrt()], dim=-1)


def covariance_pool(x: torch.Tensor) -> torch.Tensor:
    """GSoP's covariance pooling: ``[N, d, H, W] → [N, d, d]``, ``Σ = x̃ x̃ᵀ / M`` with ``x̃`` centred over the
    ``M = H·W`` positions."""
    flat = x.flatten(2)
    centred = flat - flat.mean(2, keepdim=True)
    return centred @ centred.transpose(1, 2) / flat.shape[2]


def ge_gather(x: torch.Tensor, extent: int) -> torch.Tensor:
    """GE-θ⁻'s gather: ``extent=0`` the global mean ``[N, C, 1, 1]``; else the mean over a ``2e−1`` window every
    ``e`` pixels, padding ``e−1`` not counted: ``[N, C, ⌈H/e⌉, ⌈W/e⌉]``."""
    if extent == 0:
        return x.mean((2, 3), keepdim=True)
    return F.avg_pool2d(x, 2 * extent - 1, stride=extent, padding=extent - 1, count_include_pad=False)


def _gradient_case(learner, x: torch.Tensor, reference, what: str, *args, mistakes=None) -> str | None:
    """The learner's output must stay on x's autograd graph, with the reference's gradient of a weighted sum."""
    x = x.detach().clone().requires_grad_(True)
    out = learner(x, *args)
    if not isinstance(out, torch.Tensor):
        return tensor_type_hint(out, "the output")
    if not out.requires_grad:
        return ("the output is not connected to x's autograd graph (no .detach(), .numpy(), .item() or "
                "torch.no_grad())")
    expected_out = reference(x.detach(), *args)
    if out.shape != expected_out.shape:
        return None  # the value cases say what is wrong with the shape
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    (out * weights).sum().backward()
    if x.grad is None:
        return "no gradient reached x"
    ref_x = x.detach().clone().requires_grad_(True)
    (reference(ref_x, *args) * weights).sum().backward()
    return compare_gradient(out, expected_out, x.grad, ref_x.grad, what, mistakes=mistakes)


# --------------------------------------------------------------------------------------------------
# 03.style_pool
# --------------------------------------------------------------------------------------------------
def _style_input(shape, seed: int, constant_channel: bool = False) -> torch.Tensor:
    x = torch.randn(shape, generator=seeded_generator(seed)) * 1.5 + 0.7
    if constant_channel:  # a flat channel: only the eps inside the root keeps its std above 0
        x[:, 0] = 0.25
    return x


def _case_style(learner, x: torch.Tensor, eps: float) -> str | None:
    flat = x.flatten(2)
    mean, var_u, var_b = flat.mean(2), flat.var(2, unbiased=True), flat.var(2, unbiased=False)
    mistakes = {
        "that std divides by H·W (the biased, population std); the official SRM uses the unbiased variance, "
        "divisor H·W − 1 (x.var(unbiased=True), torch's default)": torch.stack([mean, (var_b + eps).sqrt()], -1),
        "eps goes inside the square root: sqrt(var + eps), not sqrt(var) + eps":
            torch.stack([mean, var_u.sqrt() + eps], -1),
        "eps is missing: sqrt(var + eps) keeps a flat channel's std (and its gradient) finite":
            torch.stack([mean, var_u.sqrt()], -1),
        "that is the variance; take the square root of var + eps": torch.stack([mean, var_u + eps], -1),
        "the two statistics are swapped: [..., 0] is the mean, [..., 1] the std":
            torch.stack([(var_u + eps).sqrt(), mean], -1),
        "stacked on the wrong dimension: the result is [N, C, 2] (stack the two [N, C] tensors with dim=-1)":
            torch.stack([mean, (var_u + eps).sqrt()], 1),
    }
    got = learner(x.clone(), eps)
    return compare_tensors(got, style_pool(x, eps), f"style_pool(x {list(x.shape)}, eps={eps:g})", atol=1e-5,
                           mistakes=mistakes)


@register_exercise("03.style_pool", title="SRM's style pooling: the mean and the std of each channel", points=3,
                   solution=style_pool)
def _check_style_pool(learner):
    for i, shape in enumerate([(2, 3, 5, 5), (1, 4, 7, 3), (3, 8, 4, 6)]):
        yield run_case(f"x {list(shape)} -> [N, C, 2]", _case_style, learner, _style_input(shape, i), 1e-5)
    yield run_case("a flat (constant) channel: its std is sqrt(eps) (eps=1e-4)", _case_style, learner,
                   _style_input((2, 3, 4, 4), 7, constant_channel=True), 1e-4)
    yield run_case("another eps (0.01)", _case_style, learner, _style_input((2, 3, 3, 5), 8), 0.01)
    yield side_property(run_case("gradient flows back to x", _gradient_case, learner, _style_input((2, 3, 4, 5), 9), style_pool,
                   "the gradient of the style vector w.r.t. x", 1e-5))


# --------------------------------------------------------------------------------------------------
# 03.covariance_pool
# --------------------------------------------------------------------------------------------------
def _cov_input(shape, seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=seeded_generator(seed)) + torch.linspace(0.5, 2.0, shape[1]).view(1, -1, 1, 1)


def _case_cov(learner, x: torch.Tensor) -> str | None:
    flat = x.flatten(2)
    m = flat.shape[2]
    centred = flat - flat.mean(2, keepdim=True)
    gram = centred @ centred.transpose(1, 2)
    mistakes = {
        "not centred: subtract each channel's mean over the positions before the product (x̃ = x − mean)":
            flat @ flat.transpose(1, 2) / m,
        "divided by M − 1; GSoP's covariance divides by M = H·W (the official x·(I/M − 11ᵀ/M²)·xᵀ)": gram / (m - 1),
        "not divided by M = H·W: that is a sum over positions, not a mean": gram,
        "that is a Gram matrix over positions [N, M, M]; the covariance is between channels: x̃ x̃ᵀ with x̃ of "
        "shape [N, d, M]": centred.transpose(1, 2) @ centred / m,
        "that is the correlation (normalised by the stds); GSoP keeps the covariance itself":
            gram / m / ((centred.pow(2).mean(2).sqrt()[:, :, None] * centred.pow(2).mean(2).sqrt()[:, None, :])),
    }
    got = learner(x.clone())
    return compare_tensors(got, covariance_pool(x), f"covariance_pool(x {list(x.shape)})", atol=1e-4,
                           mistakes=mistakes)


@register_exercise("03.covariance_pool", title="GSoP's covariance pooling between channels", points=3,
                   solution=covariance_pool)
def _check_covariance_pool(learner):
    for i, shape in enumerate([(2, 3, 5, 5), (1, 4, 7, 3), (3, 6, 4, 6), (2, 2, 1, 9)]):
        yield run_case(f"x {list(shape)} -> [N, d, d]", _case_cov, learner, _cov_input(shape, i))
    yield side_property(run_case("gradient flows back to x", _gradient_case, learner, _cov_input((2, 3, 4, 5), 9), covariance_pool,
                   "the gradient of the covariance w.r.t. x"))


# --------------------------------------------------------------------------------------------------
# 03.ge_gather
# --------------------------------------------------------------------------------------------------
def _case_gather(learner, x: torch.Tensor, extent: int) -> str | None:
    mistakes = {}
    if extent:
        k, s, p = 2 * extent - 1, extent, extent - 1
        mistakes = {
            "the padding was counted in the mean: pass count_include_pad=False (border windows average fewer pixels)":
                F.avg_pool2d(x, k, stride=s, padding=p, count_include_pad=True),
            f"that is a max pool; GE-θ⁻ gathers with a mean (avg_pool2d)": F.max_pool2d(x, k, stride=s, padding=p),
            f"the window is e×e without padding; GE uses a (2e−1)-wide window, stride e, padding e−1 "
            f"(here kernel {k}, stride {s}, padding {p})": F.avg_pool2d(x, extent, stride=extent, ceil_mode=True),
            "that is the global mean; extent > 0 gathers local windows ([N, C, ⌈H/e⌉, ⌈W/e⌉])":
                x.mean((2, 3), keepdim=True),
            "stride 1: the gather keeps every position; GE's windows are e pixels apart (stride e)":
                F.avg_pool2d(x, k, stride=1, padding=p, count_include_pad=False),
        }
    else:
        mistakes = {"that is a max over the map; the global gather is the mean": x.amax((2, 3), keepdim=True),
                    "that is the sum over the map; the global gather is the mean": x.sum((2, 3), keepdim=True)}
    got = learner(x.clone(), extent)
    return compare_tensors(got, ge_gather(x, extent), f"ge_gather(x {list(x.shape)}, extent={extent})", atol=1e-5,
                           mistakes=mistakes)


@register_exercise("03.ge_gather", title="Gather-Excite's parameter-free gather at an extent", points=3,
                   solution=ge_gather)
def _check_ge_gather(learner):
    gen = seeded_generator(3)
    for extent, shape in [(0, (2, 3, 6, 5)), (2, (2, 3, 8, 8)), (2, (1, 2, 7, 5)), (4, (2, 3, 9, 12)),
                          (4, (1, 2, 8, 8)), (8, (2, 2, 16, 11))]:
        x = torch.randn(shape, generator=gen) * 2 + 0.5
        yield run_case(f"extent={extent}, x {list(shape)}", _case_gather, learner, x, extent)
    yield side_property(run_case("gradient flows back to x", _gradient_case, learner, torch.randn(2, 3, 8, 6, generator=gen),
                   ge_gather, "the gradient of the gather w.r.t. x", 2))


# --------------------------------------------------------------------------------------------------
# questions (predict first; counted apart from the exercises)
# --------------------------------------------------------------------------------------------------
register_question(
    "03.predict_mean_blind", title="Predict: can the per-channel means of the input find the marked channel?",
    when="predict",
    choices={"a": "no: about chance (1 in 4)", "b": "partly: between 40 % and 80 %", "c": "yes: above 90 %"},
    answer="a",
    explanation=("Every channel of second_order_cue_digits is 0.5 + contrast·(digit − mean(digit)) + a zero-mean "
                 "texture: its spatial mean is 0.5 by construction, up to the uint8 rounding, so four means say "
                 "nothing about which channel is marked (a logistic regression on them stays at chance in "
                 "tests/test_data_second_order.py). The standard deviations find it almost always: the marked "
                 "texture is twice as strong."))

register_question(
    "03.predict_relu_mean", title="Predict: after a convolution and a ReLU, can a mean see a texture's strength?",
    when="predict",
    choices={"a": "no: the input means are equal, so every later mean is equal too",
             "b": "yes: the mean of ReLU(z) for a zero-mean z grows with z's standard deviation",
             "c": "only with a max squeeze, never with a mean"},
    answer="b",
    explanation=("For a zero-mean z with standard deviation σ, ReLU(z) keeps the positive half: its mean is about "
                 "0.4·σ for a Gaussian z. So a convolution that responds to the texture (e.g. a high-pass filter) "
                 "followed by a ReLU turns the second-order cue into a first-order one, and SE's average pooling after "
                 "it can read the cue. 'The mean cannot see it' is a statement about the input channels; inside a "
                 "network it becomes 'the mean sees it only after the convolutions have learned to convert it'."))

register_question(
    "03.predict_covariance_cost", title="Predict: doubling d — how much more does GSoP's covariance cost?",
    when="predict",
    choices={"a": "2×", "b": "4×", "c": "8×"},
    answer="b",
    explanation=("Σ = x̃ x̃ᵀ / M multiplies a [d, M] matrix by an [M, d] one: d²·M multiply-adds and d² values. Doubling d "
                 "quadruples both; this is why GSoP first reduces C channels to d (the official code: d = 128 on "
                 "ResNet-50's 256–2048 channels)."))
