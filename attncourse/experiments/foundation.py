"""Experiments of module 00: the baseline on each diagnostic task."""
from ..models import AttnResNet
from .core import Experiment, register_experiment

register_experiment(Experiment(
    name="foundations_baseline",
    description="The plain AttnResNet baseline (no attention) on the cluttered-digits task.",
    task="cluttered_digits",
    arms={"baseline": lambda task: AttnResNet(task.in_channels, task.num_classes, attention="none")},
    module="00_foundations",
))
