"""Module 08 exercises: reference solutions equal the package's STA and earn full marks, other correct styles too,
known mistakes earn less with the hint that names them; the predict-first question's answer holds."""
import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from attncourse.blocks.temporal import STA
from attncourse.exercises import QUESTIONS, grade, list_exercises
from attncourse.exercises import m08_sta as ex
from exercise_helpers import assert_scores_less

KEYS = ["08.spatial_map", "08.region_scores", "08.fusion"]


def test_module_registers_three_exercises_and_a_question():
    assert set(KEYS) <= set(list_exercises("08."))
    q = QUESTIONS["08.predict_region_winner"]
    assert q.when == "predict" and q.correct() == "b"


def test_reference_solutions_equal_the_package_block():
    f = torch.randn(2, 4, 6, 8, 4, dtype=torch.float64)
    block = STA(6).eval()
    maps = block.attention_maps(f)
    assert_close(ex.spatial_map(f), maps["spatial"])
    assert_close(ex.region_scores(maps["spatial"], 4), maps["scores"])
    assert_close(ex.sta_fusion(f, maps["scores"]), block(f))


@pytest.mark.parametrize("key", KEYS)
def test_reference_earns_full_marks(key):
    earned, total, results = grade(key, getattr(ex, {"08.spatial_map": "spatial_map", "08.region_scores": "region_scores",
                                                     "08.fusion": "sta_fusion"}[key]))
    assert earned == total, [r for r in results if not r.passed]


# --------------------------------------------------------------------------- other correct styles
def map_mean_over_channels(f):
    e = (f * f).mean(dim=2)
    return e / e.flatten(2).sum(-1)[..., None, None]


