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
           "summarize", "effects", "verdict", "metric_label", "EXPERIMENTS"]

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
    every experiment on the same task and recipe is one and the same run. A block class whose default training
    behaviour changed says so with a ``spec_revision`` attribute (e.g. CBAM's spatial BN momentum, revision 1);
    it enters the spec, so runs recorded before the change are not mistaken for runs of the new code. A
    :class:`NetArm` names the revisions of the blocks it builds by name (its ``attention`` / ``conv`` keywords).
    """
    if isinstance(builder, BackboneArm):
        from ..blocks import get_block_spec

        kwargs = {} if builder.attention == "none" else dict(sorted(builder.attention_kwargs.items()))
        revision = getattr(get_block_spec(builder.attention).factory, "spec_revision", 0)
        return f"BackboneArm({builder.attention!r}, {kwargs!r}" + (f", revision={revision})" if revision else ")")
    if isinstance(builder, NetArm):
        revisions = _net_arm_revisions(builder)
        return repr(builder)[:-1] + f", revisions={revisions!r})" if revisions else repr(builder)
    raise TypeError(f"arm builder {builder!r} has no stable description; use BackboneArm or NetArm")


def _net_arm_revisions(builder: NetArm) -> dict[str, int]:
    """The non-zero ``spec_revision`` of the registered blocks a :class:`NetArm` builds by name (its ``attention``
    and ``conv`` keywords, e.g. ``NetArm(BranchResNet, {"conv": "sk"})``), keyed by block name."""
    from ..blocks import BLOCKS

    names = [builder.kwargs.get(key) for key in ("attention", "conv")]
    revisions = {n: getattr(BLOCKS[n].factory, "spec_revision", 0) for n in names if isinstance(n, str) and n in BLOCKS}
    return {n: r for n, r in sorted(revisions.items()) if r}


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


def effects(results: dict, baseline: str | None = None) -> list[dict]:
    """Each arm against the baseline arm (default: the first arm): the evidence a table states.

    Per arm: ``delta`` (mean accuracy − the baseline's), ``spread`` (the larger of the two arms' seed standard
    deviations), ``delta_in_spread`` (``delta / spread``), ``clears`` (better by more than 2 spreads, over at
    least 2 seeds each), ``clear_loss`` (worse by more than 2 spreads, over at least 2 seeds each) and
    ``extra_params`` (fraction of the baseline's parameters added).
    """
    arms = results["arms"]
    base = baseline if baseline is not None else next(iter(arms))
    if base not in arms:
        raise ValueError(f"effects: no arm {base!r} in {results.get('experiment')!r}; arms: {list(arms)}")
    b = arms[base]
    rows = []
    for arm, a in arms.items():
        delta = a["mean_test_acc"] - b["mean_test_acc"]
        spread = max(a["std_test_acc"], b["std_test_acc"])
        n = min(len(a["runs"]), len(b["runs"]))
        rows.append({"arm": arm, "baseline": base, "mean": a["mean_test_acc"], "std": a["std_test_acc"], "n": n,
                     "delta": delta, "spread": spread,
                     "delta_in_spread": delta / spread if spread > 0 else float("inf") * (1 if delta > 0 else -1 if delta < 0 else 0),
                     "clears": arm != base and n >= 2 and delta > 2 * spread,
                     "clear_loss": arm != base and n >= 2 and delta < -2 * spread,
                     "extra_params": a["params"] / b["params"] - 1})
    return rows


METRIC_NAMES = {"accuracy": "", "miou": "mIoU", "map": "mAP"}


def metric_label(results: dict) -> str:
    """How the results' primary metric is named after a percentage: ``""`` for accuracy, ``" mIoU"``, ``" mAP"``, …"""
    metric = results.get("metric", "accuracy")
    name = METRIC_NAMES.get(metric, metric)
    return f" {name}" if name else ""


def verdict(results: dict, arm: str, baseline: str | None = None) -> str:
    """One sentence, computed from ``results``, saying whether ``arm`` beat the baseline by more than 2 spreads
    (a clear win), fell below it by more than 2 spreads (a clear loss), or neither."""
    row = next((r for r in effects(results, baseline) if r["arm"] == arm), None)
    if row is None:
        raise ValueError(f"verdict: no arm {arm!r} in {results.get('experiment')!r}; arms: {list(results['arms'])}")
    base = results["arms"][row["baseline"]]
    where = f"{results['profile']} profile, {row['n']} seed(s), {results['device']}"
    unit = metric_label(results)

    def acc(a: dict) -> str:  # a single seed has no spread to show
        return (f"{100 * a['mean_test_acc']:.1f} ± {100 * a['std_test_acc']:.1f} %{unit}" if len(a["runs"]) > 1
                else f"{100 * a['mean_test_acc']:.1f} %{unit}")

    head = (f"{arm} reaches {acc(results['arms'][arm])} against the {row['baseline']}'s {acc(base)} ({where}): "
            f"{100 * row['delta']:+.1f} points")
    if row["n"] < 2:
        return head + "; one seed cannot say whether that is more than seed noise."
    if row["clears"]:
        return head + (f", {row['delta_in_spread']:.1f}× the larger seed standard deviation — a clear win, "
                       f"for {100 * row['extra_params']:+.1f} % parameters.")
    if row["delta"] > 0:
        return head + f", within 2 seed standard deviations ({row['delta_in_spread']:.1f}×) — not a clear win."
    if row["clear_loss"]:
        return head + (f", {-row['delta_in_spread']:.1f}× the larger seed standard deviation below — a clear loss, "
                       f"for {100 * row['extra_params']:+.1f} % parameters.")
    return head + (f" — no gain ({row['delta_in_spread']:.1f}× the seed standard deviation)." if row["delta"] < 0
                   else " — no difference.")
