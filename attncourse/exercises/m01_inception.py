"""Exercises of module 01 (Inception): what a branch costs, and the 1×1-reduce → k×k branch itself.

====================  ======  ======================================================================
key                   points  the learner writes
====================  ======  ======================================================================
``01.branch_flops``      2    ``branch_flops(c_in, c_reduce, c_out, k, h, w)``: FLOPs of 1×1 reduce → k×k
``01.flops_saving``      1    ``flops_saving(c_in, c_reduce, c_out, k)``: naive k×k FLOPs ÷ reduced-branch FLOPs
``01.reduce_expand``     3    ``ReduceExpand(c_in, c_reduce, c_out, k)``: 1×1 conv-BN-ReLU → k×k conv-BN-ReLU
====================  ======  ======================================================================

Questions (counted apart, 1 point each): ``01.predict_5x5_saving`` (number), ``01.interpret_flops_vs_time``
(choice), ``01.predict_arm_spread`` (choice, read from the recorded ``inception_multiscale`` run),
``01.predict_one_spatial`` (choice, read from the recorded ``inception_spatial_depth`` ablation).
"""
from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from torch import nn

from ..experiments import effects, interval_text
from .core import (bucket, compare_number_cases, compare_numbers, compare_tensors, gradient_flow, recorded, recorded_note,
                   register_exercise, register_question, run_case, seeded_generator)
from .side_properties import side_property

__all__ = ["branch_flops", "flops_saving", "ReduceExpand"]


# --------------------------------------------------------------------------------------------------
# reference solutions
# --------------------------------------------------------------------------------------------------
def branch_flops(c_in: int, c_reduce: int, c_out: int, k: int, h: int, w: int) -> int:
    """FLOPs of an Inception branch on an ``h×w`` map: a 1×1 conv ``c_in → c_reduce`` then a k×k conv
    ``c_reduce → c_out`` (stride 1, "same" padding, biases and BN not counted).

    Each conv costs ``2·C_in·C_out·k²·H·W`` (one multiply-add = 2 FLOPs)::

        2·h·w·(c_in·c_reduce + c_reduce·c_out·k²)
    """
    return 2 * h * w * (c_in * c_reduce + c_reduce * c_out * k * k)


def flops_saving(c_in: int, c_reduce: int, c_out: int, k: int) -> float:
    """How many times fewer FLOPs the reduced branch needs than one k×k conv ``c_in → c_out``.

    ``c_in·c_out·k² / (c_in·c_reduce + c_reduce·c_out·k²)`` — the map size ``h·w`` cancels.
    """
    return c_in * c_out * k * k / (c_in * c_reduce + c_reduce * c_out * k * k)