def scores_with_loops(g, regions=4):
    n, t, h, w = g.shape
    s = torch.stack([g[:, :, [r for r in range(h) if r * regions // h == k]].sum((2, 3)) for k in range(regions)], dim=2)
    return s / s.sum(1, keepdim=True)


def fusion_with_einsum(f, scores):
    n, t, c, h, w = f.shape
    k = scores.shape[2]
    rows = torch.arange(h) * k // h
    weighted = torch.einsum("nth,ntchw->nchw", scores[:, :, rows], f)
    best = scores.argmax(1)[:, rows]                                        # [N, H]
    picked = torch.stack([f[i, best[i, r], :, r] for i in range(n) for r in range(h)]).reshape(n, h, c, w)
    return torch.cat([picked.permute(0, 2, 1, 3), weighted], 1)


@pytest.mark.parametrize("key, answer", [("08.spatial_map", map_mean_over_channels),
                                         ("08.region_scores", scores_with_loops),
                                         ("08.fusion", fusion_with_einsum)])
def test_other_correct_styles_earn_full_marks(key, answer):
    earned, total, results = grade(key, answer)
    assert earned == total, [r for r in results if not r.passed]


# --------------------------------------------------------------------------- mistakes
def map_not_squared(f):
    e = f.norm(dim=2)
    return e / e.sum((2, 3), keepdim=True)


def map_softmax(f):
    e = f.square().sum(2)
    return e.flatten(2).softmax(2).reshape(e.shape)


def map_over_all_frames(f):
    e = f.square().sum(2)
    return e / e.sum((1, 2, 3), keepdim=True)


def map_detached(f):
    return ex.spatial_map(f.detach())


def scores_over_regions(g, regions=4):
    s = ex.region_scores(g, regions) * 0 + _sums(g, regions)
    return s / s.sum(2, keepdim=True)


def _sums(g, regions):
    h = g.shape[2]
    return g.new_zeros(*g.shape[:2], regions).index_add_(2, torch.arange(h) * regions // h, g.sum(3))


def scores_unnormalised(g, regions=4):
    return _sums(g, regions)


def scores_vertical(g, regions=4):
    w = g.shape[3]
    s = g.new_zeros(*g.shape[:2], regions).index_add_(2, torch.arange(w) * regions // w, g.sum(2))
    return s / s.sum(1, keepdim=True)


def fusion_swapped(f, scores):
    out = ex.sta_fusion(f, scores)
    c = f.shape[2]
    return torch.cat([out[:, c:], out[:, :c]], 1)


def fusion_weighted_only(f, scores):
    return ex.sta_fusion(f, scores)[:, f.shape[2]:]


def fusion_added(f, scores):
    out = ex.sta_fusion(f, scores)
    c = f.shape[2]
    return out[:, :c] + out[:, c:]


def fusion_mean(f, scores):
    c = f.shape[2]
    return torch.cat([ex.sta_fusion(f, scores)[:, :c], f.mean(1)], 1)


def fusion_tensor_split(f, scores):  # bands from tensor_split: right only when K divides H
    n, k = f.shape[0], scores.shape[2]
    best, weighted = [], []
    for i, rows in enumerate(f.tensor_split(k, dim=3)):
        s = scores[:, :, i]
        best.append(rows[torch.arange(n), s.argmax(1)])
        weighted.append((s[:, :, None, None, None] * rows).sum(1))
    return torch.cat([torch.cat(best, 2), torch.cat(weighted, 2)], 1)


def fusion_repeat_interleave(f, scores):  # ⌈H/K⌉ rows per band from repeat_interleave, cut to H
    n, t, c, h, w = f.shape
    k = scores.shape[2]
    band = torch.arange(k).repeat_interleave(-(-h // k))[:h]
    best = F.one_hot(scores.argmax(1), t).permute(0, 2, 1)[:, :, band].to(f.dtype)
    return torch.cat([(best[:, :, None, :, None] * f).sum(1), (scores[:, :, band][:, :, None, :, None] * f).sum(1)], 1)


MISTAKES = [
    ("08.spatial_map", map_not_squared, "SQUARED"),
    ("08.spatial_map", map_softmax, "softmax"),
    ("08.spatial_map", map_over_all_frames, "all frames together"),
    ("08.spatial_map", map_detached, "autograd"),
    ("08.region_scores", scores_over_regions, "across the FRAMES"),
    ("08.region_scores", scores_unnormalised, "not normalised"),
    ("08.region_scores", scores_vertical, "HORIZONTAL"),
    ("08.fusion", fusion_swapped, "swapped"),
    ("08.fusion", fusion_weighted_only, "only the weighted sum"),
    ("08.fusion", fusion_added, "added"),
    ("08.fusion", fusion_mean, "plain mean"),
    ("08.fusion", fusion_tensor_split, "bands of other sizes"),
    ("08.fusion", fusion_repeat_interleave, "bands of other sizes"),
]


@pytest.mark.parametrize("key, learner, hint", MISTAKES, ids=[m[1].__name__ for m in MISTAKES])
def test_mistakes_score_less_with_their_hint(key, learner, hint):
    assert_scores_less(key, learner, hint)


def test_the_predict_first_answer_follows_from_the_package():
    torch.manual_seed(0)
    base = torch.rand(1, 1, 8, 8, 4) + 0.1                        # one frame: C=8, 8×4 map
    f = base.repeat(1, 4, 1, 1, 1)
    f[0, 1, :, 4:] = 0                                            # frame 2: regions 3 and 4 hidden
    f[0, 2] = 0                                                   # frame 3: wholly hidden
    f[0, 3, :, 2:4] = 0                                           # frame 4: region 2 hidden
    scores = STA(8).attention_maps(f)["scores"][0]                # [T, K]
    assert int(scores[:, 1].argmax()) == 1                        # region 2 (index 1) is won by frame 2 (index 1)
    assert scores[2, 1] == 0 and scores[3, 1] == 0 and scores[1, 1] > scores[0, 1]


# The fairness suite (tests/test_exercises_fairness.py) reads these two tables.
CORRECT = {
    "08.spatial_map": {"reference": ex.spatial_map, "mean over channels": map_mean_over_channels},
    "08.region_scores": {"reference": ex.region_scores, "loops": scores_with_loops},
    "08.fusion": {"reference": ex.sta_fusion, "einsum": fusion_with_einsum},
}
_MISTAKES_BY_KEY: dict = {}
for _key, _learner, _hint in MISTAKES:
    _MISTAKES_BY_KEY.setdefault(_key, []).append((_learner, _hint))
MISTAKES_FOR_FAIRNESS = _MISTAKES_BY_KEY
