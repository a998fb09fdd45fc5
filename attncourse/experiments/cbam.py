"""Experiments of module 05 (CBAM, BAM, scSE) on the cluttered-digits task.

* ``cbam_order`` — the CBAM paper's order ablation (Sec. 4.1, Table 3): channel→spatial (the paper's
  block), spatial→channel, and both in parallel, against the baseline. Two more arms, the channel
  module alone and the spatial module alone, say which half does the work on this task.
* ``mixed_compare`` — CBAM against BAM, scSE (sum and max) and SE on the same task and recipe.

Every arm is :class:`~attncourse.models.AttnResNet` (widths 16/32/64, one basic block per stage) with
``attention_kwargs={"reduction": 4}`` (``MIXED_REDUCTION``). The papers use r = 16 (CBAM, BAM) and
r = 2 (scSE) on 64–2048 channels; here r = 16 would leave hidden layers of 1, 2 and 4 units, and a
single unit at stage 1 makes all 16 channel weights (and BAM's whole spatial gate, which reduces by
the same r) a function of one number. r = 4 gives 4/8/16 units, and using one r for every arm keeps
the channel branches the same size, so the arms differ by their spatial design. BAM goes where its
paper puts it, at the bottlenecks between stages (after stages 1 and 2; after stage 3 comes the global
pool, which is no boundary), not inside residual blocks.
"""
from __future__ import annotations

from ..blocks import BLOCKS
from ..models import AttnResNet
from .core import BackboneArm, Experiment, register_experiment
from .shift import ShiftEvaluation, register_shift

MIXED_REDUCTION = 4

# Record them with ``python -m attncourse run-all --only cbam_order mixed_compare --profile full``; the seed-0
# checkpoints it records are what the notebook's spatial-map pictures load (``ac.load_or_train``).

#: cbam_order: arm name → registered block
ORDER_ARMS = {
    "baseline": "none",
    "channel_spatial": "cbam",              # the paper's CBAM: channel → spatial
    "spatial_channel": "cbam_spatial_first",  # spatial → channel
    "parallel": "cbam_parallel",            # y = x · Mc(x) · Ms(x)
    "channel_only": "channel_attention",
    "spatial_only": "spatial_attention",
}

#: mixed_compare: arm name → registered block ("se" only when the channel family registered it)
COMPARE_ARMS = {"baseline": "none", **({"se": "se"} if "se" in BLOCKS else {}), "cbam": "cbam", "bam": "bam",
                "scse": "scse", "scse_max": "scse_max"}


def mixed_net(task, attention: str, reduction: int = MIXED_REDUCTION) -> AttnResNet:
    """The backbone of this module's experiments: ``AttnResNet`` with ``attention`` placed as its paper places it."""
    return BackboneArm(attention, {"reduction": reduction})(task)



register_experiment(Experiment(
    name="cbam_order",
    description=("Cluttered digits: the CBAM order ablation — channel→spatial (the paper's block), spatial→channel, "
                 "parallel (x·Mc(x)·Ms(x)) — plus the channel and spatial modules alone, vs the AttnResNet baseline; "
                 f"r={MIXED_REDUCTION}, 7×7 spatial kernel."),
    task="cluttered_digits",
    arms={arm: BackboneArm(block, {"reduction": MIXED_REDUCTION}) for arm, block in ORDER_ARMS.items()},
    module="05_cbam",
))

register_experiment(Experiment(
    name="mixed_compare",
    description=("Cluttered digits: channel+spatial blocks compared — CBAM, BAM (at the stage boundaries), scSE "
                 f"(sum and max) — with SE and the baseline; r={MIXED_REDUCTION} for every block."),
    task="cluttered_digits",
    arms={arm: BackboneArm(block, {"reduction": MIXED_REDUCTION}) for arm, block in COMPARE_ARMS.items()},
    module="05_cbam",
))


# --------------------------------------------------------------------------- does clutter limit the baseline?
#: clutter levels of the dose-response control: 0 fragments (clean digits) and 24 (four times mixed_compare's 6)
CLUTTER_DOSES = {"clutter_none": 0, "clutter_heavy": 24}
#: arms: the baseline, CBAM and its spatial module alone; SE and SE with CBAM's avg+max channel descriptor test whether
#: the max-pooled descriptor is what makes CBAM's channel gate lose more as the clutter grows (at 6 fragments they are
#: mixed_compare's and senet_cluttered's runs)
DOSE_ARMS = {"baseline": "none", "cbam": "cbam", "spatial_only": "spatial_attention", "se": "se",
             "se_avgmax": "se_avgmax"}

for _name, _n in CLUTTER_DOSES.items():
    register_experiment(Experiment(
        name=_name,
        description=(f"Cluttered digits with {_n} clutter fragments (mixed_compare has 6): does the clutter limit the "
                     "baseline, and does a spatial gate's advantage grow with it? Baseline, CBAM, the spatial "
                     "module alone, SE and SE with CBAM's avg+max descriptor (does the max-pooled descriptor's cost "
                     f"grow with the clutter?), r={MIXED_REDUCTION}, the same recipe as cbam_order."),
        task="cluttered_digits",
        task_kwargs={"n_clutter": _n},
        arms={arm: BackboneArm(block, {"reduction": MIXED_REDUCTION}) for arm, block in DOSE_ARMS.items()},
        module="05_cbam",
    ))


