"""Experiments of module 06 (DANet) on the digit-scenes segmentation task.

``danet_scenes``: 48×48 scenes of one large digit (36–44 px, larger than the FCN's 35-px receptive field)
and 2–3 small ones (9–14 px); every pixel is labelled background, a digit class, or ignored (soft edges,
overlaps). The metric is mIoU (``attncourse.objectives.segmentation``), with mIoU by digit size.

Every arm is :class:`~attncourse.models.segmentation.SegNet`: the same dilated FCN backbone (output stride 4,
widths 16/32/64) and a head at 16 channels that differs only in its attention:

* ``fcn`` — no attention (the baseline);
* ``pam`` — DANet's position attention module in the branch;
* ``cam`` — DANet's channel attention module in the branch;
* ``danet`` — both, in two parallel branches whose outputs are summed (the paper's head);
* ``cbam_series`` — CBAM (channel gate, then spatial gate, in series; r = 4) in the branch;
* ``fcn_two_branch`` — DANet's head without its attention modules: two plain branches in parallel, summed. DANet has
  a second conv branch the FCN baseline lacks (+14 % parameters); this arm has it too, at DANet's parameters
  within 1 %, so PAM, CAM and DANet can be judged against a head of the same size and shape;
* ``cam_paper`` / ``danet_paper`` — ``cam`` / ``danet`` with CAM in the paper's form (Eq. 3, ``softmax(E)``: a channel
  attends most to the channels most similar to it) instead of the authors' code's ``softmax(max(E) − E)``, which the
  other arms use (:class:`~attncourse.blocks.dual.ChannelSelfAttention`).

Record it with ``python -m attncourse run-all --only danet_scenes --profile full`` (resumable).
"""
from __future__ import annotations

from ..data.digit_scenes import digit_scenes  # noqa: F401  (registers the task in attncourse.data.TASKS)
from ..models.segmentation import SegNet
from .core import Experiment, NetArm, register_experiment

#: arm name → SegNet head
ARMS = {"fcn": "fcn", "pam": "pam", "cam": "cam", "danet": "danet", "cbam_series": "cbam_series",
        "fcn_two_branch": "fcn2"}
#: arm name → SegNet head, with CAM in the paper's form (``cam_form="paper"``)
PAPER_FORM_ARMS = {"cam_paper": "cam", "danet_paper": "danet"}

register_experiment(Experiment(
    name="danet_scenes",
    description=("Digit scenes (48×48, one large digit beyond the FCN's 35-px receptive field and 2-3 small digits; "
                 "per-pixel labels, mIoU): a dilated FCN (output stride 4) with a plain head vs + PAM vs + CAM vs "
                 "DANet (PAM ∥ CAM, summed) vs a CBAM-in-series head vs two plain branches summed (DANet's head "
                 "without attention); CAM and DANet also with CAM in the paper's form (softmax(E), Eq. 3) instead of "
                 "the code's softmax(max(E) − E)."),
    task="digit_scenes",
    arms={**{arm: NetArm(SegNet, {"head": head}) for arm, head in ARMS.items()},
          **{arm: NetArm(SegNet, {"head": head, "cam_form": "paper"}) for arm, head in PAPER_FORM_ARMS.items()}},
    module="06_danet",
))


# --------------------------------------------------------------------------- mIoU by digit size
SIZE_METRICS = ("miou", "scene_miou_large", "scene_miou_small", "digit_pixel_miou_large", "digit_pixel_miou_small",
                "pixel_accuracy")
#: metrics recorded under another name before: new name → the old one (the same computation)
LEGACY_NAMES = {"digit_pixel_miou_large": "miou_large", "digit_pixel_miou_small": "miou_small"}


