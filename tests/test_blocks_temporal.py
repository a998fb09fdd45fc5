"""STA and the temporal pooling baselines: equal to loop references, the input contract for [N, T, C, H, W],
gradients, and the inter-frame regulariser."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from attncourse.blocks.temporal import (STA, TEMPORAL_HEADS, TemporalAttentionPool, TemporalAvgPool,
                                        create_temporal_head)

C = 6
HEADS = list(TEMPORAL_HEADS)


def clip(n=2, t=4, h=8, w=3, seed=0, c=C):
    return torch.randn(n, t, c, h, w, generator=torch.Generator().manual_seed(seed))


def sta_reference(x: np.ndarray, k: int):
    """STA written with loops over every index (float64)."""
    n, t, c, h, w = x.shape
    g = np.zeros((n, t, h, w))
    for a in range(n):
        for f in range(t):
            energy = np.array([[sum(x[a, f, d, i, j] ** 2 for d in range(c)) for j in range(w)] for i in range(h)])
            g[a, f] = energy / energy.sum()
    rows_of = [[i for i in range(h) if int(i * k / h) == r] for r in range(k)]
    s = np.array([[[sum(g[a, f, i, j] for i in rows_of[r] for j in range(w)) for r in range(k)] for f in range(t)]
                  for a in range(n)])
    S = s / s.sum(1, keepdims=True)
    x1 = np.zeros((n, c, h, w))
    x2 = np.zeros((n, c, h, w))
    for a in range(n):
        for r in range(k):
            best = max(range(t), key=lambda f: (S[a, f, r], -f))  # the first frame among equal scores
            for i in rows_of[r]:
                x1[a, :, i] = x[a, best, :, i]
                x2[a, :, i] = sum(S[a, f, r] * x[a, f, :, i] for f in range(t))
    return g, S, np.concatenate([x1, x2], axis=1)


@pytest.mark.parametrize("shape,k", [((2, 4, 3, 8, 3), 4), ((1, 3, 2, 6, 2), 4), ((2, 2, 3, 5, 4), 2)])
def test_sta_equals_the_loop_reference(shape, k):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    block = STA(shape[2], regions=k).eval()
    g, S, out = sta_reference(x.numpy(), k)
    maps = block.attention_maps(x)
    assert_close(maps["spatial"], torch.from_numpy(g))
    assert_close(maps["scores"], torch.from_numpy(S))
    assert_close(block(x), torch.from_numpy(out))
    assert block(x).shape == (shape[0], 2 * shape[2], *shape[3:])


def test_regions_are_even_horizontal_bands_when_height_divides():
    from attncourse.blocks.temporal import region_index

    assert region_index(8, 4).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert [len(a) for a in np.array_split(np.arange(12), 4)] == region_index(12, 4).bincount().tolist()


def test_an_occluded_region_scores_low_and_loses_the_pick():
    x = clip(1, 4, 8, 3, seed=2).abs() + 0.5
    x[0, 1, :, 2:4] = 0  # frame 1: region 1 (rows 2-3) blanked, as if occluded
    block = STA(C).eval()
    s = block.attention_maps(x)["scores"][0]
    assert s[1, 1] == 0 and s[:, 1].sum().item() == pytest.approx(1.0)
    out = block(x)[0]
    assert not (out[:C, 2:4] == 0).all()  # the picked rows come from a visible frame
    assert_close(s.sum(0), torch.ones(4))


def test_tap_and_temporal_attention_at_initialisation():
    x = clip()
    assert_close(TemporalAvgPool(C)(x), x.mean(1))
    ta = TemporalAttentionPool(C)
    assert_close(ta(x), x.mean(1))  # zero-initialised scores: uniform weights
    with torch.no_grad():
        ta.score.weight.normal_()
    a = ta.attention_maps(x)["frame_weights"]
    assert_close(a.sum(1), torch.ones(2)) and not torch.allclose(a, torch.full_like(a, 0.25))
    assert_close(ta(x), (a[:, :, None, None, None] * x).sum(1))


# --------------------------------------------------------------------------- the input contract
def make(name, train=False):
    torch.manual_seed(0)
    block = create_temporal_head(name, C).train(train)
    for p in block.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return block


@pytest.mark.parametrize("name", HEADS)
@pytest.mark.parametrize("train", [True, False])
def test_bad_input_is_a_named_value_error(name, train):
    block = make(name, train)
    for x in (torch.randn(2, C, 5, 4), torch.randn(2, 4, C + 1, 5, 4), torch.randn(2, 4, C, 5, 4, 1),
              torch.randn(2, 0, C, 5, 4), torch.randint(0, 3, (2, 4, C, 5, 4))):
        with pytest.raises(ValueError) as err:
            block(x)
        msg = str(err.value)
        assert type(block).__name__ in msg and str(tuple(x.shape)) in msg and "[N, T, C, H, W]" in msg
    with pytest.raises(ValueError, match=type(block).__name__):
        block(torch.randn(2, 4, C, 5, 4).tolist())


def test_float64_into_a_float32_block():
    x = clip().double()
    with pytest.raises(ValueError, match=r"TemporalAttentionPool.*float64.*float32"):
        make("temporal_attention")(x)
    for name in ("tap", "sta"):  # no weights: the float64 answer
        assert_close(make(name)(x).float(), make(name)(x.float()), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", HEADS)
@pytest.mark.parametrize("shape", [(0, 4, C, 8, 3), (1, 1, C, 1, 1), (3, 1, C, 8, 3), (2, 3, C, 2, 5), (1, 5, C, 3, 1)])
@pytest.mark.parametrize("train", [True, False])
def test_empty_batches_one_frame_and_tiny_maps(name, shape, train):
    block = make(name, train)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(3))
    y = block(x)
    assert y.shape == (shape[0], block.out_channels, *shape[3:]) and torch.isfinite(y).all()
    if shape[1] == 1:  # one frame: every head returns that frame (STA: twice)
        assert_close(y[:, :C], x[:, 0])
    if not train and shape[0] > 1:
        assert_close(y, torch.cat([block(x[i:i + 1]) for i in range(shape[0])]))


def test_all_zero_clip_gives_no_nan():
    y = STA(C).eval()(torch.zeros(2, 4, C, 8, 3))
    assert torch.equal(y, torch.zeros(2, 2 * C, 8, 3))


@pytest.mark.parametrize("name", HEADS)
def test_non_contiguous_input_and_autocast(name):
    block = make(name)
    x = clip()
    expected = block(x)
    for variant in (x.permute(0, 1, 2, 4, 3).contiguous().permute(0, 1, 2, 4, 3),
                    torch.cat([x, x], dim=2)[:, :, :C],
                    x.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, (2, 4))):
        assert_close(block(variant), expected, rtol=1e-5, atol=1e-5)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for inp in (x, x.bfloat16()):
            y = block(inp)
            assert y.shape == expected.shape and torch.isfinite(y).all()


@pytest.mark.parametrize("name", HEADS)
def test_float64_gradcheck(name):
    block = make(name).double().eval()
    x = clip(2, 3, 4, 2, seed=4).double().requires_grad_(True)
    assert torch.autograd.gradcheck(block, (x,), eps=1e-6, atol=1e-5, rtol=1e-3)


def test_sta_gradcheck_of_its_scores_and_regulariser():
    block = STA(C).double()
    x = clip(2, 3, 4, 2, seed=5).double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: block.scores(block.spatial_map(v)), (x,), eps=1e-6, atol=1e-5)

    def reg(v):
        torch.manual_seed(0)
        block.train()(v)
        return block.aux_loss

    assert torch.autograd.gradcheck(reg, (x,), eps=1e-6, atol=1e-5)


def test_inter_frame_regulariser_in_training_only():
    x = clip(3, 4, C, 8, 3)
    block = STA(C, reg_weight=2.0)
    block.eval()(x)
    assert block.aux_loss is None
    block.train()
    torch.manual_seed(7)
    block(x)
    g = block.attention_maps(x)["spatial"]
    candidates = [2.0 * (g[:, i] - g[:, j]).flatten(1).norm(dim=1).mean() for i in range(4) for j in range(4) if i != j]
    assert any(torch.isclose(block.aux_loss, c) for c in candidates)  # ‖g_i − g_j‖_F for two distinct frames
    off = STA(C, reg_weight=0.0).train()
    off(x)
    assert off.aux_loss is None


@pytest.mark.parametrize("name", HEADS)
def test_deterministic_and_pictures_change_nothing(name):
    block = make(name, train=True)
    before = copy.deepcopy(block.state_dict())
    x = clip()
    maps = block.attention_maps(x)
    assert block.training and all(torch.equal(v, before[k]) for k, v in block.state_dict().items())
    assert all(torch.isfinite(m.float()).all() for m in maps.values())
    block.eval()
    assert torch.equal(block(x), block(x))


def test_bad_construction():
    with pytest.raises(ValueError, match="unknown temporal head 'lstm'"):
        create_temporal_head("lstm", C)
    with pytest.raises(ValueError, match="STA: regions"):
        STA(C, regions=0)
    with pytest.raises(ValueError, match="STA: reg_weight"):
        STA(C, reg_weight=-1)
