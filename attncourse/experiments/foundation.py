"""Experiments of module 00: the baseline on each diagnostic task."""
from .core import BackboneArm, Experiment, register_experiment

register_experiment(Experiment(
    name="foundations_baseline",
    description="The plain AttnResNet baseline (no attention) on the cluttered-digits task.",
    task="cluttered_digits",
    arms={"baseline": BackboneArm("none")},
    module="00_foundations",
))