def size_table(results: dict) -> list[dict]:
    """Per arm: mean and seed standard deviation of the final epoch's :data:`SIZE_METRICS` (from each run's recorded
    ``history["test_metrics"]``), and the number of seeds ``n``.

    ``scene_miou_*`` is a real IoU per digit size (false positives on the background count); ``digit_pixel_miou_*``
    counts only that size's digit pixels (blind to false positives), read from the old name ``miou_*`` for runs
    recorded before the rename (:mod:`attncourse.objectives.segmentation`). Keys ``<metric>`` and ``<metric>_std``;
    a metric a run did not record is ``nan`` (``scene_miou_*`` for runs recorded before it existed).
    """
    import math
    import statistics

    def value(metrics: dict, key: str):
        v = metrics.get(key)
        if v is None and key in LEGACY_NAMES:
            v = metrics.get(LEGACY_NAMES[key])
        return math.nan if v is None else v

    rows = []
    for arm, a in results["arms"].items():
        row = {"arm": arm, "n": len(a["runs"])}
        for key in SIZE_METRICS:
            values = [value(r["history"]["test_metrics"][-1], key) for r in a["runs"]
                      if r.get("history", {}).get("test_metrics")]
            values = [v for v in values if not math.isnan(v)]
            row[key] = statistics.fmean(values) if values else math.nan
            row[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        rows.append(row)
    return rows


def size_effects(results: dict, arm: str, baseline: str,
                 metrics=("scene_miou_large", "scene_miou_small")) -> list[dict]:
    """Δ of ``arm`` over ``baseline`` in each of ``metrics`` (IoU by digit size, from each run's final
    ``history["test_metrics"]``), paired by seed, with the course's estimator
    (:func:`~attncourse.metrics.effect.paired_effect`).

    The runs record their per-scene outcomes per class, not per size, so this interval is over **seeds only**: the
    test scenes' own sampling error is not in it (``item_source`` is ``"none"``), unlike the overall mIoU's verdict.
    Returns one dict per metric: ``{"metric", "delta", "ci_low", "ci_high", "label", "per_seed", "n",
    "item_source"}``; a metric that a run did not record leaves that seed out.
    """
    from ..metrics.effect import paired_effect

    for name in (arm, baseline):
        if name not in results["arms"]:
            raise ValueError(f"size_effects: no arm {name!r} in {results.get('experiment')!r}; "
                             f"arms: {list(results['arms'])}")

    def runs(name: str, key: str) -> list[dict]:
        out = []
        for r in results["arms"][name]["runs"]:
            final = (r.get("history", {}).get("test_metrics") or [{}])[-1]
            value = final.get(key, final.get(LEGACY_NAMES.get(key, key)))
            if value is not None:
                out.append({"seed": r["seed"], "value": float(value)})
        return out

    rows = []
    for key in metrics:
        est = paired_effect(runs(arm, key), runs(baseline, key), metric=key)
        rows.append({"metric": key, **{k: est[k] for k in ("delta", "ci_low", "ci_high", "label", "per_seed", "n",
                                                         "item_source")}})
    return rows


_SIZE_WORDS = {"scene_miou_large": "the large digit", "scene_miou_small": "the small digits"}


def size_sentence(results: dict, arm: str, baseline: str, arm_words: str, baseline_words: str) -> str:
    """One sentence on :func:`size_effects` (large and small digits), whose words follow the labels: a gain on one
    size and a loss on the other is called a move of IoU between them, never a gain; an inconclusive size claims
    no direction. Signs are true minus signs; numbers in IoU points."""
    large, small = size_effects(results, arm, baseline)

    def part(e):
        text = (f"{_SIZE_WORDS[e['metric']]} {100 * e['delta']:+.1f} [{100 * e['ci_low']:+.1f}, "
                f"{100 * e['ci_high']:+.1f}]").replace("-", "−")
        return f"{text}, {'a ' + e['label'] if e['label'] != 'inconclusive' else 'inconclusive'}"

    labels = (large["label"], small["label"])
    reading = {("clear gain", "clear loss"): " — it moves IoU from the small digits to the large one",
               ("clear loss", "clear gain"): " — it moves IoU from the large digit to the small ones",
               ("clear gain", "clear gain"): " — it gains on both sizes",
               ("clear loss", "clear loss"): " — it loses on both sizes"}.get(labels, "")
    return (f"By digit size, {arm_words} against {baseline_words} (IoU points, 95 % interval over {large['n']} seeds "
            f"only): {part(large)}; {part(small)}{reading}.")


# --------------------------------------------------------------------------- statistics of the recorded checkpoints
def checkpoint_size_table(task, arms=None, experiment: str = "danet_scenes") -> list[dict]:
    """Per arm with a recorded seed-0 checkpoint: its test metrics on ``task``'s test split, recomputed now.

    Runs recorded before ``scene_miou_*`` existed do not have it in their history; the checkpoint does, so it is
    evaluated again (:class:`~attncourse.objectives.segmentation.Segmentation`): keys ``arm``, ``seed`` and every
    metric of the objective (``miou``, ``scene_miou_small``, ``scene_miou_large``, ``digit_pixel_miou_*`` …).
    Arms without a checkpoint (or with one that no longer fits today's code) are left out.
    """
    from ..objectives.segmentation import Segmentation
    from .recorded import CheckpointMismatch, load_trained

    rows = []
    for arm in arms if arms is not None else ARMS:
        try:
            model = load_trained(experiment, arm)
        except (FileNotFoundError, CheckpointMismatch):
            continue
        rows.append({"arm": arm, "seed": model.provenance.get("seed"), **Segmentation().evaluate(model, task)})
    return rows


def pam_same_digit_share(attention, labels, num_classes: int = 11, sizes=None):
    """PAM's weight on the pixels of the query's own digit, against chance, per query cell on a digit.

    ``attention [B, N, N]`` PAM's ``S`` on an ``h × w`` feature map (``N = h·w``); ``labels [B, H, W]`` the pixel
    labels (0 background, 1.. digit classes, 255 ignored); ``sizes [B, H, W]`` optional (1 small digit, 2 large).
    Each feature cell takes the label covering most of its pixels (:func:`~attncourse.metrics.attention.cell_labels`);
    the queries are the cells on a digit; a query's keys are the cells with its label (two digits of one class in a
    scene count as one). Returns a dict of 1-D tensors
    ``share`` and ``chance`` (see :func:`~attncourse.metrics.attention.attention_share`), and ``size`` (1 or 2 per
    query, when ``sizes`` is given).
    """
    from ..metrics.attention import attention_share

    if attention.dim() != 3 or labels.dim() != 3 or len(attention) != len(labels):
        raise ValueError(f"pam_same_digit_share: attention [B, N, N] and labels [B, H, W] of one batch, got "
                         f"{tuple(attention.shape)} and {tuple(labels.shape)}")
    cells = cell_labels_of(labels, attention.shape[-1], num_classes)          # [B, N], -1 for mixed cells
    queries = cells > 0
    keys = (cells[:, :, None] == cells[:, None, :]) & queries[:, :, None]      # [B, N, N]: same digit class
    share, chance = attention_share(attention, keys, queries)
    out = {"share": share, "chance": chance}
    if sizes is not None:
        out["size"] = cell_labels_of(sizes, attention.shape[-1], 3)[queries]
    return out


def pam_statistics(model, task, batch_size: int = 250) -> dict:
    """:func:`pam_same_digit_share` of a trained DANet or PAM :class:`SegNet` over the whole test split of ``task``.

    The features entering the first PAM of the head are captured with a forward hook, batch by batch. Returns the
    dict of :func:`pam_same_digit_share` (one entry per query cell on a digit, all scenes) plus ``scene`` (the test
    scene of each query), ``top3`` (the weight on the query's three heaviest keys: how concentrated it looks) and
    ``shared_top`` (1 when the query's heaviest key is the one most queries of its digit share, see :func:`_shared_top`).
    """
    import torch

    from ..blocks.dual import PositionAttention

    pam = next((m for m in model.modules() if isinstance(m, PositionAttention)), None)
    if pam is None:
        raise ValueError(f"pam_statistics: {type(model).__name__} has no PositionAttention module")
    captured = {}
    hook = pam.register_forward_pre_hook(lambda m, inp: captured.__setitem__("x", inp[0].detach()))
    parts = []
    try:
        with torch.no_grad():
            for start in range(0, len(task.x_test), batch_size):
                where = slice(start, start + batch_size)
                model(task.float_images(task.x_test[where]))
                attn = pam.attention_maps(captured["x"])["position"]                     # [b, N, N]
                got = pam_same_digit_share(attn, task.y_test[where], task.num_classes, task.size_test[where])
                cells = cell_labels_of(task.y_test[where], attn.shape[-1], task.num_classes)
                scene = torch.arange(start, start + len(attn))[:, None].expand_as(cells)[cells > 0]
                top3 = attn.topk(3, dim=-1).values.sum(-1)[cells > 0]
                parts.append({**got, "scene": scene, "top3": top3, "shared_top": _shared_top(attn, cells)[cells > 0]})
    finally:
        hook.remove()
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def _shared_top(attention, cells):
    """``[B, N]`` float: 1 where a query's heaviest key is the most common heaviest key among the queries with the
    same cell label in its scene (``cells [B, N]``, labels ≤ 0 left at 0): do the queries of one digit all look at
    the same cell?"""
    import torch

    top = attention.argmax(-1)                                                  # [B, N]
    out = torch.zeros(cells.shape, dtype=torch.float32)
    for i in range(len(cells)):
        for label in cells[i].unique():
            if label <= 0:
                continue
            q = cells[i] == label
            out[i][q] = (top[i][q] == top[i][q].mode().values).float()
    return out


def cell_labels_of(labels, n: int, num_classes: int):
    """The cell labels ``[B, N]`` (flattened ``h × w``, ``N = h·w``) of pixel labels ``[B, H, W]`` on an ``N``-cell
    feature map of the same aspect; see :func:`~attncourse.metrics.attention.cell_labels`."""
    import math

    from ..metrics.attention import cell_labels

    h = int(round(math.sqrt(n * labels.shape[-2] / labels.shape[-1])))
    if h * (n // h) != n:
        raise ValueError(f"cell_labels_of: N = {n} is not an h×w grid of the labels' aspect {tuple(labels.shape)}")
    return cell_labels(labels, (h, n // h), num_classes).flatten(1)
