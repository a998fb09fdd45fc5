"""What each module found: its headline comparisons, stated in two to four sentences computed from the results.

A notebook's summary states what its module *found*, not where to look. :data:`HEADLINES` names, per module, the
comparisons its claims stand on — the block against its baseline, and against the fair control where the
experiment has one — and :func:`module_summary` turns the recorded full-profile results into sentences::

    ac.glue("summary_02", ac.module_summary("02"))   # shown on the site (myst-nb glue) and in Colab alike

Each sentence names one task and one or more comparisons on it; each comparison gives Δ with its 95 % interval over
seeds and test items (:func:`~attncourse.experiments.core.effects`), the number of paired seeds, and the label, in
words that follow the label: a clear gain *beats*, a clear loss *falls behind*, and an inconclusive comparison says
that the data cannot tell a gain from a loss. When :func:`~attncourse.experiments.core.convergence` finds a network
of the sentence still limited by its training budget, the sentence says the comparison is an equal-budget one. A
comparison whose arm is not in the recorded results is left out, never guessed; a module with none recorded says so.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .core import convergence, effects
from .recorded import load_results

__all__ = ["Headline", "HEADLINES", "module_findings", "module_summary", "glue"]


@dataclass(frozen=True)
class Headline:
    """One comparison a module's claims stand on: ``arm`` against ``baseline`` in ``experiment``.

    ``arm_words`` / ``baseline_words`` / ``task_words`` name them in plain words ("SE", "the plain baseline",
    "channel-cue digits"). With ``baseline=None`` the headline states the arm's own level (module 00's baseline),
    beside ``chance``: the accuracy of guessing, a property of the task's labels (not a result).
    """

    experiment: str
    arm: str
    baseline: str | None
    arm_words: str
    baseline_words: str
    task_words: str
    chance: float | None = None


def _h(experiment, arm, baseline, arm_words, baseline_words, task_words, chance=None) -> Headline:
    return Headline(experiment, arm, baseline, arm_words, baseline_words, task_words, chance)


_NOISY = "noisy multi-scale digits"
_CLUTTER = "cluttered digits"
_SCENES = "digit scenes"
_BRANCH = "multi-scale digits under heavy noise"
_TRACKS = "digit tracklets"
_TEXTURE = "texture-cue digits"
_TEXTURE_LONG = "texture-cue digits at 45 epochs, three times the schedule"
_ROWS = "row-marker digits"

#: module → its summary's sentences, each a tuple of headlines on one experiment (at most four sentences)
HEADLINES: dict[str, tuple[tuple[Headline, ...], ...]] = {
    "00": (
        (_h("foundations_baseline", "baseline", None, "the plain baseline every module builds on", "", _CLUTTER,
            chance=0.1),),
        (_h("senet_channel_cue", "baseline", None, "the plain baseline", "", "channel-cue digits", chance=0.1),),
        (_h("nonlocal_pairs", "baseline", None, "the plain baseline", "", "long-range pairs",
            chance=0.5),),
    ),
    "01": (
        (_h("inception_noisy", "inception", "plain", "Inception", "the plain stack of two 3×3 per stage", _NOISY),
         _h("inception_noisy", "se_inception", "inception", "SE-Inception", "Inception", _NOISY)),
        (_h("inception_multiscale", "inception", "plain", "Inception", "the plain stack", "multi-scale digits with light noise"),),
        (_h("inception_spatial_depth", "one_spatial", "plain", "the plain stack cut to one 3×3 per stage",
            "the plain stack", _NOISY),
         _h("inception_spatial_depth", "inception", "one_spatial", "Inception",
            "that one-spatial-layer ablation", _NOISY)),
    ),
    "02": (
        (_h("senet_channel_cue", "se", "baseline", "SE", "the plain baseline", "channel-cue digits"),
         _h("senet_channel_cue", "eca", "baseline", "ECA", "the plain baseline", "channel-cue digits")),
        (_h("senet_cluttered", "se", "baseline", "SE", "the plain baseline", _CLUTTER),
         _h("senet_cluttered", "eca", "baseline", "ECA", "the plain baseline", _CLUTTER)),
    ),
    "03": (
        (_h("beyond_average_second_order", "srm", "se", "SRM", "SE (a mean squeeze)", _TEXTURE + " at 15 epochs"),
         _h("beyond_average_second_order", "gsop", "se", "GSoP", "SE", _TEXTURE + " at 15 epochs")),
        (_h("beyond_average_long", "srm", "baseline", "SRM", "the plain baseline", _TEXTURE_LONG),
         _h("beyond_average_long", "gsop", "baseline", "GSoP", "the plain baseline", _TEXTURE_LONG),
         _h("beyond_average_long", "se", "baseline", "SE", "the plain baseline", _TEXTURE_LONG)),
        (_h("beyond_average_long", "srm", "se", "SRM", "SE", _TEXTURE_LONG),
         _h("beyond_average_long", "gsop", "se", "GSoP", "SE", _TEXTURE_LONG)),
        (_h("beyond_average_control", "se", "baseline", "SE", "the plain baseline",
            "the control digits whose cue is a channel's mean"),
         _h("beyond_average_control", "srm", "se", "SRM", "SE", "the control digits whose cue is a channel's mean")),
    ),
    "04": (
        (_h("nonlocal_pairs", "nonlocal", "baseline", "the non-local block", "the plain baseline", "long-range pairs"),
         _h("nonlocal_pairs", "nonlocal", "baseline_mlp", "the non-local block",
            "the control with an MLP head and no attention", "long-range pairs")),
        (_h("nonlocal_pairs", "gc", "baseline", "GCNet's global context block", "the plain baseline",
            "long-range pairs"),
         _h("nonlocal_pairs", "gc", "baseline_mlp", "GCNet's block", "the MLP-head control", "long-range pairs")),
        (_h("nonlocal_pairs", "baseline_mlp", "baseline", "the MLP-head control alone", "the plain baseline",
            "long-range pairs"),),
    ),
    "05": (
        (_h("mixed_compare", "cbam", "baseline", "CBAM", "the plain baseline", _CLUTTER),
         _h("mixed_compare", "se", "baseline", "SE", "the plain baseline", _CLUTTER)),
        (_h("cbam_order", "channel_only", "baseline", "CBAM's channel gate alone", "the plain baseline", _CLUTTER),
         _h("cbam_order", "spatial_only", "baseline", "its spatial gate alone", "the plain baseline", _CLUTTER)),
        (_h("cbam_init", "cbam_init2", "cbam", "CBAM with its gates initialised open", "CBAM as published", _CLUTTER),),
        (_h("clutter_heavy", "cbam", "baseline", "CBAM", "the plain baseline", "digits under heavy clutter"),),
    ),
    "06": (
        (_h("danet_scenes", "danet", "fcn", "DANet", "the plain FCN", _SCENES),
         _h("danet_scenes", "danet", "fcn_two_branch", "DANet", "the two-branch FCN without attention", _SCENES)),
        (_h("danet_scenes", "pam", "fcn", "the position attention module alone", "the plain FCN", _SCENES),
         _h("danet_scenes", "cam", "fcn", "the channel attention module alone", "the plain FCN", _SCENES)),
        (_h("danet_scenes", "danet", "cbam_series", "DANet's parallel attention", "CBAM's gates in series", _SCENES),),
    ),
    "07": (
        (_h("branch_multiscale", "sk", "plain", "the SK unit", "the plain 3×3 conv", _BRANCH),
         _h("branch_multiscale", "split_attn", "plain", "split attention", "the plain 3×3 conv", _BRANCH)),
        (_h("branch_multiscale", "condconv", "plain", "CondConv", "the plain 3×3 conv", _BRANCH),
         _h("branch_multiscale", "dynamic_conv", "plain", "Dynamic Convolution", "the plain 3×3 conv", _BRANCH)),
        (_h("branch_multiscale", "condconv", "plain_wide", "CondConv", "a plain net widened to its parameters",
            _BRANCH),
         _h("branch_multiscale", "condconv_narrow", "plain", "CondConv narrowed to the plain net's parameters",
            "the plain net", _BRANCH)),
        (_h("highway_depth", "highway_stack", "plain_stack", "the 40-layer highway stack",
            "the same 40 layers without gates", "near-centred digits"),),
    ),
    "08": (
        (_h("sta_tracklets", "sta", "tap", "STA", "temporal average pooling (TAP)", _TRACKS),
         _h("sta_tracklets", "temporal_attention", "tap", "temporal attention", "TAP", _TRACKS)),
        (_h("sta_tracklets", "sta", "temporal_attention", "STA", "temporal attention", _TRACKS),),
        (_h("sta_tracklets_partial", "sta", "temporal_attention", "STA", "temporal attention",
            "digit tracklets whose every frame is partly hidden"),),
    ),
    "09": (
        (_h("coordatt_rows", "coordatt", "baseline", "Coordinate Attention", "the plain baseline", _ROWS),
         _h("coordatt_rows", "coordatt", "se", "Coordinate Attention", "SE", _ROWS)),
        (_h("coordatt_rows_control", "coordatt", "baseline", "Coordinate Attention", "the plain baseline",
            "the control digits whose bar sits beside its digit"),),
        (_h("sa_cluttered", "sa", "baseline", "SA-Net", "the plain baseline", _CLUTTER),
         _h("sa_cluttered", "sa", "se", "SA-Net", "SE", _CLUTTER)),
        (_h("aff_scenes", "aff", "add", "AFF", "the plain sum", "digit scenes with one skip connection"),
         _h("aff_scenes", "aff", "concat", "AFF", "a learned linear mix", "digit scenes with one skip connection")),
    ),
}

_METRIC_WORDS = {"accuracy": "test accuracy", "miou": "test mIoU", "map": "test mAP"}
_POINT_WORDS = {"accuracy": "points", "miou": "mIoU points", "map": "mAP points"}
INCONCLUSIVE_WORDS = "inconclusive: the data cannot tell a gain from a loss here"


def _signed(x: float) -> str:
    """``+1.2`` / ``−3.4`` / ``0.0`` from a fraction (points, one decimal, a true minus sign)."""
    v = round(100 * x, 1)
    return "0.0" if v == 0 else f"{v:+.1f}".replace("-", "−")


def _device_words(results: dict) -> str:
    device = str(results.get("device", "an unrecorded device")).replace(" (", ", ").replace(")", "")
    device = re.sub(r"\b1 threads\b", "1 thread", device)
    return f"{results.get('profile', 'full')} profile, {device}"


def _seeds(n: int) -> str:
    return "one seed" if n == 1 else f"{n} seeds"


def _clause(h: Headline, row: dict, metric: str) -> str:
    """One comparison in words that follow its label."""
    points = _POINT_WORDS.get(metric, "points")
    if row["n"] < 2:
        return (f"{h.arm_words} against {h.baseline_words}: {_signed(row['delta'])} {points} from one seed, with no "
                f"interval, {INCONCLUSIVE_WORDS}")
    evidence = (f"{_signed(row['delta'])} {points} (95 % interval [{_signed(row['ci_low'])}, "
                f"{_signed(row['ci_high'])}], {_seeds(row['n'])})")
    if row["label"] == "clear gain":
        return f"{h.arm_words} beats {h.baseline_words}: {evidence}, a clear gain"
    if row["label"] == "clear loss":
        return f"{h.arm_words} falls behind {h.baseline_words}: {evidence}, a clear loss"
    return f"{h.arm_words} against {h.baseline_words}: {evidence}, {INCONCLUSIVE_WORDS}"


def _level_clause(h: Headline, results: dict) -> str:
    """An arm's own level: mean ± seed std of the metric, its seeds, and chance when the task has one."""
    a = results["arms"][h.arm]
    n = len(a["runs"])
    spread = f" ± {100 * a['std_test_acc']:.1f}" if n > 1 else ""
    chance = f" (chance: {100 * h.chance:.0f} %)" if h.chance is not None else ""
    metric = _METRIC_WORDS.get(results.get("metric", "accuracy"), "test score")
    return f"{h.arm_words} reaches {100 * a['mean_test_acc']:.1f}{spread} % {metric} over {_seeds(n)}{chance}"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else "; ".join(parts[:-1]) + "; and " + parts[-1]


