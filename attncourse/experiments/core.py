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
           "summarize", "effects", "verdict", "interval_text", "convergence", "metric_label", "EXPERIMENTS"]

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
        return f"NetArm({net_spec_name(self.net)}, {dict(sorted(self.kwargs.items()))!r})"


def net_spec_name(net: type) -> str:
    """The name a network class has in arm specs: its own ``arm_spec_name`` when it sets one, else its dotted path.

    The course's networks set ``arm_spec_name`` to the path they were first recorded under, so moving a class
    to another file changes no job id and no recorded checkpoint's ``arm_spec``. Only the class's own attribute
    counts (not an inherited one): a subclass is another network.
    """
    return net.__dict__.get("arm_spec_name") or f"{net.__module__}.{net.__qualname__}"


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


def _runs_for_effect(arm: dict) -> list[dict]:
    return [{"seed": r["seed"], "value": r["final_test_acc"], "items": r.get("items")} for r in arm["runs"]]


def effects(results: dict, baseline: str | None = None) -> list[dict]:
    """Each arm against the baseline arm (default: the first arm): the evidence a table states.

    One estimator for the whole course (:func:`attncourse.metrics.effect.paired_effect`): per arm, ``delta`` (the
    mean over seeds of the paired per-seed differences, ``per_seed``), its 95 % interval ``ci_low``/``ci_high`` over
    seeds *and* the finite paired test set, and ``label``: ``"clear gain"`` (interval above 0), ``"clear loss"``
    (below 0) or ``"inconclusive"``; the baseline's own row has ``label`` ``None``. Also ``mean``/``std`` (the
    arm's mean and seed standard deviation of the metric), ``n`` (paired seeds), ``seed_se``/``item_se`` (the two
    noise terms), ``item_source`` (how the test-set term was estimated), ``extra_params`` (fraction of the
    baseline's parameters added) and ``train_acc`` (mean final training accuracy, or ``None``).
    """
    from ..metrics.effect import paired_effect

    arms = results["arms"]
    base = baseline if baseline is not None else next(iter(arms))
    if base not in arms:
        raise ValueError(f"effects: no arm {base!r} in {results.get('experiment')!r}; arms: {list(arms)}")
    b = arms[base]
    rows = []
    for arm, a in arms.items():
        row = {"arm": arm, "baseline": base, "mean": a["mean_test_acc"], "std": a["std_test_acc"],
               "n_runs": len(a["runs"]), "extra_params": a["params"] / b["params"] - 1 if b.get("params") else 0.0,
               "train_acc": _final_train_acc(a)}
        if arm == base:
            row.update(delta=0.0, ci_low=0.0, ci_high=0.0, label=None, per_seed=[0.0] * len(a["runs"]),
                       n=len(a["runs"]), seed_se=0.0, item_se=0.0, item_source=None)
        else:
            est = paired_effect(_runs_for_effect(a), _runs_for_effect(b), metric=results.get("metric", "accuracy"),
                                n_test=results.get("n_test"))
            row.update({k: est[k] for k in ("delta", "ci_low", "ci_high", "label", "per_seed", "n", "seed_se",
                                            "item_se", "item_source")})
        rows.append(row)
    return rows


def _final_train_acc(arm: dict) -> float | None:
    values = [r["history"]["train_acc"][-1] for r in arm["runs"] if r.get("history", {}).get("train_acc")]
    return sum(values) / len(values) if values else None


def convergence(results: dict, arm: str, useful_lr: float = 0.1) -> dict:
    """Was ``arm`` still improving when its training stopped? Judged where it can still move.

    The one-cycle schedule drives the learning rate to ~0 in the last epochs, so "it changed little in the last
    epoch" says nothing. Instead: ``climb`` is the mean test-metric gain per epoch (points) over the two epochs
    before the **last epoch whose learning rate is still ≥ ``useful_lr`` × the peak** (averaged over seeds);
    ``still_climbing`` when that is ≥ 0.5 points per epoch. ``train_acc`` and ``test_acc`` are the final ones
    (mean over seeds). ``budget_limited``: the training accuracy ends below 95 %, or the arm was still climbing
    with its training accuracy below 99 % — the budget, not the block, limits it, and a comparison with it is an
    equal-budget comparison. (Still climbing at a training accuracy of ~100 % is the usual gain of a decaying
    learning rate, not a sign that more epochs were needed.)
    """
    runs = results["arms"][arm]["runs"]
    climbs = []
    for r in runs:
        h = r.get("history", {})
        lr, acc = h.get("lr") or [], h.get("test_acc") or []
        if len(lr) >= 3 and len(acc) == len(lr):
            peak = max(lr)
            last = max(i for i, v in enumerate(lr) if v >= useful_lr * peak)
            if last >= 2:
                climbs.append(100 * (acc[last] - acc[last - 2]) / 2)
    climb = sum(climbs) / len(climbs) if climbs else None
    train = _final_train_acc(results["arms"][arm])
    still = climb is not None and climb >= 0.5
    limited = (train is not None and train < 0.95) or (still and (train is None or train < 0.99))
    return {"arm": arm, "train_acc": train, "test_acc": results["arms"][arm]["mean_test_acc"], "climb": climb,
            "still_climbing": still, "budget_limited": limited}


METRIC_NAMES = {"accuracy": "", "miou": "mIoU", "map": "mAP"}


def metric_label(results: dict) -> str:
    """How the results' primary metric is named after a percentage: ``""`` for accuracy, ``" mIoU"``, ``" mAP"``, …"""
    metric = results.get("metric", "accuracy")
    name = METRIC_NAMES.get(metric, metric)
    return f" {name}" if name else ""


def interval_text(row: dict) -> str:
    """``"+1.1 points, 95 % interval [−0.2, +2.3]"`` for an :func:`effects` row (``"one seed"`` when it has none)."""
    if row["n"] < 2:
        return f"{100 * row['delta']:+.1f} points (one seed: no interval)"
    return f"{100 * row['delta']:+.1f} points, 95 % interval [{100 * row['ci_low']:+.1f}, {100 * row['ci_high']:+.1f}]"


def verdict(results: dict, arm: str, baseline: str | None = None) -> str:
    """One sentence, computed from ``results``: ``arm`` against the baseline, its Δ with the 95 % interval over
    seeds and test items, the per-seed differences, and the label (clear gain / clear loss / inconclusive)."""
    row = next((r for r in effects(results, baseline) if r["arm"] == arm), None)
    if row is None:
        raise ValueError(f"verdict: no arm {arm!r} in {results.get('experiment')!r}; arms: {list(results['arms'])}")
    base = results["arms"][row["baseline"]]
    where = f"{results['profile']} profile, {row['n']} paired seed(s), {results['device']}"
    unit = metric_label(results)

    def acc(a: dict) -> str:  # a single seed has no spread to show
        return (f"{100 * a['mean_test_acc']:.1f} ± {100 * a['std_test_acc']:.1f} %{unit}" if len(a["runs"]) > 1
                else f"{100 * a['mean_test_acc']:.1f} %{unit}")

    head = f"{arm} reaches {acc(results['arms'][arm])} against the {row['baseline']}'s {acc(base)} ({where}): "
    if arm == row["baseline"]:
        return head + "it is the baseline."
    if row["n"] < 2:
        return head + f"{interval_text(row)} — inconclusive: one seed cannot separate the block from seed noise."
    seeds = ", ".join(f"{100 * d:+.1f}" for d in row["per_seed"])
    return head + (f"{interval_text(row)} — {row['label']} (per-seed differences {seeds}; "
                   f"{100 * row['extra_params']:+.1f} % parameters).")