# --------------------------------------------------------------------------- more clutter at test than in training
#: clutter_shift: arm → (experiment, arm) whose trained runs (6 fragments) are tested with more fragments
SHIFT_SOURCES = {"baseline": ("mixed_compare", "baseline"), "se": ("mixed_compare", "se"),
                 "cbam": ("mixed_compare", "cbam"), "scse": ("mixed_compare", "scse"),
                 "spatial_only": ("cbam_order", "spatial_only")}

register_shift(ShiftEvaluation(
    name="clutter_shift",
    description=("The models of the main cluttered-digits task (trained with 6 clutter fragments) tested, without "
                 "retraining, on new test images with 0, 6, 12 and 24 fragments: does a spatial gate keep its "
                 "digit when the clutter grows beyond what it was trained on?"),
    module="05_cbam",
    sources=SHIFT_SOURCES,
    vary="n_clutter",
    levels=(0, 6, 12, 24),
))


# --------------------------------------------------------------------------- looking at the spatial maps
def spatial_maps(model, images) -> list:
    """The spatial map ``Ms`` of every attention block in ``model`` that has one, for ``images`` ``[N, C, H, W]``.

    A forward pre-hook records each block's input during one forward pass (eval mode, no grad); the block's
    ``attention_maps(input)["spatial"]`` is then the map it really applied. Returns a list (forward order) of
    ``[N, 1, h, w]`` CPU tensors — for :class:`~attncourse.models.AttnResNet` one per stage.
    """
    import torch

    blocks = [m for m in model.modules() if m is not model and hasattr(m, "attention_maps")
              and not any(m is not o and m in set(o.modules()) for o in model.modules()
                          if o is not model and hasattr(o, "attention_maps"))]
    inputs: dict[int, object] = {}
    hooks = [b.register_forward_pre_hook(lambda mod, inp, i=i: inputs.__setitem__(i, inp[0].detach()))
             for i, b in enumerate(blocks)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(images)
            maps = [blocks[i].attention_maps(inputs[i]).get("spatial") for i in sorted(inputs)]
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return [m.float().cpu() for m in maps if m is not None]


def digit_masks(task, indices, split: str = "test", threshold: float = 0.25):
    """Where the labelled digit and where the clutter are, in images of a cluttered-digits task.

    The generator pastes the digit (source index ``task.sources_<split>[i, 0]``) with an element-wise max
    over the clutter, so in the digit's square every pixel is at least the digit's own value. Matching the
    digit's template at every size in ``task.info["digit_size"]`` and every position, the placement that is
    covered everywhere and leaves the least excess is the true one. Returns boolean masks ``(digit, clutter)``
    ``[n, H, W]``: the digit's stroke pixels (template > ``threshold``) and the other bright pixels.
    """
    import torch
    import torch.nn.functional as F

    from ..data import _resized_all

    if task.name != "cluttered_digits":
        raise ValueError(f"digit_masks: needs a cluttered_digits task, got {task.name!r}")
    x = task.x_test if split == "test" else task.x_train
    src = task.sources_test if split == "test" else task.sources_train
    lo, hi = task.info["digit_size"]
    level = round(threshold * 255)
    digit, clutter = [], []
    for i in indices:
        canvas = x[i, 0].to(torch.int32)
        best = None
        for s in range(lo, hi + 1):
            tmpl = torch.from_numpy(_resized_all(s)[int(src[i, 0])] * 255.0).round().to(torch.int32).reshape(-1, 1)
            patches = F.unfold(canvas[None, None].float(), s)[0].to(torch.int32)  # [s*s, L]
            excess = patches - tmpl
            ok = excess.amin(0) >= 0
            if ok.any():
                score = torch.where(ok, excess.sum(0).float(), torch.tensor(float("inf")))
                k = int(score.argmin())
                if best is None or float(score[k]) < best[0]:
                    best = (float(score[k]), s, k, tmpl.reshape(s, s))
        if best is None:
            raise ValueError(f"digit_masks: could not locate the digit of {split} image {i}")
        _, s, k, tmpl = best
        width = canvas.shape[1] - s + 1
        top, left = divmod(k, width)
        d = torch.zeros_like(canvas, dtype=torch.bool)
        d[top:top + s, left:left + s] = tmpl > level
        digit.append(d)
        clutter.append((canvas > level) & ~d)
    return torch.stack(digit), torch.stack(clutter)


def map_contrast(maps, digit, clutter) -> dict:
    """How much more a spatial map weights the digit's strokes than the clutter's.

    ``maps`` ``[N, 1, h, w]`` are resized (bilinear) to the masks' ``[N, H, W]``. Returns the mean map value on
    digit and on clutter pixels (over all images), their ratio, and the fraction of images whose digit mean is
    above their clutter mean. A ratio of 1 means the map does not tell digit from clutter.
    """
    import torch
    import torch.nn.functional as F

    up = F.interpolate(maps.float(), size=digit.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    on_digit = torch.stack([up[i][digit[i]].mean() for i in range(len(up))])
    on_clutter = torch.stack([up[i][clutter[i]].mean() if clutter[i].any() else up[i][~digit[i]].mean()
                              for i in range(len(up))])
    return {"digit": float(on_digit.mean()), "clutter": float(on_clutter.mean()),
            "ratio": float(on_digit.mean() / on_clutter.mean()),
            "images_digit_higher": float((on_digit > on_clutter).float().mean())}


def pixel_auc(maps, digit, clutter):
    """Per image, the chance that a random digit pixel gets a higher map value than a random clutter pixel.

    ``maps`` ``[N, 1, h, w]`` are resized (bilinear) to the masks' ``[N, H, W]``; ties count half. An image with no
    clutter pixel compares the digit with the rest of the image. Returns ``[N]``: 0.5 means no preference, 1 every
    digit pixel above every clutter pixel. Unlike :func:`map_contrast`'s ratio it ignores the map's scale, so a
    sigmoid gate and an unbounded feature energy can be compared.
    """
    import torch
    import torch.nn.functional as F

    if maps.dim() != 4 or maps.shape[1] != 1 or digit.shape != clutter.shape or len(maps) != len(digit):
        raise ValueError(f"pixel_auc: maps [N, 1, h, w] and masks [N, H, W] of one N, got {tuple(maps.shape)}, "
                         f"{tuple(digit.shape)} and {tuple(clutter.shape)}")
    up = F.interpolate(maps.float(), size=digit.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    aucs = []
    for i in range(len(up)):
        d = up[i][digit[i]]
        c = up[i][clutter[i]] if clutter[i].any() else up[i][~digit[i]]
        aucs.append(((d[:, None] > c[None]).float() + 0.5 * (d[:, None] == c[None]).float()).mean())
    return torch.stack(aucs)


# --------------------------------------------------------------------------- does the gates' initialisation hold CBAM back?
#: the gate logit the ``*_init2`` arms start from: σ(2) ≈ 0.88 instead of σ(0) = 0.5
INIT_LOGIT = 2.0

#: cbam_init: arm name → (registered block, init_logit). The init_logit-0 arms are built exactly as mixed_compare's
#: (no init_logit keyword), so they are the same jobs and are trained once for both experiments.
INIT_ARMS = {"baseline": ("none", 0.0), "cbam": ("cbam", 0.0), "cbam_init2": ("cbam", INIT_LOGIT),
             "se": ("se", 0.0), "se_init2": ("se", INIT_LOGIT)}

#: the arms that separate the initialisation from the channel descriptor: a 2 × 2 design per block, descriptor
#: (avg | avg + max) × gate init (σ(0) | σ(2)). SE with CBAM's avg + max descriptor, and CBAM with SE's avg-only
#: descriptor, each at both inits. se_avgmax is senet_cluttered's run (same job); the other three train.
DESCRIPTOR_ARMS = {"se_avgmax": ("se_avgmax", 0.0, None), "se_avgmax_init2": ("se_avgmax", INIT_LOGIT, None),
                   "cbam_avg": ("cbam", 0.0, ("avg",)), "cbam_avg_init2": ("cbam", INIT_LOGIT, ("avg",))}


def _init_arm(block: str, init_logit: float, pools: tuple[str, ...] | None = None) -> BackboneArm:
    kwargs = {"reduction": MIXED_REDUCTION, **({"init_logit": init_logit} if init_logit else {}),
              **({"pools": pools} if pools is not None else {})}
    return BackboneArm(block, kwargs)


register_experiment(Experiment(
    name="cbam_init",
    description=("Cluttered digits: does the gates' initialisation explain why CBAM does not beat the baseline? "
                 "At the official init both CBAM gates start near σ(0) = 0.5, so a fresh block scales its residual "
                 f"branch by about 0.25 (SE's single gate: 0.5). CBAM and SE with their gate logits shifted by "
                 f"+{INIT_LOGIT:g} at initialisation (init_logit, gates near σ({INIT_LOGIT:g}) ≈ 0.88) against the same "
                 f"blocks at the default init and the baseline; r={MIXED_REDUCTION}, mixed_compare's recipe (its "
                 "baseline, cbam and se runs are shared). To separate the init from the descriptor: SE with CBAM's "
                 "avg+max descriptor and CBAM with SE's avg-only descriptor, each at both inits."),
    task="cluttered_digits",
    arms={**{arm: _init_arm(block, logit) for arm, (block, logit) in INIT_ARMS.items()},
          **{arm: _init_arm(*spec) for arm, spec in DESCRIPTOR_ARMS.items()}},
    module="05_cbam",
))
