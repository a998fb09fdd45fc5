"""Exercises of module 08 (STA): the spatial map, the region scores normalised across frames, the fusion.

=====================  ======  =====================================================================
key                    points  the learner writes
=====================  ======  =====================================================================
``08.spatial_map``        3    ``spatial_map(f)``: ``[N, T, C, H, W] → [N, T, H, W]``, ``Σ_c f²`` normalised over positions
``08.region_scores``      3    ``region_scores(g, regions)``: ``[N, T, H, W] → [N, T, K]``, band sums normalised over frames
``08.fusion``             4    ``sta_fusion(f, scores)``: ``[N, T, C, H, W]``, ``[N, T, K]`` → ``[N, 2C, H, W]``
=====================  ======  =====================================================================

Regions are horizontal bands: row ``h`` of ``H`` belongs to region ``⌊h·K/H⌋`` (even bands when ``K`` divides
``H``). Summing or averaging over channels (``08.spatial_map``) or within a band (``08.region_scores``, bands of
equal size) gives the same normalised result; both earn full marks.

Question (counted apart, 1 point): ``08.predict_region_winner`` — which frame wins region 2 when frames are
occluded in different places (a fixed answer that follows from the normalisation over positions).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .core import compare_gradient, compare_tensors, register_exercise, register_question, run_case, seeded_generator
from .side_properties import side_property

__all__ = ["spatial_map", "region_scores", "sta_fusion"]


# --------------------------------------------------------------------------------------------------
# reference solutions
# --------------------------------------------------------------------------------------------------
def spatial_map(f: torch.Tensor) -> torch.Tensor:
    """STA's spatial attention: ``g[n,t,h,w] = Σ_c f² / Σ_{h,w} Σ_c f²`` → ``[N, T, H, W]``."""
    energy = f.square().sum(2)
    return energy / energy.sum((2, 3), keepdim=True)


def _regions(h: int, k: int, device=None) -> torch.Tensor:
    return torch.arange(h, device=device) * k // h


def region_scores(g: torch.Tensor, regions: int = 4) -> torch.Tensor:
    """``S[n,t,k] = s[n,t,k] / Σ_t s[n,t,k]`` with ``s`` the sum of ``g`` over band ``k`` → ``[N, T, K]``."""
    n, t, h, _ = g.shape
    s = g.new_zeros(n, t, regions).index_add_(2, _regions(h, regions, g.device), g.sum(3))
    return s / s.sum(1, keepdim=True)


