"""Experiments of module 08 (STA) on the digit-tracklets task.

``sta_tracklets``: video re-identification of individual handwritten digits (:mod:`attncourse.data.digit_tracklets`:
4-frame tracklets of 32×16 frames, 3 cameras, jitter, clutter, and frames partly or wholly occluded by a grey
obstacle). Every arm is :class:`~attncourse.models.reid.ReIDNet` — the course backbone (AttnResNet widths
16/32/64, no attention inside) on each frame, then a clip head, global pooling and a 128-d embedding — trained
with identity cross-entropy plus a batch-hard triplet loss on P×K batches (:mod:`attncourse.objectives.metric`);
the test metric is mAP (rank-1/5/10 beside it) on queries against a gallery of other cameras. Arms:

* ``tap`` — temporal average pooling (the baseline; first, so effects are measured against it);
* ``temporal_attention`` — one learned weight per frame (softmax over frames);
* ``sta`` — STA, K = 4 horizontal regions, the inter-frame regulariser with weight 0.1.

``sta_tracklets_partial``: the same arms and recipe on a variant of the task where occlusion hides PARTS of frames,
never whole frames (``PARTIAL_OCCLUSION``): every frame of every tracklet has one grey band over a quarter or half of
its height, at a random place, and no frame is left clear. STA's distinctive claim is per-region frame choice; here a
per-frame weight (temporal attention) cannot find a clean frame, while each region of the digit is visible in most
frames.

Record them with ``python -m attncourse run-all --only sta_tracklets sta_tracklets_partial --profile full``.
"""
from __future__ import annotations

from ..data import digit_tracklets as _task_family  # noqa: F401 — registers the task this experiment trains on
from ..models.reid import ReIDNet
from .core import Experiment, NetArm, register_experiment

HEADS = ("tap", "temporal_attention", "sta")
#: the partial-occlusion variant of digit_tracklets: every frame occluded, by a band only, no clear frame kept
PARTIAL_OCCLUSION = {"occlusion": 1.0, "whole": 0.0, "clear_frame": False}

register_experiment(Experiment(
    name="sta_tracklets",
    description=("Digit tracklets (video re-ID of individual handwritten digits: 4 frames of 32×16, 3 cameras, jitter, "
                 "clutter, frames partly or wholly occluded): the course backbone on every frame, then temporal "
                 "average pooling (TAP) vs temporal attention pooling vs STA (K=4 regions, inter-frame regulariser); "
                 "identity cross-entropy + batch-hard triplet loss on P×K batches; test mAP and CMC on queries "
                 "against a gallery of other cameras."),
    task="digit_tracklets",
    arms={head: NetArm(ReIDNet, {"head": head}) for head in HEADS},
    module="08_sta",
))

register_experiment(Experiment(
    name="sta_tracklets_partial",
    description=("Digit tracklets where occlusion hides parts of frames, never whole frames: every frame has one grey "
                 "band over a quarter or half of its height and no frame is clear, so a per-frame weight cannot pick "
                 "a clean frame while per-region frame choice (STA) can. The same arms and recipe as sta_tracklets: "
                 "TAP vs temporal attention pooling vs STA."),
    task="digit_tracklets",
    task_kwargs=dict(PARTIAL_OCCLUSION),
    arms={head: NetArm(ReIDNet, {"head": head}) for head in HEADS},
    module="08_sta",
))


# --------------------------------------------------------------------------- what the pictures of module 08 claim
REGION_NAMES = {0: "background", 1: "ink", 2: "occluder"}


def pixel_regions(occluded_frames, clear_frames, occluded_rows, ink_threshold: float = 0.5):
    """Label every pixel of every frame: 0 background, 1 ink, 2 occluder.

    ``occluded_frames`` and ``clear_frames`` ``[N, T, 1, H, W]`` floats in [0, 1]: the same tracklets with and
    without the obstacles (every other random draw is the same); ``occluded_rows`` bool ``[N, T, H]``. A pixel is
    *occluder* when its row is hidden, else *ink* when the clear frame exceeds ``ink_threshold`` there (digit strokes,
    and the clutter fragments, which are cut from other digits), else *background*. Returns ``[N, T, H, W]`` int64.
    """
    import torch

    if clear_frames.shape != occluded_frames.shape or clear_frames.dim() != 5:
        raise ValueError(f"pixel_regions: frames must be [N, T, 1, H, W] of one shape, got "
                         f"{tuple(occluded_frames.shape)} and {tuple(clear_frames.shape)}")
    if tuple(occluded_rows.shape) != tuple(clear_frames.shape[:2]) + (clear_frames.shape[-2],):
        raise ValueError(f"pixel_regions: occluded_rows must be [N, T, H], got {tuple(occluded_rows.shape)}")
    ink = clear_frames[:, :, 0] > ink_threshold
    regions = ink.long()
    hidden = occluded_rows[..., None].expand_as(ink)
    return torch.where(hidden, torch.full_like(regions, 2), regions)


def spatial_map_by_region(g, regions) -> dict[str, float]:
    """STA's spatial map ``g [N, T, h, w]`` (each frame sums to 1) averaged over the pixels of each region of
    ``regions [N, T, H, W]`` (:func:`pixel_regions`), in units of a uniform map: ``g·h·w`` upsampled to the image
    (nearest), so 1 means "as much as an average cell", above 1 more. Also ``top row``: the map's top row of cells."""
    import torch.nn.functional as F

    from ..metrics.attention import mean_by_region

    n, t, h, w = g.shape
    scaled = g * (h * w)
    up = F.interpolate(scaled.flatten(0, 1)[:, None], size=tuple(regions.shape[-2:]), mode="nearest")[:, 0]
    out = mean_by_region(up, regions.flatten(0, 1), REGION_NAMES)
    out["top row"] = float(scaled[:, :, 0].double().mean())
    out["other rows"] = float(scaled[:, :, 1:].double().mean())
    return out


def sta_statistics(model, occluded_task, clear_task, batch_size: int = 128) -> dict[str, float]:
    """:func:`spatial_map_by_region` of a trained STA :class:`~attncourse.models.reid.ReIDNet` over every frame of
    the test split (``occluded_task`` and its occlusion-free twin ``clear_task``)."""
    import torch

    gs = []
    with torch.no_grad():
        for start in range(0, len(occluded_task.x_test), batch_size):
            x = occluded_task.float_images(occluded_task.x_test[start:start + batch_size])
            gs.append(model.temporal.attention_maps(model.frame_features(x))["spatial"])
    regions = pixel_regions(occluded_task.float_images(occluded_task.x_test), clear_task.float_images(clear_task.x_test),
                            occluded_task.occluded_test)
    return spatial_map_by_region(torch.cat(gs), regions)


# --------------------------------------------------------------------------- the occlusion split, every seed
from .shift import ShiftEvaluation, register_shift  # noqa: E402

register_shift(ShiftEvaluation(
    name="sta_occlusion",
    description=("Every seed of the three sta_tracklets arms, tested twice on the experiment's own test split: as "
                 "trained (occlusion 0.35) and with the occluders left out (occlusion 0: the same identities, "
                 "cameras, jitter, clutter and noise). How much of each arm's mAP, and of STA's difference to TAP and "
                 "to temporal attention, comes from the occluded frames?"),
    module="08_sta",
    sources={head: ("sta_tracklets", head) for head in HEADS},
    vary="occlusion",
    levels=(0.35, 0.0),
    task_kwargs={"occlusion": 0.35},   # digit_tracklets' default, named so the file says what the runs trained with
    test_split="experiment",
))
