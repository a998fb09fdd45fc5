"""Experiments of module 02 (SENet): the baseline vs SE vs the SE design space on two diagnostic tasks.

Every arm is the same :class:`~attncourse.models.AttnResNet` (widths 16/32/64, one basic block per
stage) with a different ``attention=`` block on the residual branch of each basic block. The reduction
is ``r = 4`` (``SE_REDUCTION``): with widths 16–64 the paper's r = 16 would leave bottlenecks of
1, 2 and 4 units — a single unit at stage 1 makes all 16 channel weights a function of one number.
r = 4 gives 4, 8 and 16 units at an extra cost of ~2.7k parameters on a ~75k-parameter network.
"""
from __future__ import annotations

from ..models import AttnResNet
from .core import BackboneArm, Experiment, register_experiment

SE_REDUCTION = 4

#: channel-cue arms: the whole design space of the course notes, one arm per variant
CHANNEL_CUE_ARMS = {
    "baseline": "none",
    "se": "se",                   # GAP → FC-ReLU-FC → sigmoid (the paper)
    "se_max": "se_max",           # squeeze operator: max
    "se_std": "se_std",           # squeeze operator: standard deviation
    "se_avgmax": "se_avgmax",     # squeeze operator: avg + max
    "se_h": "se_h",               # squeeze over W only: weights per (channel, row)
    "se_spatial": "se_spatial",   # squeeze along the channel direction: a spatial map
    "eca": "eca",                 # excitation: one 1-D conv across channels (ECA)
    "se_multiscale": "se_multiscale",  # excitation: multi-scale 1-D convs
    "se_fusion": "se_fusion",     # multi-input SE fusion of three views
}

#: cluttered-digits arms: where a spatial signal matters, channel weights alone should help less
CLUTTERED_ARMS = {
    "baseline": "none",
    "se": "se",
    "se_avgmax": "se_avgmax",
    "se_spatial": "se_spatial",
    "eca": "eca",
}


def se_net(task, attention: str = "se", reduction: int = SE_REDUCTION) -> AttnResNet:
    """The backbone of this module's experiments: ``AttnResNet`` with ``attention`` at reduction ``r``."""
    return BackboneArm(attention, {"reduction": reduction})(task)



register_experiment(Experiment(
    name="senet_channel_cue",
    description=("Channel-cue digits (4 input channels, one digit each; a faint per-channel brightness offset marks "
                 "the channel that carries the label): AttnResNet baseline vs SE vs the SE design space "
                 f"(squeeze operators, squeeze directions, excitation variants, multi-input fusion), r={SE_REDUCTION}."),
    task="channel_cue_digits",
    arms={arm: BackboneArm(block, {"reduction": SE_REDUCTION}) for arm, block in CHANNEL_CUE_ARMS.items()},
    module="02_senet",
))

register_experiment(Experiment(
    name="senet_cluttered",
    description=("Cluttered digits (a digit at a random place and scale among clutter fragments): AttnResNet baseline "
                 f"vs SE and a few SE variants (avg+max squeeze, channel-direction squeeze, ECA), r={SE_REDUCTION}."),
    task="cluttered_digits",
    arms={arm: BackboneArm(block, {"reduction": SE_REDUCTION}) for arm, block in CLUTTERED_ARMS.items()},
    module="02_senet",
))
