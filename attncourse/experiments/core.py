"""Named experiments: one diagnostic task, several *arms* (model builders), one training recipe.

:mod:`.runner` trains them (every arm × seed, resumably, in parallel) and writes one results JSON per
experiment with the device, torch version, profile, seeds, git commit, per-run histories and per-arm
mean ± std; :mod:`.recorded` loads those results and the trained checkpoints.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from torch import nn

from ..data import DigitTask

__all__ = ["Experiment", "BackboneArm", "NetArm", "arm_spec", "register_experiment", "list_experiments", "get_experiment",
           "summarize", "EXPERIMENTS"]

EXPERIMENTS: dict[str, "Experiment"] = {}


@dataclass
class Experiment:
    """A named comparison: one task, several arms, trained with the same recipe.

    ``arms`` maps an arm name to ``builder(task) -> nn.Module``. ``fit_kwargs`` go to :func:`attncourse.train.fit`
    (``epochs`` there multiplies the profile's epochs: ``epochs_scale``).
    """

    name: str
    description: str
    task: str
    arms: dict[str, Callable[[DigitTask], nn.Module]]
    task_kwargs: dict = field(default_factory=dict)
    fit_kwargs: dict = field(default_factory=dict)
    epochs_scale: float = 1.0
    module: str = ""  # the notebook that shows it, e.g. "02_senet"


@dataclass(frozen=True)
class BackboneArm:
    """An arm builder: the course backbone ``AttnResNet`` sized for the task, with one attention block.

    ``BackboneArm("se", {"reduction": 4})(task)`` → ``AttnResNet(task.in_channels, task.num_classes,
    attention="se", attention_kwargs={"reduction": 4})``.
    """

    attention: str
    attention_kwargs: dict = field(default_factory=dict)

    def __call__(self, task: DigitTask) -> nn.Module:
        from ..models import AttnResNet

        return AttnResNet(task.in_channels, task.num_classes, attention=self.attention,
                          attention_kwargs=dict(self.attention_kwargs))


@dataclass(frozen=True)
class NetArm:
    """An arm builder for any network class taking ``(in_channels, num_classes, **kwargs)``.

    ``NetArm(InceptionNet, {"attention": "se"})(task)`` → ``InceptionNet(task.in_channels, task.num_classes,
    attention="se")``. Like :class:`BackboneArm` its ``repr`` names everything that defines the model, so
    runs can be recognised (and shared between experiments) by what they train.
    """

    net: type
    kwargs: dict = field(default_factory=dict)

    def __call__(self, task: DigitTask) -> nn.Module:
        return self.net(task.in_channels, task.num_classes, **dict(self.kwargs))

    def __repr__(self) -> str:
        return f"NetArm({self.net.__module__}.{self.net.__qualname__}, {dict(sorted(self.kwargs.items()))!r})"


def arm_spec(builder) -> str:
    """What an arm trains, as a stable string: the ``repr`` of a :class:`BackboneArm` / :class:`NetArm`.

    A baseline (``attention="none"``) ignores its attention keywords, so they are dropped: the baseline of
    every experiment on the same task and recipe is one and the same run.
    """
    if isinstance(builder, BackboneArm):
        kwargs = {} if builder.attention == "none" else dict(sorted(builder.attention_kwargs.items()))
        return f"BackboneArm({builder.attention!r}, {kwargs!r})"
    if isinstance(builder, NetArm):
        return repr(builder)
    raise TypeError(f"arm builder {builder!r} has no stable description; use BackboneArm or NetArm")


def register_experiment(exp: Experiment) -> Experiment:
    if exp.name in EXPERIMENTS:
        raise ValueError(f"experiment {exp.name!r} is already registered")
    EXPERIMENTS[exp.name] = exp
    return exp


def list_experiments() -> list[str]:
    return sorted(EXPERIMENTS)


def get_experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; registered experiments: {', '.join(list_experiments()) or '(none)'}")
    return EXPERIMENTS[name]


def summarize(results: dict) -> list[dict]:
    """One row per arm: ``arm, mean_acc, std_acc, n, params, flops`` (for tables in notebooks)."""
    return [{"arm": arm, "mean_acc": a["mean_test_acc"], "std_acc": a["std_test_acc"], "n": len(a["runs"]),
             "params": a["params"], "flops": a["flops"]} for arm, a in results["arms"].items()]
