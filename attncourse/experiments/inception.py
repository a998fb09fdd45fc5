"""Experiments of module 01 (Inception): multi-branch blocks vs a single-kernel stack on multi-scale digits."""
from ..blocks.inception import InceptionNet, PlainNet
from .core import Experiment, NetArm, register_experiment

register_experiment(Experiment(
    name="inception_multiscale",
    description=("Multi-scale digits (8–38 px on a 40×40 canvas): PlainNet (two 3×3 convs per stage) vs InceptionNet "
                 "(1×1 | 3×3 | 5×5 | pool branches) vs SE-Inception (SE on each block's concatenated output). "
                 "Same skeleton, receptive field and ~equal params/FLOPs."),
    task="multiscale_digits",
    arms={
        "plain": NetArm(PlainNet),
        "inception": NetArm(InceptionNet),
        "se_inception": NetArm(InceptionNet, {"attention": "se"}),
    },
    module="01_inception",
))