def _names(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _sentence_parts(group: tuple[Headline, ...], results: dict) -> dict | None:
    """The clauses of one sentence for the recorded headlines of ``group``, and the networks they involve that
    :func:`convergence` finds budget-limited (``None`` when none of the headlines is recorded)."""
    arms = results["arms"]
    recorded = [h for h in group if h.arm in arms and (h.baseline is None or h.baseline in arms)]
    if not recorded:
        return None
    metric = results.get("metric", "accuracy")
    clauses, involved = [], {}
    for h in recorded:
        involved.setdefault(h.arm, h.arm_words)
        if h.baseline is None:
            clauses.append(_level_clause(h, results))
            continue
        involved.setdefault(h.baseline, h.baseline_words)
        row = next(r for r in effects(results, baseline=h.baseline) if r["arm"] == h.arm)
        clauses.append(_clause(h, row, metric))
    limited = [arm for arm in involved if convergence(results, arm)["budget_limited"]]
    return {"task": recorded[0].task_words, "where": _device_words(results), "clauses": clauses,
            "limited": list(dict.fromkeys(involved[arm] for arm in limited)), "everyone": len(limited) == len(involved),
            "compares": any(h.baseline is not None for h in recorded)}


def _budget_note(part: dict) -> str:
    """A sentence's own budget caveat (empty when none of its networks is budget-limited)."""
    limited = part["limited"]
    if not limited:
        return ""
    verb = "was" if len(limited) == 1 else "were"
    if not part["compares"]:
        return f" — {_names(limited)} {verb} still limited by the training budget when training stopped"
    who = "every network here was" if part["everyone"] else f"{_names(limited)} {verb}"
    what = "this is an equal-budget comparison" if len(part["clauses"]) == 1 else "these are equal-budget comparisons"
    return f" — {who} still limited by the training budget, so {what}"


_WHY_LIMITED = "final training accuracy below 95 %, or below 99 % and still climbing"
ALL_LIMITED_NOTE = (f" — every network named here was still limited by its training budget ({_WHY_LIMITED}), so these "
                    "are equal-budget comparisons, not ones between converged networks")
ALL_LIMITED_LEVELS = f" — each was still limited by its training budget when training stopped ({_WHY_LIMITED})"


def _render(parts: list[dict]) -> list[str]:
    """The sentences. Where the runs were made is said once (and again only when it changes); the budget caveat is
    said once, at the end, when it holds for every network of the summary, else in each sentence it concerns."""
    all_limited = all(p["everyone"] for p in parts)
    sentences, said = [], None
    for i, part in enumerate(parts):
        where = "" if part["where"] == said else f" ({part['where']})"
        said = part["where"]
        last = ALL_LIMITED_NOTE if any(p["compares"] for p in parts) else ALL_LIMITED_LEVELS
        note = (last if i == len(parts) - 1 else "") if all_limited else _budget_note(part)
        sentences.append(f"On {part['task']}{where}, {_join(part['clauses'])}{note}.")
    return sentences


def module_findings(module: str, profile: str = "full") -> list[str]:
    """The sentences of :func:`module_summary`: one per recorded headline group (at most four), or one sentence
    saying that none is recorded yet."""
    key = str(module)[:2]
    if key not in HEADLINES:
        raise ValueError(f"module_summary: no headlines registered for module {module!r}; modules: {sorted(HEADLINES)}")
    parts, loaded = [], {}
    for group in HEADLINES[key][:4]:
        name = group[0].experiment
        if name not in loaded:
            loaded[name] = load_results(name, profile)
        if loaded[name] is not None and (part := _sentence_parts(group, loaded[name])) is not None:
            parts.append(part)
    if not parts:
        names = list(dict.fromkeys(h.experiment for group in HEADLINES[key] for h in group))
        return [f"None of module {key}'s headline comparisons is recorded yet "
                f"({', '.join(f'`{n}`' for n in names)}), so it has no measured finding to state: record them with "
                f"`python -m attncourse run-all --only {' '.join(names)} --profile {profile}`."]
    return _render(parts)


def module_summary(module: str, profile: str = "full") -> str:
    """What module ``module`` (``"00"`` … ``"08"``, or a notebook name such as ``"02_senet"``) found, in Markdown:
    one to four sentences computed from the recorded ``profile`` results of its :data:`HEADLINES`."""
    return " ".join(module_findings(module, profile))


def glue(name: str, obj) -> None:
    """Show ``obj`` in a notebook and, on the course website, store it under ``name`` for ``{glue:md}`` references.

    A ``str`` is shown as Markdown. With myst-nb importable (the site's build) this is ``myst_nb.glue(name, obj)``,
    which also displays it (a ``text/markdown`` output that the site renders as Markdown); without it (Colab) the
    object is simply displayed; outside a notebook (no IPython shell) it is printed.
    """
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:  # no IPython at all
        get_ipython = None
    if get_ipython is None or get_ipython() is None:  # a plain script: no notebook to display in
        print(obj)
        return
    shown = Markdown(obj) if isinstance(obj, str) else obj
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        display(shown)
        return
    myst_glue(name, shown, display=True)
