"""The standing fairness suite (issue 17): every registered exercise, present and future, is fair.

For each exercise ``FAIRNESS`` lists

* correct answers written in **different legitimate styles** (``nn.Linear`` vs 1×1 conv vs raw matrices,
  einsum vs matmul, a module instance vs a function, whole-number floats for counts, …): each must earn
  full marks, also when ``check`` is called with keywords;
* **common mistakes**, each with a piece of the hint that names it: each must earn less than full marks,
  one of its failing cases must carry that hint, and no hint may name another listed mistake of the
  same exercise (unless the entry allows it in ``also``) — a hint never names a mistake the learner did
  not make.

A newly registered exercise without an entry here fails ``test_every_exercise_has_a_fairness_entry``:
add at least two correct alternatives and three named mistakes when you write it.

Two rules hold every exercise to its cases (issue 26):

* side properties (input unchanged, gradients flow, shape, range, parameters) pay nothing for wrong values:
  an answer returning zeros of the reference's shape earns 0 on every tensor exercise;
* no case is blind to a listed mistake: each mistake fails every value case, except those listed in
  ``BLIND_CASES`` for a reason of the exercise itself (``k = 1``, one frame, ``K`` dividing ``H``) or in
  ``VALUES_RIGHT`` (its values are right; a side case names it), and every value case catches some mistake.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attncourse.exercises import EXERCISES, check, grade

MIN_CORRECT, MIN_MISTAKES = 2, 3


@dataclass
class Mistake:
    answer: Any
    hint: str  # a piece of the hint that names this mistake
    also: tuple[str, ...] = ()  # other listed mistakes' hints this answer may legitimately also show


@dataclass
class Fair:
    correct: dict[str, Any]
    mistakes: dict[str, Mistake] = field(default_factory=dict)


# ==================================================================================================
# 00 — foundations
# ==================================================================================================
def _odd(t):
    t = int(t)
    return t if t % 2 else t + 1


class _Halved(nn.Module):  # a module instance is a callable too
    def forward(self, x):
        return x.sum((2, 3), keepdim=True) / (x.shape[2] * x.shape[3])


FAIRNESS: dict[str, Fair] = {
    "00.channel_stat": Fair(
        correct={
            "mean over (2, 3)": lambda x: x.mean(dim=(2, 3), keepdim=True),
            "F.adaptive_avg_pool2d": lambda x: F.adaptive_avg_pool2d(x, 1),
            "nn.AdaptiveAvgPool2d instance": nn.AdaptiveAvgPool2d(1),
            "sum / (H·W) in a module": _Halved(),
            "mean of means": lambda x: x.mean(-1, keepdim=True).mean(-2, keepdim=True),
            "flatten then index": lambda x: x.flatten(2).mean(-1)[..., None, None],
        },
        mistakes={
            "over channels": Mistake(lambda x: x.mean(dim=1, keepdim=True), "taken over the channels"),
            "sum": Mistake(lambda x: x.sum(dim=(2, 3), keepdim=True), "sum over space"),
            "max": Mistake(lambda x: x.amax(dim=(2, 3), keepdim=True), "maximum over space"),
            "no keepdim": Mistake(lambda x: x.mean(dim=(2, 3)), "keepdim=True"),
            "only H": Mistake(lambda x: x.mean(dim=2, keepdim=True), "over H only"),
            "detached": Mistake(lambda x: x.detach().mean(dim=(2, 3), keepdim=True), "autograd"),
        }),
    "00.reweight": Fair(
        correct={
            "torch.sigmoid": lambda x, f: x * torch.sigmoid(f(x)),
            "Tensor.sigmoid, weights first": lambda x, f: f(x).sigmoid() * x,
            "1 / (1 + exp(-s))": lambda x, f: x / (1 + torch.exp(-f(x))),
            "nn.Sigmoid and expand_as": lambda x, f: x * nn.Sigmoid()(f(x)).expand_as(x),
            "out-of-place mul on a clone": lambda x, f: x.clone().mul_(torch.sigmoid(f(x))),
        },
        mistakes={
            "no sigmoid": Mistake(lambda x, f: x * f(x), "apply torch.sigmoid"),
            "softmax over all": Mistake(lambda x, f: x * torch.softmax(f(x).flatten(1), 1).view_as(f(x)),
                                        "softmax is not the gate"),
            "softmax over channels": Mistake(lambda x, f: x * torch.softmax(f(x), dim=1), "softmax is not the gate",
                                             also=("you returned x unchanged",)),  # a one-channel statistic: both
            "added": Mistake(lambda x, f: x + torch.sigmoid(f(x)), "you added the weights"),
            "BAM residual": Mistake(lambda x, f: x * (1 + torch.sigmoid(f(x))), "BAM"),
            "returns weights": Mistake(lambda x, f: torch.sigmoid(f(x)).expand_as(x), "you returned the weights"),
            "returns x": Mistake(lambda x, f: (f(x), x)[1], "you returned x unchanged",
                                 also=("softmax is not the gate",)),
            "in place": Mistake(lambda x, f: x.mul_(torch.sigmoid(f(x))), "in place"),
        }),
    "00.conv_params": Fair(
        correct={
            "int formula": lambda ci, co, k, bias=True: co * ci * k * k + (co if bias else 0),
            "whole float": lambda ci, co, k, bias=True: float(co * ci * k * k + (co if bias else 0)),
            "k ** 2.0 and bias * co": lambda ci, co, k, bias=True: co * ci * k ** 2.0 + bias * co,
            "math.pow": lambda ci, co, k, bias=True: co * ci * math.pow(k, 2) + (co if bias else 0),
            "numpy int": lambda ci, co, k, bias=True: np.int64(co) * ci * k * k + (co if bias else 0),
        },
        mistakes={
            "no bias": Mistake(lambda ci, co, k, bias=True: co * ci * k * k, "one parameter per output channel"),
            "bias per input": Mistake(lambda ci, co, k, bias=True: co * ci * k * k + (ci if bias else 0), "OUTPUT channel"),
            "ignores bias=False": Mistake(lambda ci, co, k, bias=True: co * ci * k * k + co, "bias=False means no bias"),
            "k not k²": Mistake(lambda ci, co, k, bias=True: co * ci * k + (co if bias else 0), "k·k weights"),
            "no c_in": Mistake(lambda ci, co, k, bias=True: co * k * k + (co if bias else 0), "multiply by c_in"),
        }),
    "00.conv_flops": Fair(
        correct={
            "int formula": lambda ci, co, k, h, w: 2 * ci * co * k * k * h * w,
            "2.0 * …": lambda ci, co, k, h, w: 2.0 * ci * co * k * k * h * w,
            "math.pow": lambda ci, co, k, h, w: 2 * ci * co * math.pow(k, 2) * h * w,
            "output size (h + 2p − k) / s + 1": lambda ci, co, k, h, w:
                2 * ci * co * k * k * ((h + 2 * (k // 2) - k) / 1 + 1) * ((w + 2 * (k // 2) - k) / 1 + 1),
            "MACs times two": lambda ci, co, k, h, w: (lambda macs: macs * 2)(ci * k * k * co * h * w),
        },
        mistakes={
            "MACs": Mistake(lambda ci, co, k, h, w: ci * co * k * k * h * w, "2 per MAC"),
            "k not k²": Mistake(lambda ci, co, k, h, w: 2 * ci * co * k * h * w, "k² taps"),
            "no h·w": Mistake(lambda ci, co, k, h, w: 2 * ci * co * k * k, "h·w output positions"),
            "no c_in": Mistake(lambda ci, co, k, h, w: 2 * co * k * k * h * w, "multiply by c_in"),
            "no c_out": Mistake(lambda ci, co, k, h, w: 2 * ci * k * k * h * w, "multiply by c_out"),
            "bias counted": Mistake(lambda ci, co, k, h, w: 2 * ci * co * k * k * h * w + co * h * w, "bias was counted"),
            "valid padding": Mistake(lambda ci, co, k, h, w: 2 * ci * co * k * k * (h - k + 1) * (w - k + 1), "map shrank"),
        }),
}


# ==================================================================================================
# 01 — Inception
# ==================================================================================================
class _ReduceExpandSeq(nn.Module):
    """nn.Sequential with in-place ReLUs and padding='same'."""

    def __init__(self, ci, cr, co, k):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(ci, cr, 1, bias=False), nn.BatchNorm2d(cr), nn.ReLU(inplace=True),
                                  nn.Conv2d(cr, co, k, padding="same", bias=False), nn.BatchNorm2d(co),
                                  nn.ReLU(inplace=True))

    def forward(self, x):
        return self.body(x)


class _ReduceExpandPackage(nn.Module):
    """Built from the package's ConvBNReLU (another layout, BN eps = 0.001)."""

    def __init__(self, ci, cr, co, k):
        super().__init__()
        from attncourse.blocks.inception import ConvBNReLU

        self.a, self.b = ConvBNReLU(ci, cr, 1), ConvBNReLU(cr, co, k)

    def forward(self, x):
        return self.b(self.a(x))