class ReduceExpand(nn.Module):
    """An Inception branch: 1×1 conv ``c_in → c_reduce`` → BN → ReLU → k×k conv ``c_reduce → c_out`` ("same"
    padding) → BN → ReLU. Convs have no bias (the BN after them has one). ``[N, c_in, H, W] → [N, c_out, H, W]``."""

    def __init__(self, c_in: int, c_reduce: int, c_out: int, k: int):
        super().__init__()
        self.reduce = nn.Conv2d(c_in, c_reduce, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_reduce)
        self.conv = nn.Conv2d(c_reduce, c_out, k, padding=k // 2, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.reduce(x)))
        return F.relu(self.bn2(self.conv(x)))


# --------------------------------------------------------------------------------------------------
# 01.branch_flops
# --------------------------------------------------------------------------------------------------
def _case_branch_flops(learner, configs) -> str | None:
    return compare_number_cases([(f"branch_flops({c_in}, {c_r}, {c_out}, {k}, {h}, {w})", learner(c_in, c_r, c_out, k, h, w),
                                  branch_flops(c_in, c_r, c_out, k, h, w), _branch_mistakes(c_in, c_r, c_out, k, h, w))
                                 for c_in, c_r, c_out, k, h, w in configs], integer=True)


def _branch_mistakes(c_in, c_r, c_out, k, h, w) -> dict:
    """What each known mistake gives for this branch (those that differ from the right count)."""
    expected = branch_flops(c_in, c_r, c_out, k, h, w)
    reduce_cost, expand_cost = 2 * h * w * c_in * c_r, 2 * h * w * c_r * c_out * k * k
    mistakes = {
        "that counts multiply-adds (MACs); FLOPs count the multiply and the add: 2 per MAC": expected / 2,
        "only the k×k conv is counted: add the 1×1 reduction's 2·h·w·c_in·c_reduce": expand_cost,
        "only the 1×1 conv is counted: add the k×k conv's 2·h·w·c_reduce·c_out·k²": reduce_cost,
        "that is the naive branch (k×k straight from c_in): the k×k conv sees only c_reduce channels":
            2 * h * w * c_in * c_out * k * k,
        "a k×k kernel has k² taps, not k": reduce_cost + expand_cost / k,
        "the 1×1 conv has a 1×1 kernel: no k² in its cost": reduce_cost * k * k + expand_cost,
        "each conv runs at all h·w positions: multiply by h·w": expected / (h * w),
        "the two convs run one after the other: add their costs, do not multiply them":
            reduce_cost * expand_cost,
        "the k×k conv reads the c_reduce channels the 1×1 conv produced, not c_in: its term is "
        "2·h·w·c_reduce·c_out·k²": reduce_cost + 2 * h * w * c_in * c_out * k * k,
        "the 1×1 conv produces c_reduce channels, not c_out: its term is 2·h·w·c_in·c_reduce":
            2 * h * w * c_in * c_out + expand_cost,
    }
    return {hint: v for hint, v in mistakes.items() if v != expected}


def _case_branch_flops_measured(learner) -> str | None:
    """The formula must agree with torch's FLOP counter on a real branch."""
    from ..cost import count_flops

    c_in, c_r, c_out, k, h, w = 24, 6, 16, 5, 11, 9
    branch = nn.Sequential(nn.Conv2d(c_in, c_r, 1, bias=False), nn.ReLU(),
                           nn.Conv2d(c_r, c_out, k, padding=k // 2, bias=False), nn.ReLU())
    measured = count_flops(branch, torch.zeros(1, c_in, h, w))
    return compare_number_cases([(f"branch_flops({c_in}, {c_r}, {c_out}, {k}, {h}, {w})", learner(c_in, c_r, c_out, k, h, w),
                                  measured, _branch_mistakes(c_in, c_r, c_out, k, h, w))], integer=True)


def _branch_configs(rng: random.Random, n: int, k=None):
    for _ in range(n):
        c_in = rng.randint(8, 256)
        yield (c_in, rng.randint(2, max(2, c_in // 2)), rng.randint(4, 128), k if k is not None else rng.choice([3, 5, 7]),
               rng.randint(3, 32), rng.randint(3, 32))


@register_exercise("01.branch_flops", title="FLOPs of an Inception branch (1×1 reduce → k×k)", points=2,
                   solution=branch_flops)
def _check_branch_flops(learner):
    rng = random.Random(0)
    yield run_case("3×3 branches", _case_branch_flops, learner, list(_branch_configs(rng, 5, k=3)))
    yield run_case("5×5 branches", _case_branch_flops, learner, list(_branch_configs(rng, 5, k=5)))
    yield run_case("GoogLeNet inception (3a) on 28×28: its 3×3 and 5×5 branches", _case_branch_flops, learner,
                   [(192, 96, 128, 3, 28, 28), (192, 16, 32, 5, 28, 28)])
    yield run_case("20 random branches, non-square maps", _case_branch_flops, learner, list(_branch_configs(rng, 20)))
    yield run_case("agrees with the measured FLOPs of a real branch", _case_branch_flops_measured, learner)


# --------------------------------------------------------------------------------------------------
# 01.flops_saving
# --------------------------------------------------------------------------------------------------
def _case_saving(learner, configs) -> str | None:
    cases = []
    for c_in, c_r, c_out, k in configs:
        expected = flops_saving(c_in, c_r, c_out, k)
        naive, reduced = c_in * c_out * k * k, c_in * c_r + c_r * c_out * k * k
        mistakes = [
            ("inverted: divide the naive cost by the reduced one (the saving is > 1 when the reduction helps)",
             reduced / naive),
            ("the reduced branch also pays for its 1×1 conv (c_in·c_reduce)", naive / (c_r * c_out * k * k)),
            ("a k×k kernel has k² taps, not k", c_in * c_out * k / (c_in * c_r + c_r * c_out * k)),
            ("that is the FLOPs saved (naive − reduced), not the ratio", 2 * (naive - reduced)),
            ("that is the FLOPs saved (naive − reduced), not the ratio", naive - reduced),
            ("the ratio was floored to a whole number (// or int()): divide with /, the saving is rarely whole",
             naive // reduced),
            ("the ratio was rounded to a whole number: return the ratio itself", round(expected)),
            ("the k×k conv of the reduced branch reads the c_reduce channels, not c_in: its cost is "
             "c_reduce·c_out·k²", naive / (c_in * c_r + c_in * c_out * k * k)),
            ("the factor 2 (FLOPs per multiply-add) is on one side of the ratio only: it cancels", 2 * expected),
            ("the factor 2 (FLOPs per multiply-add) is on one side of the ratio only: it cancels", expected / 2),
        ]
        cases.append((f"flops_saving({c_in}, {c_r}, {c_out}, {k})", learner(c_in, c_r, c_out, k), expected, mistakes))
    return compare_number_cases(cases, rel=1e-6)


@register_exercise("01.flops_saving", title="How much a 1×1 reduction saves", points=1, solution=flops_saving)
def _check_saving(learner):
    rng = random.Random(1)
    yield run_case("GoogLeNet inception (3a): 3×3 and 5×5 branches", _case_saving, learner,
                   [(192, 96, 128, 3), (192, 16, 32, 5)])
    yield run_case("a reduction that does not pay (c_reduce close to c_in)", _case_saving, learner,
                   [(32, 30, 8, 3), (16, 16, 4, 1)])
    yield run_case("20 random branches", _case_saving, learner,
                   [(ci, rng.randint(1, ci), rng.randint(1, 128), rng.choice([1, 3, 5, 7]))
                    for ci in (rng.randint(4, 256) for _ in range(20))])


# --------------------------------------------------------------------------------------------------
# 01.reduce_expand
# --------------------------------------------------------------------------------------------------
_RE_CONFIGS = [(12, 4, 10, 3), (20, 6, 8, 5), (7, 3, 5, 1)]  # c_in, c_reduce, c_out, k (widths all different)


def _expected_re_params(c_in, c_r, c_out, k) -> int:
    return c_in * c_r + 2 * c_r + c_r * c_out * k * k + 2 * c_out


def _build_re(learner, c_in, c_r, c_out, k):
    module = learner(c_in, c_r, c_out, k)
    if not isinstance(module, nn.Module):
        return None, (f"ReduceExpand({c_in}, {c_r}, {c_out}, {k}) should be an nn.Module (subclass nn.Module), "
                      f"got {type(module).__name__}")
    return module, None


def _case_re_params(learner, c_in, c_r, c_out, k) -> str | None:
    module, err = _build_re(learner, c_in, c_r, c_out, k)
    if err:
        return err
    got = sum(p.numel() for p in module.parameters())
    w = c_in * c_r + c_r * c_out * k * k
    mistakes = {
        "a conv followed by BatchNorm needs no bias (BN's β is the bias): use bias=False": w + 3 * c_r + 3 * c_out,
        "each conv needs a BatchNorm2d after it (2 parameters per channel)": w,
        "each conv needs a BatchNorm2d after it; and with BN, bias=False": w + c_r + c_out,
        "that is the naive branch: the k×k conv must take the c_reduce channels, not c_in":
            c_in * c_out * k * k + 2 * c_out,
        "the reduction is a 1×1 conv (kernel_size=1)": c_in * c_r * k * k + 2 * c_r + c_r * c_out * k * k + 2 * c_out,
    }
    mistakes = {h: v for h, v in mistakes.items() if v != _expected_re_params(c_in, c_r, c_out, k)}
    return compare_numbers(got, _expected_re_params(c_in, c_r, c_out, k),
                           f"parameters of ReduceExpand({c_in}, {c_r}, {c_out}, {k})", integer=True, mistakes=mistakes)


def _case_re_shape(learner, c_in, c_r, c_out, k, n, h, w) -> str | None:
    module, err = _build_re(learner, c_in, c_r, c_out, k)
    if err:
        return err
    x = torch.randn(n, c_in, h, w, generator=seeded_generator(h * 100 + w))
    with torch.no_grad():
        y = module.eval()(x)
    if not isinstance(y, torch.Tensor):
        return f"forward should return a tensor, got {type(y).__name__}"
    if tuple(y.shape) != (n, c_out, h, w):
        if tuple(y.shape) == (n, c_out, h - k + 1, w - k + 1):
            return f"output is {list(y.shape)}, expected {[n, c_out, h, w]}: pad the k×k conv with padding=k // 2"
        return f"output is {list(y.shape)}, expected {[n, c_out, h, w]}"
    return None


def _find(module: nn.Module, kind, **attrs):
    for m in module.modules():
        if isinstance(m, kind) and all(getattr(m, a) == v for a, v in attrs.items()):
            return m
    return None


def _bn(t: torch.Tensor, bn: nn.BatchNorm2d, training: bool) -> torch.Tensor:
    mean, var = bn.running_mean.clone(), bn.running_var.clone()
    return F.batch_norm(t, mean, var, bn.weight, bn.bias, training, 0.0, bn.eps)


def _case_re_behaviour(learner, c_in, c_r, c_out, k, training: bool) -> str | None:
    module, err = _build_re(learner, c_in, c_r, c_out, k)
    if err:
        return err
    conv1 = _find(module, nn.Conv2d, in_channels=c_in, out_channels=c_r, kernel_size=(1, 1))
    conv2 = _find(module, nn.Conv2d, in_channels=c_r, out_channels=c_out, kernel_size=(k, k))
    bn1 = _find(module, nn.BatchNorm2d, num_features=c_r)
    bn2 = _find(module, nn.BatchNorm2d, num_features=c_out)
    if conv1 is None:
        return f"no 1×1 nn.Conv2d({c_in}, {c_r}, 1) found: the branch starts with a 1×1 conv c_in → c_reduce"
    if conv2 is None:
        return f"no nn.Conv2d({c_r}, {c_out}, {k}) found: the second conv is k×k, c_reduce → c_out"
    if bn1 is None or bn2 is None:
        return "each conv must be followed by an nn.BatchNorm2d of its output width"
    gen = seeded_generator(c_in * 7 + k)
    with torch.no_grad():  # non-trivial BN statistics and affine parameters, so their place matters
        for bn in (bn1, bn2):
            c = bn.num_features
            bn.weight.copy_(torch.rand(c, generator=gen) + 0.5)
            bn.bias.copy_(torch.randn(c, generator=gen) * 0.5)
            bn.running_mean.copy_(torch.randn(c, generator=gen) * 0.3)
            bn.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
    x = torch.randn(3, c_in, 9, 7, generator=gen)
    pad = k // 2
    with torch.no_grad():
        c1 = F.conv2d(x, conv1.weight, conv1.bias)
        b1 = _bn(c1, bn1, training)
        mid = F.relu(b1)
        expected = F.relu(_bn(F.conv2d(mid, conv2.weight, conv2.bias, padding=pad), bn2, training))
        no_mid_relu = F.relu(_bn(F.conv2d(b1, conv2.weight, conv2.bias, padding=pad), bn2, training))
        no_out_relu = _bn(F.conv2d(mid, conv2.weight, conv2.bias, padding=pad), bn2, training)
        relu_before_bn1 = _bn(F.relu(c1), bn1, training)
        relu_before_bn = F.relu(_bn(F.conv2d(relu_before_bn1, conv2.weight, conv2.bias, padding=pad), bn2, training))
        relu_before_bn_out = _bn(F.relu(F.conv2d(relu_before_bn1, conv2.weight, conv2.bias, padding=pad)), bn2, training)
        got = module.train(training)(x)
    mistakes = {
        "no ReLU between the two convs (after the first BN)": no_mid_relu,
        "the branch must end with a ReLU (after the second BN)": no_out_relu,
        "the order is conv → BN → ReLU, not conv → ReLU → BN": relu_before_bn_out,
        "the order is conv → BN → ReLU (the first ReLU came before its BN)": relu_before_bn,
    }
    mode = "training mode (batch statistics)" if training else "eval mode (running statistics)"
    return compare_tensors(got, expected, f"output in {mode}", mistakes=mistakes)


def _case_re_grad(learner) -> str | None:
    module, err = _build_re(learner, 6, 2, 4, 3)
    if err:
        return err
    module.train()
    gen = seeded_generator(5)
    inputs = [torch.randn(2, 6, 5, 7, generator=gen), torch.randn(3, 6, 4, 4, generator=gen) * 2 - 0.5]
    return gradient_flow(module, inputs, module, input_name="the input", output_name="the output")


@register_exercise("01.reduce_expand", title="An Inception branch: 1×1 reduce → k×k, each conv-BN-ReLU", points=3,
                   solution=ReduceExpand)
def _check_reduce_expand(learner):
    for cfg in _RE_CONFIGS:
        yield side_property(run_case("parameters c_in·c_reduce + c_reduce·c_out·k² + BN for {}".format(cfg),
                                     _case_re_params, learner, *cfg))
    yield side_property(run_case("shape [N, c_out, H, W] on an odd, non-square map", _case_re_shape, learner,
                                 12, 4, 10, 3, 2, 9, 13))
    yield side_property(run_case("shape with a 5×5 kernel and batch 1", _case_re_shape, learner, 20, 6, 8, 5, 1, 7, 5))
    for cfg in _RE_CONFIGS[:2]:
        yield run_case(f"behaviour {cfg}, training mode", _case_re_behaviour, learner, *cfg, True)
    yield run_case(f"behaviour {_RE_CONFIGS[1]}, eval mode", _case_re_behaviour, learner, *_RE_CONFIGS[1], False)
    yield side_property(run_case("gradients reach the input and every parameter", _case_re_grad, learner))


# --------------------------------------------------------------------------------------------------
# questions (predict first, interpret after; counted apart from the exercises)
# --------------------------------------------------------------------------------------------------
def _saving_3a_5x5() -> float:
    """GoogLeNet 3a's 5×5 branch (192 channels in, 16 after the 1×1 reduction, 32 out): naive ÷ reduced FLOPs."""
    c_in, c_reduce, c_out, k = 192, 16, 32, 5
    return (c_in * c_out * k * k) / (c_in * c_reduce + c_reduce * c_out * k * k)


register_question(
    "01.predict_5x5_saving", title="Predict: how much does the 1×1 reduction save in GoogLeNet's 3a 5×5 branch?",
    when="predict", tolerance=0.5, answer=_saving_3a_5x5, unit="×",
    explanation=lambda correct: (
        "Per output position the naive 5×5 convolution from 192 to 32 channels needs 192·32·25 = 153,600 "
        "multiply-adds; the reduced branch needs 192·16 = 3,072 for the 1×1 and 16·32·25 = 12,800 for the 5×5, "
        f"15,872 in all: {correct:.1f}× fewer. The saving is about C_in / c_reduce when the k×k term dominates: "
        "the expensive k² taps now see 16 channels instead of 192."))


def _arm_accs() -> dict[str, float]:
    return {arm: 100 * a["mean_test_acc"] for arm, a in recorded("inception_multiscale")["arms"].items()}


def _spread_explanation(correct: str) -> str:
    accs = _arm_accs()
    listed = ", ".join(f"{arm} {acc:.1f} %" for arm, acc in accs.items())
    gap = max(accs.values()) - min(accs.values())
    text = f"Recorded test accuracy ({recorded_note('inception_multiscale')}): {listed}; best minus worst {gap:.1f} points. "
    if correct == "a":
        return text + ("All three arms are close to the ceiling, so this task leaves little room for several "
                       "receptive fields side by side to show a gain; a gap this small is within what a different "
                       "seed could change, so it says nothing about which arm is better.")
    return text + ("The arms differ by more than a point: before reading that as an effect of the multi-branch design, "
                   "look at its 95 % interval over seeds and test images (How to read a result): a gap whose "
                   "interval contains 0 is inconclusive.")


register_question(
    "01.predict_arm_spread", title="Predict: how far apart do plain, Inception and SE-Inception end up?",
    when="predict",
    choices={"a": "less than 1 point between the best and the worst arm", "b": "1 to 5 points",
             "c": "more than 5 points"},
    answer=lambda: bucket(max(_arm_accs().values()) - min(_arm_accs().values()), [1, 5]),
    explanation=_spread_explanation)

def _one_spatial() -> tuple[str, str]:
    """Where the one-3×3-per-stage plain stack lands (letter) and the recorded numbers, from inception_spatial_depth."""
    rows = {r["arm"]: r for r in effects(recorded("inception_spatial_depth"), baseline="plain")}
    gap, cut = rows["inception"], rows["one_spatial"]
    numbers = (f"Recorded ({recorded_note('inception_spatial_depth')}): Inception {interval_text(gap)} against the plain "
               f"stack ({gap['label']}); one 3×3 per stage {interval_text(cut)} ({cut['label']}).")
    if cut["label"] != "clear loss":
        return "c", numbers
    return ("a" if gap["delta"] < 0 and cut["delta"] / gap["delta"] >= 0.5 else "b"), numbers


_ONE_SPATIAL_MEANING = {
    "a": "One spatial layer per stage costs the plain stack most of Inception's deficit. Inception's branches have "
         "a single spatial layer per stage each, and a stack built that way loses about as much. But that stack also "
         "sees less (a 23 px receptive field against 37 px), so this arm alone cannot tell a missing second layer from "
         "a shorter reach: the receptive-field control of this module separates the two.",
    "b": "One spatial layer per stage costs accuracy, but less than half of Inception's deficit: it is part of the "
         "cause, and the parallel split itself accounts for the rest.",
    "c": "One spatial layer per stage, at the same cost, keeps the plain stack's accuracy: depth per stage is not "
         "what Inception lacks here; the split into parallel branches is where its deficit comes from.",
}

register_question(
    "01.predict_one_spatial", title="Predict: the plain stack with one 3×3 per stage — where does it end up?",
    when="predict",
    choices={"a": "at or near Inception's level: it loses at least half of Inception's gap to the plain stack",
             "b": "in between: a clear loss against the plain stack (its interval lies below 0), but by less than half "
                  "of Inception's gap",
             "c": "at the plain stack's level: not a clear loss (its interval reaches 0 or above)"},
    answer=lambda: _one_spatial()[0],
    explanation=lambda correct: _one_spatial()[1] + " " + _ONE_SPATIAL_MEANING[correct])

register_question(
    "01.interpret_flops_vs_time", title="Interpret: why are equal-FLOP networks not equally fast?", when="interpret",
    choices={"a": "the FLOP counter leaves out pooling, batch norm, ReLU and concatenation, and time also goes to "
                  "moving memory and launching many small operations",
             "b": "the FLOP counter counts a multiply-add as one FLOP instead of two",
             "c": "the 1×1 convolutions are not counted",
             "d": "the timer measures the backward pass too"},
    answer="a",
    explanation="FLOPs count the multiply-adds of convolutions and matrix products only. Four branches mean four "
                "separate convolutions on small tensors, a pooling pass, batch norms and ReLUs, and a concatenation "
                "that copies every output: each reads and writes memory and costs a call, none counts as a FLOP. "
                "On a small network those overheads are a large part of the time, so the same FLOPs in more, "
                "smaller pieces run slower.")