def sta_fusion(f: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Per band: the best frame's rows (``argmax_t``) and the score-weighted sum over frames, concatenated
    along channels: ``[best, weighted]`` → ``[N, 2C, H, W]``."""
    return _fuse(f, scores, _regions(f.shape[3], scores.shape[2], f.device))


def _fuse(f: torch.Tensor, scores: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """:func:`sta_fusion` with row ``h`` in band ``region[h]``."""
    n, t, c, h, w = f.shape
    weights = scores[:, :, region]                                      # [N, T, H]
    best = F.one_hot(scores.argmax(1), t).permute(0, 2, 1)[:, :, region].to(f.dtype)
    x1 = (best[:, :, None, :, None] * f).sum(1)
    x2 = (weights[:, :, None, :, None] * f).sum(1)
    return torch.cat([x1, x2], dim=1)


# --------------------------------------------------------------------------------------------------
# 08.spatial_map
# --------------------------------------------------------------------------------------------------
def _features(shape, seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=seeded_generator(seed)) * 1.3 + 0.2


def _map_mistakes(f: torch.Tensor) -> dict:
    e = f.square().sum(2)
    norm = f.norm(dim=2)
    return {
        "the channel norm was not squared: use the SQUARED L2 norm Σ_c f² at each position":
            norm / norm.sum((2, 3), keepdim=True),
        "the energy was normalised over the channels or not at all: divide by its sum over the positions (h, w) "
        "of the same frame": e,
        "normalised over all frames together: normalise each frame's map over its own positions":
            e / e.sum((1, 2, 3), keepdim=True),
        "a softmax over the positions was used: STA divides the energy by its sum (no exponential)":
            e.flatten(2).softmax(2).reshape(e.shape),
        "the channels were summed before squaring ((Σ_c f)²): square first, then sum over channels":
            f.sum(2).square() / f.sum(2).square().sum((2, 3), keepdim=True),
        "normalised by the maximum: divide by the sum over positions so each frame's map sums to 1":
            e / e.amax((2, 3), keepdim=True),
    }


def _case_map(learner, shape, seed) -> str | None:
    f = _features(shape, seed)
    got = learner(f.clone())
    return compare_tensors(got, spatial_map(f), "g", atol=1e-6, rtol=1e-5, mistakes=_map_mistakes(f))


def _case_map_grad(learner) -> str | None:
    f = _features((2, 3, 4, 4, 2), 11).requires_grad_(True)
    out = learner(f)
    ref_in = f.detach().clone().requires_grad_(True)
    ref = spatial_map(ref_in)
    weights = torch.randn(ref.shape, generator=seeded_generator(12))
    (ref * weights).sum().backward()
    if not isinstance(out, torch.Tensor) or out.shape != ref.shape:
        return compare_tensors(out, ref.detach(), "g")
    if not out.requires_grad:
        return "g is not connected to f's autograd graph (no .detach(), .numpy() or torch.no_grad())"
    (out * weights).sum().backward()
    return compare_gradient(out, ref.detach(), f.grad, ref_in.grad, "the gradient of Σ w·g w.r.t. f")


@register_exercise("08.spatial_map", title="STA's spatial map: squared channel norm, normalised over positions", points=3,
                   solution=spatial_map)
def _check_spatial_map(learner):
    for shape, seed in [((2, 4, 8, 8, 4), 1), ((1, 3, 5, 6, 2), 2), ((3, 1, 16, 4, 3), 3)]:
        yield run_case(f"g for f {list(shape)} -> [N, T, H, W]", _case_map, learner, shape, seed)
    yield side_property(run_case("gradient flows back to f", _case_map_grad, learner))


# --------------------------------------------------------------------------------------------------
# 08.region_scores
# --------------------------------------------------------------------------------------------------
def _g(shape, seed) -> torch.Tensor:
    """A non-negative map ``[N, T, H, W]`` whose frames do NOT each sum to 1 (a spatial map times a frame's mass):
    on maps that do, every frame's band sums already sum to 1 over the regions, so normalising over the regions
    and not normalising at all would give the same (wrong) scores and could not be told apart."""
    g = spatial_map(_features((*shape[:2], 3, *shape[2:]), seed))
    mass = torch.rand(*shape[:2], 1, 1, generator=seeded_generator(seed + 50)) * 3 + 0.5
    return g * mass


def _score_mistakes(g: torch.Tensor, k: int) -> dict:
    n, t, h, w = g.shape
    s = g.new_zeros(n, t, k).index_add_(2, _regions(h, k), g.sum(3))
    cols = g.new_zeros(n, t, k).index_add_(2, torch.arange(w) * k // w, g.sum(2)) if w >= k else None
    out = {
        "normalised across the regions of a frame: STA normalises each region's scores across the FRAMES (dim 1)":
            s / s.sum(2, keepdim=True),
        "the region sums were not normalised: divide each by its sum over the frames": s,
        "a softmax across the frames was used: STA divides by the sum (no exponential)": s.softmax(1),
        "normalised by the largest frame's score: divide by the sum over frames so each region's column sums to 1":
            s / s.amax(1, keepdim=True),
    }
    if cols is not None:
        out["the regions are vertical bands (split along the width): STA cuts the map into HORIZONTAL bands (rows)"] = \
            cols / cols.sum(1, keepdim=True)
    return out


def _case_scores(learner, shape, k, seed) -> str | None:
    g = _g(shape, seed)
    got = learner(g.clone(), k)
    return compare_tensors(got, region_scores(g, k), "S", atol=1e-6, rtol=1e-5, mistakes=_score_mistakes(g, k))


@register_exercise("08.region_scores", title="STA's region scores: band sums of g, normalised across the frames", points=3,
                   solution=region_scores)
def _check_region_scores(learner):
    for shape, k, seed in [((2, 4, 8, 4), 4, 1), ((1, 3, 12, 6), 4, 2), ((2, 5, 6, 5), 2, 3)]:
        yield run_case(f"S for g {list(shape)}, K={k} -> [N, T, K]", _case_scores, learner, shape, k, seed)
    yield run_case("uneven bands: g [2, 4, 6, 4], K=4 (row h in band ⌊h·K/H⌋)", _case_scores, learner, (2, 4, 6, 4), 4, 4)


# --------------------------------------------------------------------------------------------------
# 08.fusion
# --------------------------------------------------------------------------------------------------
def _fusion_mistakes(f: torch.Tensor, s: torch.Tensor) -> list:
    ref = sta_fusion(f, s)
    c = f.shape[2]
    x1, x2 = ref[:, :c], ref[:, c:]
    n, t, _, h, _ = f.shape
    region = _regions(h, s.shape[2])
    worst = F.one_hot(s.argmin(1), t).permute(0, 2, 1)[:, :, region].to(f.dtype)
    return [*{
        "the two halves are swapped: concatenate [best-frame rows, weighted sum] in that order": torch.cat([x2, x1], 1),
        "only the weighted sum: STA also keeps, per region, the rows of the frame with the highest score": x2,
        "only the best frame's rows: STA also keeps the score-weighted sum over frames": x1,
        "the two maps were added: concatenate them along the channels (2C channels)": x1 + x2,
        "the weighted sum was replaced by the plain mean over frames: weight each region by its scores":
            torch.cat([x1, f.mean(1)], 1),
        "the lowest-scoring frame was picked: take argmax over the frames (dim 1)":
            torch.cat([(worst[:, :, None, :, None] * f).sum(1), x2], 1),
        "concatenated along the batch or height: concatenate along the channels (dim 1)": torch.cat([x1, x2], 2),
    }.items(), *[(_band_hint(h, s.shape[2]), _fuse(f, s, rows)) for rows in _other_bands(h, s.shape[2])]]


def _other_bands(h: int, k: int) -> list[torch.Tensor]:
    """Row → band maps a learner may build instead of ``⌊h·K/H⌋`` (``tensor_split`` sizes, ``chunk`` or
    ``repeat_interleave`` of ⌈H/K⌉ rows); those equal to it (K divides H) are left out."""
    right = _regions(h, k)
    split = torch.cat([torch.full((len(part),), i) for i, part in enumerate(torch.arange(h).tensor_split(k))])
    ceil = torch.arange(h) // -(-h // k)
    return [rows for rows in (split, ceil) if not torch.equal(rows, right)]


def _band_hint(h: int, k: int) -> str:
    sizes = torch.bincount(_regions(h, k), minlength=k).tolist()
    return (f"the rows were cut into bands of other sizes: row h belongs to band ⌊h·K/H⌋ (here H={h}, K={k}: "
            f"bands of {', '.join(map(str, sizes))} rows)")


def _case_fusion(learner, shape, k, seed) -> str | None:
    f = _features(shape, seed)
    s = region_scores(spatial_map(f), k)
    got = learner(f.clone(), s.clone())
    return compare_tensors(got, sta_fusion(f, s), "fused map", atol=1e-5, mistakes=_fusion_mistakes(f, s))


def _case_fusion_grad(learner) -> str | None:
    f = _features((2, 3, 4, 4, 2), 21).requires_grad_(True)
    s = region_scores(spatial_map(f.detach()), 4)
    out = learner(f, s)
    ref_in = f.detach().clone().requires_grad_(True)
    ref = sta_fusion(ref_in, s)
    w = torch.randn(ref.shape, generator=seeded_generator(22))
    (ref * w).sum().backward()
    if not isinstance(out, torch.Tensor) or out.shape != ref.shape:
        return compare_tensors(out, ref.detach(), "fused map")
    if not out.requires_grad:
        return "the fused map is not connected to f's autograd graph"
    (out * w).sum().backward()
    return compare_gradient(out, ref.detach(), f.grad, ref_in.grad, "the gradient of Σ w·fused w.r.t. f")


@register_exercise("08.fusion", title="STA's fusion: the best frame per region and the score-weighted sum, concatenated",
                   points=4, solution=sta_fusion)
def _check_fusion(learner):
    for shape, k, seed in [((2, 4, 3, 8, 4), 4, 1), ((1, 3, 5, 12, 2), 4, 2), ((2, 5, 2, 6, 3), 2, 3)]:
        yield run_case(f"f {list(shape)}, K={k} -> [N, 2C, H, W]", _case_fusion, learner, shape, k, seed)
    yield run_case("uneven bands: f [2, 4, 3, 6, 3], K=4 (row h in band ⌊h·K/H⌋)", _case_fusion, learner,
                   (2, 4, 3, 6, 3), 4, 4)
    yield side_property(run_case("gradient flows back to f", _case_fusion_grad, learner))


# --------------------------------------------------------------------------------------------------
# question
# --------------------------------------------------------------------------------------------------
register_question(
    "08.predict_region_winner", title="Predict: which frame wins region 2?", when="predict",
    choices={"a": "frame 1 — fully visible",
             "b": "frame 2 — regions 3 and 4 hidden (zero features), regions 1 and 2 as in frame 1",
             "c": "frame 3 — wholly hidden",
             "d": "frame 4 — region 2 hidden, the rest as in frame 1",
             "e": "frames 1 and 2 tie: their region 2 is the same"},
    answer="b",
    explanation=("The spatial map is normalised within each frame: g = energy / (the frame's total energy). Frame 2 has "
                 "the same energy as frame 1 in region 2 but less in total (regions 3 and 4 are empty), so region 2 "
                 "holds a larger share of frame 2's map — its score is higher, and it wins region 2. Frames 3 and 4 "
                 "have zero features in region 2 in this question, so no energy there and a score of 0 (a "
                 "real occluder is not zero: the course's grey, noisy obstacle keeps some energy). STA ranks "
                 "frames by where their energy lies, not by "
                 "how much there is: a frame that is hidden elsewhere is favoured in the regions it still shows."))


register_question(
    "08.interpret_identical_frames", title="Interpret: STA on a tracklet whose frames are all the same", when="interpret",
    tolerance=0.001,
    answer=0.25,
    explanation=("Region scores are normalised across the T = 4 frames, so identical frames share every region equally: "
                 "S(n, k) = 1/4 = 0.25. The score-weighted sum is then the plain mean — TAP — and the 'best' frame is "
                 "any of them, the same features again. On a clip with nothing to choose between, STA has nothing to "
                 "add over temporal average pooling: its advantage can only come from frames that differ, such as "
                 "partly occluded ones. That is what the with/without-occlusion comparison above measures."))
