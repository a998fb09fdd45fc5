"""Experiments of module 01 (Inception): multi-branch blocks vs a single-kernel stack on multi-scale digits.

* ``inception_multiscale`` — the default multi-scale digits (8–38 px, light noise). Measured at the full profile
  over 3 seeds (2-core CPU): plain 98.5 ± 0.1 %, Inception 98.2 ± 0.1 %, SE-Inception 98.4 ± 0.1 % — the task is
  saturated, so it cannot show what several receptive fields side by side are worth.
* ``inception_noisy`` — the same arms on the harder variant module 07 uses for branch attention (6–38 px, pixel
  noise 0.3; the plain branch-attention backbone reaches about 86 % there), which leaves headroom for a gain.
* ``inception_spatial_depth`` — the ablation behind inception_noisy's result (Inception below the plain stack):
  every Inception branch has at most one spatial conv per stage, behind a 1×1, where the plain stack has two 3×3.
  ``one_spatial`` is the plain stack rebuilt that way (1×1 → 3×3 per stage, wider, same parameters and FLOPs). Its
  ``plain`` and ``inception`` arms are inception_noisy's runs (same job ids), so only the new arms train. Measured
  at the full profile over 5 seeds (2-core CPU, one thread per run): one_spatial 85.3 ± 0.4 %, the same as
  Inception's 85.2 ± 0.3 %, against the plain stack's 87.4 ± 0.3 %. one_spatial also has a smaller receptive field
  (23 px; plain and Inception 37 px, :func:`~attncourse.blocks.inception.receptive_field`), so on its own it does
  not separate one spatial layer per stage from a smaller receptive field. The two controls do:
  ``one_spatial_dilated`` (the 3×3 dilated 2, the same parameters and FLOPs as one_spatial) and ``one_spatial_5x5``
  (one 5×5 per stage, narrower, parameters and FLOPs within 2 % of the plain stack) are one spatial layer per stage
  with the plain stack's 37 px.
"""
from ..models import ONE_SPATIAL_5X5_WIDTHS, ONE_SPATIAL_WIDTHS, InceptionNet, PlainNet
from .branch import DIGIT_SIZE, NOISE
from .core import Experiment, NetArm, register_experiment

ARMS = {
    "plain": NetArm(PlainNet),
    "inception": NetArm(InceptionNet),
    "se_inception": NetArm(InceptionNet, {"attention": "se"}),
}

register_experiment(Experiment(
    name="inception_multiscale",
    description=("Multi-scale digits (8–38 px on a 40×40 canvas): PlainNet (two 3×3 convs per stage) vs InceptionNet "
                 "(1×1 | 3×3 | 5×5 | pool branches) vs SE-Inception (SE on each block's concatenated output). "
                 "Same skeleton, receptive field and ~equal params/FLOPs."),
    task="multiscale_digits",
    arms=dict(ARMS),
    module="01_inception",
))

register_experiment(Experiment(
    name="inception_noisy",
    description=(f"Multi-scale digits with heavy noise ({DIGIT_SIZE[0]}–{DIGIT_SIZE[1]} px on 40×40, noise {NOISE}), "
                 "where inception_multiscale's task is saturated: PlainNet vs InceptionNet vs SE-Inception."),
    task="multiscale_digits",
    task_kwargs={"noise": NOISE, "digit_size": DIGIT_SIZE},
    arms=dict(ARMS),
    module="01_inception",
))

register_experiment(Experiment(
    name="inception_spatial_depth",
    description=("Why Inception loses on the noisy multi-scale digits: the plain stack (two 3×3 per stage) vs the same "
                 "stack with one spatial conv per stage (1×1 → 3×3, widths "
                 f"{ONE_SPATIAL_WIDTHS}, same parameters and FLOPs) vs InceptionNet, whose branches have at most one "
                 "spatial conv per stage; and two controls with one spatial conv per stage at the plain stack's "
                 "37-px receptive field (the 3×3 dilated 2; one 5×5 per stage, narrower), same parameters and FLOPs."),
    task="multiscale_digits",
    task_kwargs={"noise": NOISE, "digit_size": DIGIT_SIZE},
    arms={"plain": ARMS["plain"],
          "one_spatial": NetArm(PlainNet, {"widths": ONE_SPATIAL_WIDTHS, "kernels": (1, 3)}),
          "inception": ARMS["inception"],
          # the receptive-field controls: one spatial layer per stage, 37 px like plain and Inception
          "one_spatial_dilated": NetArm(PlainNet, {"widths": ONE_SPATIAL_WIDTHS, "kernels": (1, 3), "dilation": 2}),
          "one_spatial_5x5": NetArm(PlainNet, {"widths": ONE_SPATIAL_5X5_WIDTHS, "kernels": (1, 5)})},
    module="01_inception",
))
