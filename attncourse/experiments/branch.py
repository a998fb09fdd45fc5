"""Experiments of module 07 (SKNet and branch attention).

``branch_multiscale`` — one digit whose size varies by a factor of ~6 (6–38 px on a 40×40 canvas) under strong
pixel noise. Every arm is :class:`~attncourse.models.branch.BranchResNet` (AttnResNet's skeleton, widths
16/32/64, one basic block per stage) and the arms differ ONLY in the second 3×3 conv of each block, which is
replaced (nothing is added), at the plain conv's FLOPs:

* ``plain`` — ``nn.Conv2d`` 3×3;
* ``sk`` — SK unit, 3×3 and 3×3 dilated 2, each with 2 groups (so the two branches together have the plain
  conv's weights), fuse width ``max(C/4, 8)`` (the paper's floor L = 32 would be wider than these layers);
* ``condconv`` — 4 experts, sigmoid routing (4× the conv's weights, the same FLOPs: CondConv's trade);
* ``dynamic_conv`` — 4 kernels, softmax attention, τ annealed 30 → 1 over the first quarter of training by
  ``fit``'s generic ``set_training_progress`` hook;
* ``split_attn`` — ResNeSt split attention, radix 2, cardinality 1, hidden width ``max(C/2, 8)``;
* the matched-parameter controls: CondConv and DynamicConv carry about 2.9× the plain net's parameters (their
  experts), so at equal FLOPs they are not at equal cost. ``plain_wide`` is the plain net widened to their
  parameters (widths ``PLAIN_WIDE_WIDTHS``); ``condconv_narrow`` and ``dynamic_conv_narrow`` are the same 4-expert
  convs in a net narrowed to the plain net's parameters (widths ``NARROW_WIDTHS``), all within 1 %.

Why these task keywords, not ``multiscale_digits``' defaults: on the defaults (8–38 px, noise 0.1) the full
profile is saturated — a plain CNN reaches ~98 % (module 01's ``inception_multiscale``, 2-core CPU, one seed), so
no arm can show a gain. Heavier noise (``NOISE``) makes the smallest digits hard to read and the largest ones
hard to see whole with a 25 px receptive field, and the wider range (down to 6 px) widens the size spread SK is
meant to adapt to. Measured before choosing (2-core CPU, full-profile sizes, seed 0, outside the runner): the
``plain`` arm reaches 85.8 % here, so every arm has headroom. The test digits' sizes follow from the generator's
seed, so the notebook can plot SK's branch weights against digit size from the trained checkpoint.

``highway_depth`` — the Highway papers' demonstration: a deep fully connected stack without normalisation
(:class:`~attncourse.models.branch.DeepStack`, ``HIGHWAY_DEPTH`` layers of width 32) with and without highway gates
(gate bias −3), on near-centred digits (20–24 px on 24×24, so a fully connected net can read them). Measured
before choosing (2-core CPU, 2000 training images, 6 epochs, seed 0): a 2-layer plain stack reaches 82 % test
accuracy, the 40-layer highway stack 79 %, the same 40 layers without gates 20 % (gate bias −2: 27 %).
"""
from __future__ import annotations

from ..models.branch import BranchResNet, DeepStack
from .core import Experiment, NetArm, register_experiment

NOISE = 0.3
DIGIT_SIZE = (6, 38)
HIGHWAY_DEPTH = 40

#: arm name → (conv, its keyword arguments): all at the plain 3×3 conv's FLOPs
ARMS = {
    "plain": ("plain", {}),
    "sk": ("sk", {"groups": 2, "reduction": 4, "min_reduced": 8}),
    "condconv": ("condconv", {"num_experts": 4}),
    "dynamic_conv": ("dynamic_conv", {"num_kernels": 4}),
    "split_attn": ("split_attn", {"radix": 2, "min_reduced": 8}),
}


#: widths giving the plain BranchResNet the parameters of the 4-expert CondConv / DynamicConv arms (within 1 %)
PLAIN_WIDE_WIDTHS = (27, 54, 109)
#: widths giving the 4-expert CondConv / DynamicConv BranchResNet the plain arm's parameters (within 1 %)
NARROW_WIDTHS = (9, 20, 37)

#: arm name → (conv, its keyword arguments, widths): the matched-parameter controls
MATCHED_PARAMS_ARMS = {
    "plain_wide": ("plain", {}, PLAIN_WIDE_WIDTHS),
    "condconv_narrow": ("condconv", ARMS["condconv"][1], NARROW_WIDTHS),
    "dynamic_conv_narrow": ("dynamic_conv", ARMS["dynamic_conv"][1], NARROW_WIDTHS),
}


def branch_net(task, conv: str = "sk") -> BranchResNet:
    """The network of arm ``conv`` of ``branch_multiscale`` for ``task``."""
    c, kw = ARMS[conv]
    return NetArm(BranchResNet, {"conv": c, "conv_kwargs": kw})(task)


register_experiment(Experiment(
    name="branch_multiscale",
    description=(f"Multi-scale digits with heavy noise ({DIGIT_SIZE[0]}–{DIGIT_SIZE[1]} px on 40×40, noise {NOISE}; the "
                 "default task is saturated at ~98 % for a plain CNN): BranchResNet with its 3×3 conv replaced — plain vs "
                 "SK (2 branches, 2 groups each) vs CondConv (4 experts) vs DynamicConv (4 kernels, τ 30→1) vs split "
                 "attention (radix 2) — at the plain conv's FLOPs; and at matched parameters: the plain net "
                 "widened to CondConv's parameters, CondConv and DynamicConv in a net narrowed to the plain net's."),
    task="multiscale_digits",
    task_kwargs={"noise": NOISE, "digit_size": DIGIT_SIZE},
    arms={**{arm: NetArm(BranchResNet, {"conv": c, "conv_kwargs": kw}) for arm, (c, kw) in ARMS.items()},
          **{arm: NetArm(BranchResNet, {"conv": c, "conv_kwargs": kw, "widths": w})
             for arm, (c, kw, w) in MATCHED_PARAMS_ARMS.items()}},
    module="07_sknet",
))

register_experiment(Experiment(
    name="highway_depth",
    description=(f"A {HIGHWAY_DEPTH}-layer fully connected stack (width 32) without normalisation on near-centred digits "
                 "(20–24 px on 24×24): highway layers (gate bias −3) vs the same layers without gates."),
    task="multiscale_digits",
    task_kwargs={"canvas": 24, "digit_size": (20, 24)},
    arms={"plain_stack": NetArm(DeepStack, {"depth": HIGHWAY_DEPTH, "gated": False, "image_size": (24, 24)}),
          "highway_stack": NetArm(DeepStack, {"depth": HIGHWAY_DEPTH, "gated": True, "gate_bias": -3.0,
                                              "image_size": (24, 24)})},
    epochs_scale=0.5,
    module="07_sknet",
))