def _re_layers(*layers):
    class _M(nn.Module):
        def __init__(self, ci, cr, co, k):
            super().__init__()
            self.body = nn.Sequential(*layers_for(ci, cr, co, k))

        def forward(self, x):
            return self.body(x)

    layers_for = layers[0]
    return _M


_re_with_bias = _re_layers(lambda ci, cr, co, k: [nn.Conv2d(ci, cr, 1), nn.BatchNorm2d(cr), nn.ReLU(),
                                                  nn.Conv2d(cr, co, k, padding=k // 2), nn.BatchNorm2d(co), nn.ReLU()])
_re_no_pad = _re_layers(lambda ci, cr, co, k: [nn.Conv2d(ci, cr, 1, bias=False), nn.BatchNorm2d(cr), nn.ReLU(),
                                               nn.Conv2d(cr, co, k, bias=False), nn.BatchNorm2d(co), nn.ReLU()])
_re_no_mid_relu = _re_layers(lambda ci, cr, co, k: [nn.Conv2d(ci, cr, 1, bias=False), nn.BatchNorm2d(cr),
                                                    nn.Conv2d(cr, co, k, padding=k // 2, bias=False), nn.BatchNorm2d(co),
                                                    nn.ReLU()])
_re_relu_bn = _re_layers(lambda ci, cr, co, k: [nn.Conv2d(ci, cr, 1, bias=False), nn.ReLU(), nn.BatchNorm2d(cr),
                                                nn.Conv2d(cr, co, k, padding=k // 2, bias=False), nn.ReLU(),
                                                nn.BatchNorm2d(co)])
_re_naive = _re_layers(lambda ci, cr, co, k: [nn.Conv2d(ci, co, k, padding=k // 2, bias=False), nn.BatchNorm2d(co),
                                              nn.ReLU()])
_re_no_out_relu = _re_layers(lambda ci, cr, co, k: [nn.Conv2d(ci, cr, 1, bias=False), nn.BatchNorm2d(cr), nn.ReLU(),
                                                    nn.Conv2d(cr, co, k, padding=k // 2, bias=False), nn.BatchNorm2d(co)])

_BRANCH = lambda ci, cr, co, k, h, w: 2 * h * w * (ci * cr + cr * co * k * k)  # noqa: E731
_NAIVE = lambda ci, cr, co, k: ci * co * k * k  # noqa: E731
_REDUCED = lambda ci, cr, co, k: ci * cr + cr * co * k * k  # noqa: E731

FAIRNESS.update({
    "01.branch_flops": Fair(
        correct={
            "int formula": _BRANCH,
            "whole float": lambda ci, cr, co, k, h, w: float(_BRANCH(ci, cr, co, k, h, w)),
            "sum of two conv costs with math.pow": lambda ci, cr, co, k, h, w:
                2.0 * h * w * ci * cr + 2 * h * w * cr * co * math.pow(k, 2),
            "per-conv helper": lambda ci, cr, co, k, h, w:
                sum(2 * a * b * kk * kk * h * w for a, b, kk in [(ci, cr, 1), (cr, co, k)]),
        },
        mistakes={
            "MACs": Mistake(lambda ci, cr, co, k, h, w: _BRANCH(ci, cr, co, k, h, w) // 2, "MACs"),
            "only k×k": Mistake(lambda ci, cr, co, k, h, w: 2 * h * w * cr * co * k * k, "only the k×k conv"),
            "naive": Mistake(lambda ci, cr, co, k, h, w: 2 * h * w * ci * co * k * k, "naive branch"),
            "C_in in the k×k term": Mistake(lambda ci, cr, co, k, h, w: 2 * h * w * (ci * cr + ci * co * k * k),
                                            "reads the c_reduce channels"),
            "k not k²": Mistake(lambda ci, cr, co, k, h, w: 2 * h * w * (ci * cr + cr * co * k), "k² taps"),
            "k² on the 1×1": Mistake(lambda ci, cr, co, k, h, w: 2 * h * w * (ci * cr * k * k + cr * co * k * k),
                                     "1×1 kernel"),
        }),
    "01.flops_saving": Fair(
        correct={
            "ratio": lambda ci, cr, co, k: _NAIVE(ci, cr, co, k) / _REDUCED(ci, cr, co, k),
            "FLOPs on a map (h·w cancels)": lambda ci, cr, co, k:
                (2 * 7 * 7 * ci * co * k * k) / (2 * 7 * 7 * ci * cr + 2 * 7 * 7 * cr * co * k ** 2),
            "numpy float": lambda ci, cr, co, k: np.float64(_NAIVE(ci, cr, co, k)) / _REDUCED(ci, cr, co, k),
        },
        mistakes={
            "inverted": Mistake(lambda ci, cr, co, k: _REDUCED(ci, cr, co, k) / _NAIVE(ci, cr, co, k), "inverted"),
            "floor division": Mistake(lambda ci, cr, co, k: _NAIVE(ci, cr, co, k) // _REDUCED(ci, cr, co, k), "floored"),
            "rounded": Mistake(lambda ci, cr, co, k: round(_NAIVE(ci, cr, co, k) / _REDUCED(ci, cr, co, k)), "rounded"),
            "no 1×1 cost": Mistake(lambda ci, cr, co, k: _NAIVE(ci, cr, co, k) / (cr * co * k * k), "pays for its 1×1"),
            "C_in in the k×k term": Mistake(lambda ci, cr, co, k: _NAIVE(ci, cr, co, k) / (ci * cr + ci * co * k * k),
                                            "reads the c_reduce channels"),
            "k not k²": Mistake(lambda ci, cr, co, k: ci * co * k / (ci * cr + cr * co * k), "k² taps"),
        }),
    "01.reduce_expand": Fair(
        correct={
            "reference layout": __import__("attncourse.exercises.m01_inception", fromlist=["x"]).ReduceExpand,
            "nn.Sequential, in-place ReLU, padding='same'": _ReduceExpandSeq,
            "package ConvBNReLU": _ReduceExpandPackage,
        },
        mistakes={
            "conv bias": Mistake(_re_with_bias, "needs no bias"),
            "no padding": Mistake(_re_no_pad, "padding=k // 2"),
            "no mid ReLU": Mistake(_re_no_mid_relu, "no ReLU between the two convs"),
            "no final ReLU": Mistake(_re_no_out_relu, "must end with a ReLU"),
            "ReLU before BN": Mistake(_re_relu_bn, "conv → BN → ReLU"),
            "naive": Mistake(_re_naive, "naive branch", also=("1×1",)),
        }),
})


# ==================================================================================================
# 02 — SENet
# ==================================================================================================
from attncourse.exercises import m02_senet as _m02  # noqa: E402


def _squeeze_dict(x, op="avg"):
    return {"avg": lambda: F.adaptive_avg_pool2d(x, 1), "max": lambda: F.adaptive_max_pool2d(x, 1),
            "std": lambda: x.var(dim=(2, 3), correction=0, keepdim=True).sqrt()}[op]()


def _squeeze_flat(x, op="avg"):
    f = x.flatten(2)
    if op == "avg":
        out = f.sum(-1) / f.shape[-1]
    elif op == "max":
        out = f.max(dim=-1).values
    else:
        out = torch.sqrt(((f - f.mean(-1, keepdim=True)) ** 2).mean(-1))
    return out[..., None, None]


def _squeeze_over(dims):
    def f(x, op="avg"):
        return {"avg": x.mean(dims, keepdim=True), "max": x.amax(dims, keepdim=True),
                "std": x.std(dims, unbiased=False, keepdim=True)}[op]
    return f


class _ExLinear(nn.Module):
    def __init__(self, c, r=16):
        super().__init__()
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(c, c // r), nn.ReLU(), nn.Linear(c // r, c), nn.Sigmoid())

    def forward(self, z):
        return self.mlp(z).view_as(z)


class _ExRaw(nn.Module):
    """Raw weight matrices used as z @ W (the layout a shape-based reader confuses)."""

    def __init__(self, c, r=16):
        super().__init__()
        d = c // r
        self.w1, self.b1 = nn.Parameter(torch.randn(c, d) / c ** 0.5), nn.Parameter(torch.zeros(d))
        self.w2, self.b2 = nn.Parameter(torch.randn(d, c) / d ** 0.5), nn.Parameter(torch.zeros(c))

    def forward(self, z):
        h = torch.relu(z.flatten(1) @ self.w1 + self.b1)
        return torch.sigmoid(h @ self.w2 + self.b2)[:, :, None, None]


class _ExConv1d(nn.Module):
    def __init__(self, c, r=16):
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(c, c // r, 1), nn.ReLU(), nn.Conv1d(c // r, c, 1), nn.Sigmoid())

    def forward(self, z):
        return self.net(z.flatten(2)).unsqueeze(-1)


class _ExEinsum(nn.Module):
    """Weights stored [out, in] and applied with einsum, functional activations."""

    def __init__(self, c, r=16):
        super().__init__()
        d = c // r
        self.w1, self.b1 = nn.Parameter(torch.randn(d, c) * 0.2), nn.Parameter(torch.randn(d) * 0.1)
        self.w2, self.b2 = nn.Parameter(torch.randn(c, d) * 0.2), nn.Parameter(torch.randn(c) * 0.1)

    def forward(self, z):
        h = F.relu(torch.einsum("dc,nc->nd", self.w1, z.flatten(1)) + self.b1)
        return torch.einsum("cd,nd->nc", self.w2, h).add(self.b2).sigmoid().reshape(z.shape)


def _ex_variant(forward):
    class _V(_m02.Excitation):
        def forward(self, z):
            return forward(self, z)
    return _V


class _ExWrongReduction(nn.Module):
    def __init__(self, c, r=16):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, c * r, 1), nn.Conv2d(c * r, c, 1)

    def forward(self, z):
        return torch.sigmoid(self.fc2(torch.relu(self.fc1(z))))


class _ExNoBias(nn.Module):
    def __init__(self, c, r=16):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(c, c // r, bias=False), nn.Linear(c // r, c, bias=False)

    def forward(self, z):
        return torch.sigmoid(self.fc2(torch.relu(self.fc1(z.flatten(1))))).reshape(z.shape)


def _se_inplace(x, branch, se, shortcut):
    out = se(branch(x))
    out += shortcut(x)
    return out.relu()


FAIRNESS.update({
    "02.squeeze": Fair(
        correct={
            "if/elif with Tensor methods": _m02.squeeze,
            "adaptive pools and var().sqrt()": _squeeze_dict,
            "flattened by hand": _squeeze_flat,
        },
        mistakes={
            "over channels": Mistake(_squeeze_over(1), "pooled over the channels"),
            "over H only": Mistake(_squeeze_over(2), "pooled over H only"),
            "no keepdim": Mistake(lambda x, op="avg": _m02.squeeze(x, op).flatten(1), "keepdim"),
            "sum": Mistake(lambda x, op="avg": x.sum((2, 3), keepdim=True) if op == "avg" else _m02.squeeze(x, op),
                           "sum over space", also=("a sum, not a mean",)),
            "unbiased std": Mistake(lambda x, op="avg": x.std((2, 3), keepdim=True) if op == "std" else
                                    _m02.squeeze(x, op), "unbiased"),
            "variance": Mistake(lambda x, op="avg": x.var((2, 3), unbiased=False, keepdim=True) if op == "std" else
                                _m02.squeeze(x, op), "variance"),
        }),
    "02.excitation": Fair(
        correct={
            "1×1 convs": _m02.Excitation,
            "nn.Linear in nn.Sequential": _ExLinear,
            "raw matrices, z @ W": _ExRaw,
            "kernel-1 Conv1d": _ExConv1d,
            "einsum, [out, in] parameters": _ExEinsum,
        },
        mistakes={
            "ReLU before the sigmoid": Mistake(_ex_variant(lambda s, z: torch.sigmoid(torch.relu(s.fc2(torch.relu(s.fc1(z)))))),
                                               "can never go below 0.5"),
            "ReLU moved to the end": Mistake(_ex_variant(lambda s, z: torch.sigmoid(torch.relu(s.fc2(s.fc1(z))))),
                                             "can never go below 0.5"),
            "sigmoid as hidden activation": Mistake(_ex_variant(lambda s, z: torch.sigmoid(s.fc2(torch.sigmoid(s.fc1(z))))),
                                                    "must be a ReLU, not a sigmoid"),
            "z·σ(…)": Mistake(_ex_variant(lambda s, z: z * torch.sigmoid(s.fc2(torch.relu(s.fc1(z))))),
                              "you returned z rescaled"),
            "no final sigmoid": Mistake(_ex_variant(lambda s, z: s.fc2(torch.relu(s.fc1(z)))), "final sigmoid is missing"),
            "no ReLU": Mistake(_ex_variant(lambda s, z: torch.sigmoid(s.fc2(s.fc1(z)))), "ReLU between the two FC"),
            "softmax": Mistake(_ex_variant(lambda s, z: torch.softmax(s.fc2(torch.relu(s.fc1(z))), dim=1)), "softmax"),
            "C·r hidden units": Mistake(_ExWrongReduction, "C·r", also=("C // r",)),
            "no biases": Mistake(_ExNoBias, "need biases"),
            "detached input": Mistake(_ex_variant(lambda s, z: _m02.Excitation.forward(s, z.detach())),
                                      "no gradient reached the input z"),
        }),
    "02.se_resnet_block": Fair(
        correct={
            "reference": _m02.se_resnet_forward,
            "F.relu, shortcut first": lambda x, branch, se, shortcut: F.relu(shortcut(x) + se(branch(x))),
            "step by step with +=": _se_inplace,
        },
        mistakes={
            "SE after the add": Mistake(lambda x, b, se, sc: torch.relu(se(b(x) + sc(x))), "SE was applied after the add"),
            "no shortcut": Mistake(lambda x, b, se, sc: torch.relu(se(b(x))), "shortcut (residual connection) is missing"),
            "no final ReLU": Mistake(lambda x, b, se, sc: se(b(x)) + sc(x), "final ReLU is missing"),
            "no SE": Mistake(lambda x, b, se, sc: torch.relu(b(x) + sc(x)), "SE was not applied"),
            "SE on the shortcut": Mistake(lambda x, b, se, sc: torch.relu(b(x) + se(sc(x))), "applied to the shortcut"),
            "SE after the ReLU": Mistake(lambda x, b, se, sc: se(torch.relu(b(x) + sc(x))), "after the final ReLU"),
        }),
    "02.eca_kernel_size": Fair(
        correct={
            "int() then parity": _m02.eca_kernel_size,
            "math.floor and t + 1 - t % 2": lambda c, gamma=2, beta=1:
                (lambda t: t + 1 - t % 2)(math.floor(abs(math.log2(c) / gamma + beta / gamma))),
            "float // (a whole float)": lambda c, gamma=2, beta=1:
                (lambda t: t if t % 2 else t + 1)((math.log2(c) + beta) // gamma),
            "bitwise or": lambda c, gamma=2, beta=1: int(abs((math.log(c, 2) + beta) / gamma)) | 1,
        },
        mistakes={
            "not odd": Mistake(lambda c, gamma=2, beta=1: int((math.log2(c) + beta) / gamma), "must be odd"),
            "β not divided by γ": Mistake(lambda c, gamma=2, beta=1: _odd(math.log2(c) / gamma + beta),
                                          "β is divided by γ"),
            "rounded": Mistake(lambda c, gamma=2, beta=1: _odd(round((math.log2(c) + beta) / gamma)), "rounding"),
            "natural log": Mistake(lambda c, gamma=2, beta=1: _odd((math.log(c) + beta) / gamma), "natural log"),
            "hard-coded γ, β": Mistake(lambda c, gamma=2, beta=1: _m02.eca_kernel_size(c), "hard-code"),
            "inverted parity": Mistake(lambda c, gamma=2, beta=1:
                                       (lambda t: t + 1 if t % 2 else t)(int((math.log2(c) + beta) / gamma)),
                                       "parity is inverted"),
        }),
})


# ==================================================================================================
# 03 — beyond the average (SRM, GSoP, Gather-Excite)
# ==================================================================================================
from attncourse.exercises import m03_beyond_average as _m03  # noqa: E402


def _style_var_mean(x, eps=1e-5):
    var, mean = torch.var_mean(x, dim=(2, 3))  # correction=1 by default: the unbiased variance
    return torch.stack((mean, torch.sqrt(var + eps)), dim=2)


def _style_by_hand(x, eps=1e-5):
    n, c, h, w = x.shape
    flat = x.reshape(n, c, h * w)
    mean = flat.sum(-1) / (h * w)
    var = ((flat - mean[..., None]) ** 2).sum(-1) / (h * w - 1)
    return torch.cat([mean.unsqueeze(-1), (var + eps).sqrt().unsqueeze(-1)], dim=-1)


def _cov_einsum(x):
    f = x.flatten(2)
    f = f - f.mean(-1, keepdim=True)
    return torch.einsum("ndm,nem->nde", f, f) / f.shape[-1]


def _cov_torch_cov(x):
    return torch.stack([torch.cov(sample.flatten(1), correction=0) for sample in x])


def _gather_by_counts(x, extent):
    """The mean over the real pixels of each window: a zero-padded sum divided by a pooled count of ones."""
    if extent == 0:
        return x.sum((2, 3), keepdim=True) / (x.shape[2] * x.shape[3])
    k, s, p = 2 * extent - 1, extent, extent - 1
    total = F.avg_pool2d(x, k, s, p, count_include_pad=True)
    count = F.avg_pool2d(torch.ones_like(x[:, :1]), k, s, p, count_include_pad=True)
    return total / count


def _gather_global_adaptive(x, extent):
    if extent == 0:
        return F.adaptive_avg_pool2d(x, 1)
    return F.avg_pool2d(x, kernel_size=2 * extent - 1, stride=extent, padding=extent - 1, count_include_pad=False)


FAIRNESS.update({
    "03.style_pool": Fair(
        correct={"flatten, var(unbiased)": _m03.style_pool, "torch.var_mean": _style_var_mean,
                 "sums by hand": _style_by_hand},
        mistakes={
            "biased std": Mistake(lambda x, eps=1e-5: torch.stack(
                [x.mean((2, 3)), (x.var((2, 3), unbiased=False) + eps).sqrt()], -1), "biased"),
            "eps outside the root": Mistake(lambda x, eps=1e-5: torch.stack(
                [x.mean((2, 3)), x.std((2, 3)) + eps], -1), "inside the square root"),
            "no eps": Mistake(lambda x, eps=1e-5: torch.stack([x.mean((2, 3)), x.std((2, 3))], -1), "eps is missing"),
            "swapped": Mistake(lambda x, eps=1e-5: _m03.style_pool(x, eps).flip(-1), "swapped"),
            "no gradient": Mistake(lambda x, eps=1e-5: _m03.style_pool(x, eps).detach(), "autograd graph"),
        }),
    "03.covariance_pool": Fair(
        correct={"matmul": _m03.covariance_pool, "einsum": _cov_einsum, "torch.cov per sample": _cov_torch_cov},
        mistakes={
            "uncentred": Mistake(lambda x: (lambda f: f @ f.transpose(1, 2) / f.shape[2])(x.flatten(2)), "not centred"),
            "÷ (M − 1)": Mistake(lambda x: torch.stack([torch.cov(s.flatten(1)) for s in x]), "M − 1"),
            "no divisor": Mistake(lambda x: _cov_einsum(x) * x.shape[2] * x.shape[3], "sum over positions"),
            "no gradient": Mistake(lambda x: _m03.covariance_pool(x).detach(), "autograd graph"),
        }),
    "03.ge_gather": Fair(
        correct={"avg_pool2d": _m03.ge_gather, "pooled counts": _gather_by_counts,
                 "adaptive pool for the global extent": _gather_global_adaptive},
        mistakes={
            "padding counted": Mistake(lambda x, e: F.avg_pool2d(x, 2 * e - 1, e, e - 1) if e else
                                       x.mean((2, 3), keepdim=True), "count_include_pad=False"),
            "e×e windows": Mistake(lambda x, e: F.avg_pool2d(x, e, e, ceil_mode=True) if e else
                                   x.mean((2, 3), keepdim=True), "e×e"),
            "max pool": Mistake(lambda x, e: F.max_pool2d(x, 2 * e - 1, e, e - 1) if e else
                                x.amax((2, 3), keepdim=True), "max"),
            "no gradient": Mistake(lambda x, e: _m03.ge_gather(x, e).detach(), "autograd graph"),
        }),
})


# ==================================================================================================
# 04 — non-local
# ==================================================================================================
from attncourse.exercises import m04_nonlocal as _m04  # noqa: E402


def _scores(t, p):
    return t.transpose(1, 2) @ p


class _OutLinear(nn.Module):
    """W as an nn.Linear on y [B, N, d] (the same map as the 1×1 conv), reshaped afterwards."""

    def __init__(self, d, c):
        super().__init__()
        self.W, self.bn = nn.Linear(d, c), nn.BatchNorm2d(c)
        nn.init.zeros_(self.bn.weight)

    def forward(self, x, y):
        b, c, h, w = x.shape
        return x + self.bn(self.W(y).transpose(1, 2).reshape(b, c, h, w))


class _OutZeroW(nn.Module):
    """The official code's choice: W zero-initialised, BN at its default — also the identity at init."""

    def __init__(self, d, c):
        super().__init__()
        self.W, self.bn = nn.Conv2d(d, c, 1), nn.BatchNorm2d(c)
        nn.init.zeros_(self.W.weight)
        nn.init.zeros_(self.W.bias)

    def forward(self, x, y):
        b, _, h, w = x.shape
        return x + self.bn(self.W(y.permute(0, 2, 1).reshape(b, -1, h, w)))


def _out_variant(forward, *, init=None):
    class _V(_m04.NonLocalOutput):
        def __init__(self, d, c):
            super().__init__(d, c)
            if init is not None:
                init(self)

        def forward(self, x, y):
            return forward(self, x, y)
    return _V


def _zero_w(m):
    nn.init.zeros_(m.W.weight)
    nn.init.zeros_(m.W.bias)


def _ymap(y, x):
    b, _, h, w = x.shape
    return y.transpose(1, 2).reshape(b, -1, h, w)


def _gc_einsum(x, m):
    a = m.flatten(2).softmax(-1)  # [B, 1, N]
    return torch.einsum("bcn,bn->bc", x.flatten(2), a[:, 0])[..., None, None]


FAIRNESS.update({
    "04.affinity": Fair(
        correct={
            "bmm": _m04.embedded_gaussian_affinity,
            "einsum": lambda t, p: torch.einsum("bdn,bdm->bnm", t, p).softmax(-1),
            "permute and @, softmax(dim=2)": lambda t, p: torch.softmax(t.permute(0, 2, 1) @ p, dim=2),
            "exp / sum": lambda t, p: (lambda e: e / e.sum(-1, keepdim=True))(torch.exp(_scores(t, p))),
        },
        mistakes={
            "softmax over queries": Mistake(lambda t, p: _scores(t, p).softmax(dim=1), "wrong axis"),
            "no softmax": Mistake(lambda t, p: _scores(t, p), "softmax is missing"),
            "exp only": Mistake(lambda t, p: _scores(t, p).exp(), "without the normalisation"),
            "1/√d": Mistake(lambda t, p: (_scores(t, p) / t.shape[1] ** 0.5).softmax(-1), "no scale"),
            "channel×channel": Mistake(lambda t, p: (t @ p.transpose(1, 2)).softmax(-1), "channel×channel"),
            "reshape instead of transpose": Mistake(lambda t, p: (t.reshape(t.shape[0], t.shape[2], t.shape[1]) @ p)
                                                    .softmax(-1), "reshaped/viewed"),
        }),
    "04.nonlocal_output": Fair(
        correct={
            "1×1 conv, γ = β = 0": _m04.NonLocalOutput,
            "nn.Linear on y, then reshape": _OutLinear,
            "W = 0 instead of γ": _OutZeroW,
        },
        mistakes={
            "no zero-init": Mistake(_out_variant(_m04.NonLocalOutput.forward, init=lambda m: nn.init.ones_(m.bn.weight)),
                                    "initialise the BN's weight γ"),
            "missing residual": Mistake(_out_variant(lambda m, x, y: m.bn(m.W(_ymap(y, x)))), "residual is missing"),
            "reshape instead of transpose": Mistake(
                _out_variant(lambda m, x, y: x + m.bn(m.W(y.reshape(x.shape[0], -1, *x.shape[2:])))),
                "transpose it to [B, d, N] BEFORE reshaping"),
            "BN after the add": Mistake(_out_variant(lambda m, x, y: m.bn(x + m.W(_ymap(y, x)))), "BN was applied after"),
            "no BN": Mistake(_out_variant(lambda m, x, y: x + m.W(_ymap(y, x)), init=_zero_w), "BN is missing"),
            "W and γ both zero": Mistake(_out_variant(_m04.NonLocalOutput.forward, init=_zero_w), "neither W nor"),
            "W's weight and γ zero": Mistake(_out_variant(_m04.NonLocalOutput.forward,
                                                          init=lambda m: nn.init.zeros_(m.W.weight)), "neither W nor"),
        }),
    "04.dot_product_norm": Fair(
        correct={
            "bmm": _m04.dot_product_nonlocal,
            "θ(φᵀg)/M, re-associated": lambda t, p, g: t.transpose(1, 2) @ (p @ g.transpose(1, 2)) / p.shape[-1],
            "einsum": lambda t, p, g: torch.einsum("bdn,bdm,bvm->bnv", t, p, g) / p.shape[-1],
        },
        mistakes={
            "÷ N": Mistake(lambda t, p, g: (_scores(t, p) / t.shape[-1]) @ g.transpose(1, 2), "divided by N"),
            "no normalisation": Mistake(lambda t, p, g: _scores(t, p) @ g.transpose(1, 2), "normalisation is missing"),
            "÷ d": Mistake(lambda t, p, g: (_scores(t, p) / t.shape[1]) @ g.transpose(1, 2), "divided by d"),
            "softmax": Mistake(lambda t, p, g: _scores(t, p).softmax(-1) @ g.transpose(1, 2), "a softmax was used"),
            "θ reshaped": Mistake(lambda t, p, g: (t.reshape(t.shape[0], t.shape[2], t.shape[1]) @ p) / p.shape[-1]
                                  @ g.transpose(1, 2), "θ [B, d, N] was reshaped"),
            "g reshaped": Mistake(lambda t, p, g: _scores(t, p) / p.shape[-1]
                                  @ g.reshape(g.shape[0], g.shape[2], g.shape[1]), "g [B, dv, M] was reshaped"),
        }),
    "04.gc_context": Fair(
        correct={
            "bmm": _m04.gc_context,
            "broadcast and sum": lambda x, m: (x * m.flatten(2).softmax(-1).view_as(m)).sum((2, 3), keepdim=True),
            "einsum": _gc_einsum,
        },
        mistakes={
            "softmax over dim=1": Mistake(lambda x, m: (x * m.softmax(1)).sum((2, 3), keepdim=True), "dim=1"),
            "average pooling": Mistake(lambda x, m: x.mean((2, 3), keepdim=True), "global average pooling"),
            "no softmax": Mistake(lambda x, m: (x * m).sum((2, 3), keepdim=True), "softmax is missing"),
            "softmax per row": Mistake(lambda x, m: (x * m.softmax(-1)).sum((2, 3), keepdim=True), "each row only"),
            "not summed": Mistake(lambda x, m: x * m.flatten(2).softmax(-1).reshape(m.shape), "not summed"),
            "x reshaped": Mistake(lambda x, m: (m.flatten(2).softmax(-1) @ x.reshape(x.shape[0], -1, x.shape[1]))
                                  .reshape(x.shape[0], x.shape[1], 1, 1), "reshaped/viewed"),
        }),
})


# ==================================================================================================
# 05 — CBAM, BAM
# ==================================================================================================
from attncourse.exercises import m05_cbam as _m05  # noqa: E402


class _CamLinear(nn.Module):
    def __init__(self, c, r=16):
        super().__init__()
        self.shared = nn.Sequential(nn.Linear(c, c // r), nn.ReLU(), nn.Linear(c // r, c))

    def forward(self, x):
        return torch.sigmoid(self.shared(x.mean((2, 3))) + self.shared(x.flatten(2).max(dim=2).values))[:, :, None, None]


class _CamRaw(nn.Module):
    """Raw matrices used as z @ W: W1 is [C, C/r], W2 is [C/r, C] (a shape-based reader swaps them)."""

    def __init__(self, c, r=16):
        super().__init__()
        d = c // r
        self.w1, self.b1 = nn.Parameter(torch.randn(c, d) / c ** 0.5), nn.Parameter(torch.zeros(d))
        self.w2, self.b2 = nn.Parameter(torch.randn(d, c) / d ** 0.5), nn.Parameter(torch.zeros(c))

    def mlp(self, z):
        return torch.relu(z @ self.w1 + self.b1) @ self.w2 + self.b2

    def forward(self, x):
        return torch.sigmoid(self.mlp(x.mean((2, 3))) + self.mlp(x.amax((2, 3))))[:, :, None, None]


class _CamConv1d(nn.Module):
    """Both descriptors as the two positions of a kernel-1 Conv1d MLP."""

    def __init__(self, c, r=16):
        super().__init__()
        self.mlp = nn.Sequential(nn.Conv1d(c, c // r, 1), nn.ReLU(), nn.Conv1d(c // r, c, 1))

    def forward(self, x):
        z = torch.stack([x.mean((2, 3)), x.flatten(2).amax(-1)], dim=-1)  # [N, C, 2]
        return torch.sigmoid(self.mlp(z).sum(-1))[:, :, None, None]


class _CamPacked(nn.Module):
    """All MLP parameters in one vector: not readable as layers, judged by behaviour."""

    def __init__(self, c, r=16):
        super().__init__()
        self.c, self.d = c, c // r
        self.theta = nn.Parameter(torch.randn(2 * c * self.d + self.d + c) * 0.3)

    def forward(self, x):
        c, d, p = self.c, self.d, self.theta
        w1, b1 = p[:c * d].view(d, c), p[c * d:c * d + d]
        w2, b2 = p[c * d + d:2 * c * d + d].view(c, d), p[2 * c * d + d:]
        mlp = lambda z: F.linear(F.relu(F.linear(z, w1, b1)), w2, b2)  # noqa: E731
        return torch.sigmoid(mlp(x.mean((2, 3))) + mlp(x.amax((2, 3)))).view(x.shape[0], c, 1, 1)


def _cam_variant(forward):
    class _V(_m05.ChannelAttentionMap):
        def forward(self, x):
            return forward(self, x)
    return _V


_avg = lambda x: x.mean((2, 3), keepdim=True)  # noqa: E731
_mx = lambda x: x.amax((2, 3), keepdim=True)  # noqa: E731


class _CamSeparate(nn.Module):
    def __init__(self, c, r=16):
        super().__init__()
        self.a, self.m = _m05.ChannelAttentionMap(c, r), _m05.ChannelAttentionMap(c, r)

    def forward(self, x):
        return torch.sigmoid(self.a.mlp(_avg(x)) + self.m.mlp(_mx(x)))


class _CamRawSigmoidHidden(_CamRaw):
    def mlp(self, z):
        return torch.sigmoid(z @ self.w1 + self.b1) @ self.w2 + self.b2


def _block_branch(x, c1, b1, c2, b2):
    return b2(c2(torch.relu(b1(c1(x)))))


def _cbam_steps(x, conv1, bn1, conv2, bn2, cbam, shortcut):
    identity = shortcut(x)
    out = F.relu(bn1(conv1(x)))
    out = bn2(conv2(out))
    out = cbam(out)
    out = out + identity
    return F.relu(out)


FAIRNESS.update({
    "05.channel_mlp": Fair(
        correct={
            "1×1 convs": _m05.ChannelAttentionMap,
            "nn.Linear, shared nn.Sequential": _CamLinear,
            "raw matrices, z @ W": _CamRaw,
            "kernel-1 Conv1d over both descriptors": _CamConv1d,
            "one packed parameter vector": _CamPacked,
        },
        mistakes={
            "two MLPs": Mistake(_CamSeparate, "ONE MLP"),
            "mean only": Mistake(_cam_variant(lambda s, x: torch.sigmoid(s.mlp(_avg(x)))), "only the average-pooled"),
            "max only": Mistake(_cam_variant(lambda s, x: torch.sigmoid(s.mlp(_mx(x)))), "only the max-pooled"),
            "σ(MLP(avg + max))": Mistake(_cam_variant(lambda s, x: torch.sigmoid(s.mlp(_avg(x) + _mx(x)))),
                                         "added BEFORE the MLP"),
            "no sigmoid": Mistake(_cam_variant(lambda s, x: s.mlp(_avg(x)) + s.mlp(_mx(x))), "sigmoid is missing"),
            "sigmoid each": Mistake(_cam_variant(lambda s, x: torch.sigmoid(s.mlp(_avg(x))) + torch.sigmoid(s.mlp(_mx(x)))),
                                    "before adding"),
            "averaged": Mistake(_cam_variant(lambda s, x: torch.sigmoid((s.mlp(_avg(x)) + s.mlp(_mx(x))) / 2)), "averaged"),
            "sigmoid hidden (raw matrices)": Mistake(_CamRawSigmoidHidden, "must be a ReLU, not a sigmoid"),
            "returns x·Mc": Mistake(_cam_variant(lambda s, x: x * _m05.ChannelAttentionMap.forward(s, x)), "[N, C, 1, 1]"),
            "detached": Mistake(_cam_variant(lambda s, x: _m05.ChannelAttentionMap.forward(s, x.detach())),
                                "no gradient reached x"),
        }),
    "05.spatial_descriptor": Fair(
        correct={
            "[max, mean] with cat": _m05.spatial_descriptor,
            "[mean, max] (timm's order)": lambda x: torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1),
            "stack of max().values and mean": lambda x: torch.stack([x.max(dim=1).values, x.mean(dim=1)], dim=1),
        },
        mistakes={
            # with one channel, max = mean: that case names both
            "mean only": Mistake(lambda x: x.mean(1, keepdim=True), "only the mean", also=("only the max",)),
            "max only": Mistake(lambda x: x.amax(1, keepdim=True), "only the max", also=("only the mean",)),
            "added": Mistake(lambda x: x.amax(1, keepdim=True) + x.mean(1, keepdim=True), "were added"),
            "pooled over positions": Mistake(lambda x: torch.cat([x.amax((2, 3), keepdim=True),
                                                                  x.mean((2, 3), keepdim=True)], 1),
                                             "pooled over the positions"),
            "indices": Mistake(lambda x: torch.cat([torch.max(x, 1, keepdim=True)[1].float(), x.mean(1, keepdim=True)], 1),
                               "indices"),
            "tuple": Mistake(lambda x: (x.amax(1), x.mean(1)), "single tensor"),
        }),
    "05.cbam_block": Fair(
        correct={
            "reference": _m05.cbam_basic_block,
            "shortcut first, F.relu": _cbam_steps,
            "one expression": lambda x, c1, b1, c2, b2, cbam, sc: (cbam(_block_branch(x, c1, b1, c2, b2)) + sc(x)).relu(),
        },
        mistakes={
            "CBAM after the add": Mistake(lambda x, c1, b1, c2, b2, cbam, sc: torch.relu(cbam(_block_branch(x, c1, b1, c2, b2)
                                                                                           + sc(x))), "CBAM was applied after the add"),
            "no residual": Mistake(lambda x, c1, b1, c2, b2, cbam, sc: torch.relu(cbam(_block_branch(x, c1, b1, c2, b2))),
                                   "residual connection is missing"),
            "no final ReLU": Mistake(lambda x, c1, b1, c2, b2, cbam, sc: cbam(_block_branch(x, c1, b1, c2, b2)) + sc(x),
                                     "final ReLU"),
            "no inner ReLU": Mistake(lambda x, c1, b1, c2, b2, cbam, sc: torch.relu(cbam(b2(c2(b1(c1(x))))) + sc(x)),
                                     "between bn1 and conv2"),
            "no CBAM": Mistake(lambda x, c1, b1, c2, b2, cbam, sc: torch.relu(_block_branch(x, c1, b1, c2, b2) + sc(x)),
                               "CBAM was not applied"),
            "CBAM on the shortcut": Mistake(lambda x, c1, b1, c2, b2, cbam, sc:
                                            torch.relu(_block_branch(x, c1, b1, c2, b2) + cbam(sc(x))), "to the shortcut"),
        }),
    "05.bam_combine": Fair(
        correct={
            "x · (1 + σ(Mc · Ms))": _m05.bam_attention,
            "x + x · σ(…)": lambda x, mc, ms: x + x * torch.sigmoid(mc * ms),
            "torch.addcmul": lambda x, mc, ms: torch.addcmul(x, x, torch.sigmoid(ms * mc)),
        },
        mistakes={
            "no identity": Mistake(lambda x, mc, ms: x * torch.sigmoid(mc * ms), "identity term is missing"),
            "σ(Mc + Ms)": Mistake(lambda x, mc, ms: x * (1 + torch.sigmoid(mc + ms)), "paper's formula"),
            "σ each": Mistake(lambda x, mc, ms: x * (1 + torch.sigmoid(mc) * torch.sigmoid(ms)), "each gate separately"),
            "no sigmoid": Mistake(lambda x, mc, ms: x * (1 + mc * ms), "sigmoid is missing"),
            "added x": Mistake(lambda x, mc, ms: x + 1 + torch.sigmoid(mc * ms), "added instead of multiplied"),
        }),
})


# ==================================================================================================
# modules whose own exercise tests list the alternatives: CORRECT {key: {style: answer}} and
# MISTAKES (or MISTAKES_FOR_FAIRNESS) {key: [(answer, hint fragment, *hints it may also show), ...]}
# ==================================================================================================
def _from_module_tests(name: str) -> dict[str, Fair]:
    import importlib

    mod = importlib.import_module(name)
    mistakes = getattr(mod, "MISTAKES_FOR_FAIRNESS", None) or mod.MISTAKES
    def named(entries):  # keyed by the hint; two mutants with the same hint are told apart by their function
        out = {}
        for m in entries:
            out[m[1] if m[1] not in out else f"{m[1]} ({getattr(m[0], '__name__', len(out))})"] = \
                Mistake(m[0], m[1], tuple(m[2:]))
        return out

    return {key: Fair(dict(styles), named(mistakes.get(key, []))) for key, styles in mod.CORRECT.items()}


for _module_tests in ("test_exercises_sknet", "test_exercises_danet", "test_exercises_sta", "test_exercises_position_fusion"):
    FAIRNESS.update(_from_module_tests(_module_tests))


# ==================================================================================================
# the tests
# ==================================================================================================
def _course_keys() -> list[str]:
    """Exercises registered by the course modules (not the toy ones other tests register for a moment)."""
    return sorted(k for k, ex in EXERCISES.items() if getattr(ex.checker, "__module__", "").startswith("attncourse.exercises.m"))


def _missing_entries() -> list[str]:
    return [k for k in _course_keys() if k not in FAIRNESS]


def test_a_new_exercise_without_an_entry_is_caught(monkeypatch):
    from attncourse.exercises import core

    def checker(learner):
        yield from ()

    before = set(_missing_entries())
    checker.__module__ = "attncourse.exercises.m99_future"
    monkeypatch.setitem(core.EXERCISES, "99.future", core.Exercise("99.future", "a future exercise", 1.0, checker, None))
    assert set(_missing_entries()) - before == {"99.future"}


def test_every_exercise_has_a_fairness_entry():
    missing = _missing_entries()
    assert not missing, (f"exercises without a fairness entry: {missing} — add to FAIRNESS in {__file__} at least "
                         f"{MIN_CORRECT} correct answers in different styles and {MIN_MISTAKES} common mistakes with "
                         "the hint that names each")
    stale = [k for k in FAIRNESS if k not in EXERCISES]
    assert not stale, f"fairness entries for exercises that no longer exist: {stale}"
    for key, fair in FAIRNESS.items():
        assert len(fair.correct) >= MIN_CORRECT, f"{key}: {len(fair.correct)} correct alternatives"
        assert len(fair.mistakes) >= MIN_MISTAKES, f"{key}: {len(fair.mistakes)} named mistakes"


CORRECT = [(k, style) for k in sorted(FAIRNESS) for style in FAIRNESS[k].correct]
MISTAKES = [(k, name) for k in sorted(FAIRNESS) for name in FAIRNESS[k].mistakes]


@pytest.mark.parametrize("key, style", CORRECT, ids=[f"{k}: {s}" for k, s in CORRECT])
def test_a_correct_answer_in_any_legitimate_style_gets_full_marks(key, style):
    earned, total, results = grade(key, FAIRNESS[key].correct[style])
    assert earned == total, [f"{r.name}: {r.hint}" for r in results if not r.passed]


@pytest.mark.parametrize("key", sorted(FAIRNESS))
def test_check_called_with_keywords_gives_full_marks(key, capsys):
    answer = list(FAIRNESS[key].correct.values())[1]
    assert check(key=key, learner=answer) == EXERCISES[key].points
    assert f"Points: {EXERCISES[key].points:g} / {EXERCISES[key].points:g}" in capsys.readouterr().out


@pytest.mark.parametrize("key, name", MISTAKES, ids=[f"{k}: {n}" for k, n in MISTAKES])
def test_a_common_mistake_scores_less_with_the_hint_that_names_it(key, name):
    fair, mistake = FAIRNESS[key], FAIRNESS[key].mistakes[name]
    earned, total, results = grade(key, mistake.answer)
    assert earned < total, f"{key}: the mistake {name!r} got full marks"
    hints = [r.hint for r in results if not r.passed]
    assert any(mistake.hint in h for h in hints), f"{name!r}: no hint names it ({mistake.hint!r}): {hints}"
    # no hint names another listed mistake of this exercise (the learner did not make it)
    others = {m.hint for n, m in fair.mistakes.items() if n != name and m.hint not in mistake.hint
              and mistake.hint not in m.hint and m.hint not in mistake.also}
    wrongly = sorted(o for o in others if any(o in h for h in hints))
    assert not wrongly, f"{name!r}: hints also name {wrongly}: {hints}"


# ==================================================================================================
# side properties pay nothing for wrong values (issue 26)
# ==================================================================================================
# the exercises whose answer is a number, not a tensor (checked: the zeros answer below sees no tensor there)
NUMBER_EXERCISES = {"00.conv_params", "00.conv_flops", "01.branch_flops", "01.flops_saving", "02.eca_kernel_size"}
# Exercises graded on a contract, not on values: the capstone's learner-designed block (issue 28) earns its points
# for the block contract (shape, ValueError, batch of one, gradients) and its accuracy is never graded, so there is
# no reference value to be zero against, and each broken property fails its own case only
# (tests/test_exercises_position_fusion.py checks that every broken block loses the case of what it breaks).
CONTRACT_EXERCISES = {"09.design_block"}


def _zeros_answer(solution, keep_graph: bool, seen: list):
    """An answer returning zeros of the reference's output shape: ``torch.zeros_like`` (outside the graph) or
    ``reference × 0`` (inside it: gradients flow, and are zero). For a module class, a subclass of the reference
    (its parameters, its structure) whose forward returns those zeros."""
    def zeros(out):
        if not isinstance(out, torch.Tensor):
            return out
        seen.append(True)
        return out * 0 if keep_graph else torch.zeros_like(out).detach()

    if isinstance(solution, type) and issubclass(solution, nn.Module):
        class Zeros(solution):
            def forward(self, *args, **kwargs):
                return zeros(super().forward(*args, **kwargs))
        return Zeros
    return lambda *args, **kwargs: zeros(solution(*args, **kwargs))


@pytest.mark.parametrize("keep_graph", [False, True], ids=["zeros_like", "reference × 0"])
@pytest.mark.parametrize("key", _course_keys())
def test_zeros_of_the_right_shape_earn_nothing(key, keep_graph):
    if key in CONTRACT_EXERCISES:
        pytest.skip(f"{key} is graded on a contract, not on values")
    seen: list = []
    earned, total, results = grade(key, _zeros_answer(EXERCISES[key].solution, keep_graph, seen))
    if key in NUMBER_EXERCISES:
        assert not seen, f"{key} returns tensors: remove it from NUMBER_EXERCISES"
        return
    assert seen, f"{key}: the reference never returned a tensor; add it to NUMBER_EXERCISES"
    assert earned == 0, f"{key}: zeros earn {earned} / {total}: {[r.name for r in results if r.passed]}"


# ==================================================================================================
# no case is blind to a listed mistake (issue 26)
# ==================================================================================================
# Mistakes whose values are right by design: they show only in a side case (the input changed in place, a cut
# graph, parameters, the initialisation). Every value case passes; a side case names them.
VALUES_RIGHT = {
    ("00.channel_stat", "detached"), ("00.reweight", "in place"), ("01.reduce_expand", "conv bias"),
    ("02.excitation", "C·r hidden units"), ("02.excitation", "no biases"), ("02.excitation", "detached input"),
    ("04.nonlocal_output", "no zero-init"), ("04.nonlocal_output", "W and γ both zero"),
    ("04.nonlocal_output", "W's weight and γ zero"), ("05.channel_mlp", "detached"),
    ("07.condconv_routing", "not connected to the autograd graph"),
    ("07.highway_gate", "no gradient reached these parameters: gate.weight"),
    ("07.sk_fuse_select", "no gradient reached these parameters: reduce.weight"), ("08.spatial_map", "autograd"),
    ("03.style_pool", "no gradient"), ("03.covariance_pool", "no gradient"), ("03.ge_gather", "no gradient"),
    ("09.directional_pool", "autograd graph"), ("09.channel_shuffle", "autograd graph"), ("09.aff_fuse", "autograd graph"),
}
# Value cases that cannot show a mistake, each for a reason of the exercise itself (not a coincidence of the
# inputs): (key, mistake) → the fragments of those cases' names. Every other value case must catch the mistake.
BLIND_CASES = {
    ("00.conv_flops", "k not k²"): ("1×1",),  # k = k² when k = 1
    ("00.conv_flops", "valid padding"): ("1×1",),  # a 1×1 conv does not shrink the map
    ("00.conv_params", "no bias"): ("without bias",),
    ("00.conv_params", "bias per input"): ("without bias",),
    ("00.conv_params", "ignores bias=False"): ("with bias",),
    ("00.conv_params", "k not k²"): ("1×1",),
    ("02.eca_kernel_size", "rounded"): ("other gamma and beta",),  # that γ, β give whole, odd log-ratios
    ("02.eca_kernel_size", "hard-coded γ, β"): ("widths",),  # the default γ = 2, β = 1 is what it hard-codes
    ("02.squeeze", "sum"): ("op='max'", "op='std'"),  # a mistake of one op: the other ops are right
    ("02.squeeze", "unbiased std"): ("op='avg'", "op='max'"),
    ("02.squeeze", "variance"): ("op='avg'", "op='max'"),
    ("04.dot_product_norm", "÷ N"): ("θ [3, 2, 5], φ [3, 2, 5]",),  # self-attention: N = M
    ("08.fusion", "bands of other sizes"): ("K=4 ->", "K=2 ->"),  # K divides H: every layout gives even bands
    ("08.fusion", "bands of other sizes (fusion_repeat_interleave)"): ("K=4 ->", "K=2 ->"),
    ("08.spatial_map", "all frames together"): ("f [3, 1,",),  # one frame: all frames are that frame
    # eps = 1e-5 beside a real channel's variance is below the comparison's tolerance: only a flat channel shows it
    ("03.style_pool", "eps outside the root"): ("-> [N, C, 2]",),
    ("03.style_pool", "no eps"): ("-> [N, C, 2]",),
    ("03.ge_gather", "padding counted"): ("extent=0",),  # the global extent has no window, so no padding
    ("03.ge_gather", "e×e windows"): ("extent=0",),
}

_GRADED: dict = {}


def _graded(key: str, name: str):
    if (key, name) not in _GRADED:
        _GRADED[key, name] = grade(key, FAIRNESS[key].mistakes[name].answer)[2]
    return _GRADED[key, name]


@pytest.mark.parametrize("key, name", MISTAKES, ids=[f"{k}: {n}" for k, n in MISTAKES])
def test_no_value_case_is_blind_to_a_listed_mistake(key, name):
    """A case whose inputs make the reference's output invariant to a mistake cannot catch it (every branch weight
    1/2, a map already normalised, K dividing H): each mistake fails every value case, but for the listed reasons."""
    if key in CONTRACT_EXERCISES:
        pytest.skip(f"{key} is graded on a contract: each broken property fails its own case")
    results = _graded(key, name)
    values = [r for r in results if not r.side]
    passed = [r.name for r in values if r.passed]
    if (key, name) in VALUES_RIGHT:
        assert len(passed) == len(values), f"{key}: {name!r} is listed with right values but fails {values}"
        hint = FAIRNESS[key].mistakes[name].hint
        assert any(r.side and not r.passed and hint in r.hint for r in results), f"no side case names {name!r}"
        return
    blind = BLIND_CASES.get((key, name), ())
    unexplained = [n for n in passed if not any(b in n for b in blind)]
    assert not unexplained, f"{key}: these value cases do not catch {name!r}: {unexplained}"
    stale = [b for b in blind if not any(b in n for n in passed)]
    assert not stale, f"{key}: {name!r} is caught by the cases listed blind to it: {stale}"


@pytest.mark.parametrize("key", sorted(FAIRNESS))
def test_every_value_case_catches_some_listed_mistake(key):
    """No case whose inputs make every listed mutant agree with the reference."""
    names = [r.name for r in grade(key, EXERCISES[key].solution)[2] if not r.side]
    caught = {r.name for name in FAIRNESS[key].mistakes for r in _graded(key, name) if not r.side and not r.passed}
    assert not [n for n in names if n not in caught], f"{key}: value cases no listed mistake fails"


def test_the_blind_case_tables_name_listed_mistakes():
    for key, name in [*VALUES_RIGHT, *BLIND_CASES]:
        assert key in FAIRNESS and name in FAIRNESS[key].mistakes, (key, name)
