"""CMC and mAP against a brute-force reference: plain Python loops over each query's gallery."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from attncourse.metrics.reid import cmc_map, pairwise_distances, reid_metrics


def brute_force(dist, q_ids, g_ids, q_cams, g_cams, ranks=(1, 5, 10)):
    """The protocol written as directly as possible: one query at a time, a Python sort, explicit counts."""
    dist = dist.tolist()
    hits = {r: 0 for r in ranks}
    aps = []
    for qi in range(len(dist)):
        kept = [(dist[qi][j], j) for j in range(len(g_ids))
                if not (int(g_ids[j]) == int(q_ids[qi]) and int(g_cams[j]) == int(q_cams[qi]))]
        kept.sort(key=lambda t: t[0])  # Python's sort is stable: ties keep gallery order
        correct = [int(g_ids[j]) == int(q_ids[qi]) for _, j in kept]
        if not any(correct):
            continue
        positions = [p + 1 for p, c in enumerate(correct) if c]
        aps.append(sum((i + 1) / p for i, p in enumerate(positions)) / len(positions))
        for r in ranks:
            hits[r] += positions[0] <= r
    n = len(aps)
    out = {f"rank{r}": hits[r] / n if n else float("nan") for r in ranks}
    out["map"] = sum(aps) / n if n else float("nan")
    out["n_queries"] = n
    return out


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], float) and math.isnan(a[k]):
            assert math.isnan(b[k]), k
        else:
            assert a[k] == pytest.approx(b[k], abs=1e-12), k


def test_hand_computed_example():
    # one query (id 0, camera 0); gallery sorted by distance: [id0 cam0 (removed), id1, id0 cam1, id2, id0 cam2]
    dist = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.5]])
    out = reid_metrics(dist, [0], [0, 1, 0, 2, 0], [0], [0, 1, 1, 2, 2])
    # kept ranking: id1, id0, id2, id0 → matches at positions 2 and 4: AP = (1/2 + 2/4) / 2
    assert out["map"] == pytest.approx(0.5)
    assert (out["rank1"], out["rank5"], out["rank10"], out["n_queries"]) == (0.0, 1.0, 1.0, 1)


def test_same_camera_match_is_removed_not_counted_as_a_miss():
    dist = torch.tensor([[0.0, 1.0]])
    out = reid_metrics(dist, [3], [3, 3], [1], [1, 2])  # the nearest is the same camera: it disappears
    assert out["rank1"] == 1.0 and out["map"] == 1.0
    only_same_camera = reid_metrics(dist, [3], [3, 4], [1], [1, 2])
    assert only_same_camera["n_queries"] == 0 and math.isnan(only_same_camera["map"])


def test_ties_are_ranked_in_gallery_order():
    dist = torch.zeros(1, 3)
    assert reid_metrics(dist, [0], [1, 0, 0], [0], [1, 1, 1])["map"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert reid_metrics(dist, [0], [0, 0, 1], [0], [1, 1, 1])["map"] == 1.0


@settings(max_examples=60, deadline=None)
@given(nq=st.integers(1, 12), ng=st.integers(1, 30), n_ids=st.integers(1, 8), n_cams=st.integers(1, 3),
       levels=st.integers(1, 4), seed=st.integers(0, 10_000), chunk=st.sampled_from([1, 3, 1024]))
def test_equals_brute_force_on_random_features_with_ties_and_missing_identities(nq, ng, n_ids, n_cams, levels, seed,
                                                                                   chunk):
    g = torch.Generator().manual_seed(seed)
    # few quantisation levels → many exactly equal distances (ties)
    q = torch.randint(0, levels, (nq, 3), generator=g).float()
    gal = torch.randint(0, levels, (ng, 3), generator=g).float()
    q_ids = torch.randint(0, n_ids + 2, (nq,), generator=g)  # ids n_ids, n_ids+1 never occur in the gallery
    g_ids = torch.randint(0, n_ids, (ng,), generator=g)
    q_cams = torch.randint(0, n_cams, (nq,), generator=g)
    g_cams = torch.randint(0, n_cams, (ng,), generator=g)
    dist = pairwise_distances(q, gal)
    ours = reid_metrics(dist, q_ids, g_ids, q_cams, g_cams, chunk=chunk)
    assert_same(ours, brute_force(dist, q_ids, g_ids, q_cams, g_cams))


def test_identities_missing_from_the_gallery_are_skipped():
    g = torch.Generator().manual_seed(0)
    q, gal = torch.randn(6, 4, generator=g), torch.randn(10, 4, generator=g)
    q_ids = torch.tensor([0, 1, 2, 7, 8, 9])  # 7, 8, 9 are not in the gallery
    g_ids = torch.arange(10) % 3
    cams_q, cams_g = torch.zeros(6, dtype=torch.long), torch.ones(10, dtype=torch.long)
    full = cmc_map(q, gal, q_ids, g_ids, cams_q, cams_g)
    part = cmc_map(q[:3], gal, q_ids[:3], g_ids, cams_q[:3], cams_g)
    assert full["n_queries"] == 3
    assert_same(full, part)


def test_perfect_and_reversed_rankings():
    ids = torch.arange(5)
    cams_q, cams_g = torch.zeros(5, dtype=torch.long), torch.ones(5, dtype=torch.long)
    x = torch.eye(5)
    perfect = cmc_map(x, x, ids, ids, cams_q, cams_g)
    assert perfect["rank1"] == perfect["map"] == 1.0
    worst = reid_metrics(torch.eye(5), ids, ids, cams_q, cams_g, ranks=(1, 4, 5))
    assert worst["rank1"] == 0.0 and worst["rank4"] == 0.0 and worst["rank5"] == 1.0
    assert worst["map"] == pytest.approx(1 / 5)


def test_cosine_distance_and_bad_input():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert torch.allclose(pairwise_distances(a, a, "cosine"), torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="pairwise_distances"):
        pairwise_distances(a, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="metric"):
        pairwise_distances(a, a, "manhattan")
    with pytest.raises(ValueError, match="query_ids"):
        reid_metrics(torch.zeros(2, 3), [0], [0, 1, 2], [0, 0], [0, 0, 0])
