"""Statistics of attention maps (attncourse.metrics.attention) and module 06's PAM share, on cases whose answer
is known by hand."""
import math

import pytest
import torch

from attncourse.experiments.danet import pam_same_digit_share
from attncourse.metrics.attention import attention_share, cell_labels, mean_by_group, mean_by_region, median_index


def test_attention_share_uniform_equals_chance_and_one_hot_is_one():
    keys = torch.tensor([[True, False, False, True]])                       # [B=1, N=4]
    uniform = torch.full((1, 2, 4), 0.25)
    share, chance = attention_share(uniform, keys)
    assert torch.allclose(share, torch.tensor([0.5, 0.5])) and torch.allclose(chance, torch.tensor([0.5, 0.5]))
    one_hot = torch.tensor([[[0.0, 0, 0, 1], [0, 1, 0, 0]]])
    share, _ = attention_share(one_hot, keys, queries=torch.tensor([[True, True]]))
    assert share.tolist() == [1.0, 0.0]
    share, _ = attention_share(one_hot, keys, queries=torch.tensor([[False, True]]))
    assert share.tolist() == [0.0]


def test_attention_share_rejects_bad_shapes():
    with pytest.raises(ValueError, match="attention_share"):
        attention_share(torch.rand(2, 3, 4), torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="attention_share"):
        attention_share(torch.rand(3, 4), torch.ones(3, 4, dtype=torch.bool))


def test_mean_by_region_and_group():
    maps = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    regions = torch.tensor([[[0, 0], [1, 2]]])
    got = mean_by_region(maps, regions, {0: "background", 1: "digit", 2: "occluder", 3: "none"})
    assert got["background"] == 1.5 and got["digit"] == 3.0 and got["occluder"] == 4.0 and math.isnan(got["none"])
    values = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0]])
    table = mean_by_group(values, torch.tensor([1, 1, 0]), 3)
    assert table[0].tolist() == [5.0, 5.0] and table[1].tolist() == [2.0, 1.0] and table[2].isnan().all()
    with pytest.raises(ValueError, match="mean_by_group"):
        mean_by_group(values, torch.tensor([0, 1, 3]), 3)


def test_median_index_picks_the_middle_never_nan():
    assert median_index(torch.tensor([5.0, 1.0, 3.0])) == 2
    assert median_index(torch.tensor([4.0, float("nan"), 1.0, 2.0, 3.0])) == 3   # the lower median of 1, 2, 3, 4: 2
    with pytest.raises(ValueError):
        median_index(torch.tensor([float("nan")]))


def test_cell_labels_majority():
    y = torch.zeros(1, 4, 4, dtype=torch.long)
    y[0, :2, :2] = 3                      # the top-left cell all class 3
    y[0, :2, 2] = 5                       # the top-right cell half class 5: no majority
    y[0, 2:, 2:] = 255                    # ignored pixels count for no class
    assert cell_labels(y, (2, 2), 11).tolist() == [[[3, -1], [0, -1]]]


def test_pam_same_digit_share_on_a_known_scene():
    # 4×4 labels on a 2×2 feature map: cells (0,0) and (1,1) hold digit 2, cell (0,1) digit 7, cell (1,0) background
    y = torch.zeros(1, 4, 4, dtype=torch.long)
    y[0, :2, :2] = 2
    y[0, 2:, 2:] = 2
    y[0, :2, 2:] = 7
    attn = torch.full((1, 4, 4), 0.25)
    attn[0, 0] = torch.tensor([0.5, 0.0, 0.0, 0.5])     # cell 0 looks only at the two cells of digit 2
    got = pam_same_digit_share(attn, y)
    # queries: the digit cells 0, 1, 3 (in order); keys of cells 0 and 3: cells 0 and 3; of cell 1: cell 1
    assert got["share"].tolist() == [1.0, 0.25, 0.5]
    assert got["chance"].tolist() == [0.5, 0.25, 0.5]


def test_other_digit_share_on_a_known_image():
    from attncourse.experiments.nonlocal_ import other_digit_share

    images = torch.zeros(1, 1, 2, 4)
    images[0, 0, 0, 0] = 1.0                       # the left digit: one ink cell at (0, 0)
    images[0, 0, 1, 3] = 1.0                       # the right digit: one ink cell at (1, 3)
    attn = torch.zeros(1, 8, 8)
    attn[0, 0, 7] = 0.75                           # query (0, 0) → key (1, 3), the other digit
    attn[0, 0, 0] = 0.25                           # … and a quarter on itself
    attn[0, 1:] = 1 / 8                            # other queries (not on the left digit) uniform: not counted
    got = other_digit_share(attn, images, (2, 4), (2, 4))
    assert got["other_digit"].tolist() == [0.75] and got["own_digit"].tolist() == [0.25]
    assert got["right_half"].tolist() == [0.75]
    assert got["other_digit_chance"].tolist() == [1 / 8] and got["right_half_chance"].tolist() == [0.5]
    assert math.isnan(other_digit_share(attn, torch.zeros(1, 1, 2, 4), (2, 4), (2, 4))["other_digit"][0])
    with pytest.raises(ValueError, match="other_digit_share"):
        other_digit_share(attn, images, (2, 3), (2, 4))


def test_sta_spatial_map_by_region_on_a_known_frame():
    from attncourse.experiments.sta import pixel_regions, spatial_map_by_region

    clear = torch.zeros(1, 1, 1, 2, 2)
    clear[0, 0, 0, 1, 0] = 1.0                     # ink at (1, 0)
    hidden_rows = torch.tensor([[[True, False]]])  # row 0 hidden by the obstacle
    regions = pixel_regions(clear, clear, hidden_rows)
    assert regions.tolist() == [[[[2, 2], [1, 0]]]]
    g = torch.tensor([[[[0.5, 0.3], [0.2, 0.0]]]])  # sums to 1 over the 2×2 cells
    got = spatial_map_by_region(g, regions)
    assert got["occluder"] == pytest.approx(4 * 0.4) and got["ink"] == pytest.approx(0.8)
    assert got["background"] == pytest.approx(0.0) and got["top row"] == pytest.approx(1.6)


def test_explained_share_known_cases():
    from attncourse.metrics.attention import explained_share

    groups = torch.tensor([0, 0, 1, 1])
    by_group = torch.tensor([[1.0, 5.0], [1.0, 5.0], [3.0, 2.0], [3.0, 2.0]])      # all the variation between groups
    assert explained_share(by_group, groups, 2) == pytest.approx(1.0)
    within = torch.tensor([[1.0], [3.0], [1.0], [3.0]])                             # equal group means
    assert explained_share(within, groups, 2) == pytest.approx(0.0)
    half = torch.tensor([[0.0], [2.0], [4.0], [6.0]])       # means 1 and 5: between 4·4 = 16, total 20
    assert explained_share(half, groups, 2) == pytest.approx(16 / 20)


def test_pixel_auc_known_cases():
    from attncourse.experiments.cbam import pixel_auc

    digit = torch.tensor([[[True, False], [False, False]]]).expand(2, 2, 2).clone()
    clutter = torch.tensor([[[False, True], [True, False]]]).expand(2, 2, 2).clone()
    maps = torch.tensor([[[[1.0, 0.0], [0.5, 0.0]]], [[[0.5, 0.5], [1.0, 0.0]]]])     # [2, 1, 2, 2], no resizing
    got = pixel_auc(maps, digit, clutter)
    assert got.tolist() == [1.0, 0.25]            # image 2: 0.5 ties 0.5 (half) and loses to 1.0
    with pytest.raises(ValueError, match="pixel_auc"):
        pixel_auc(maps[:, 0], digit, clutter)


def test_shared_top_marks_queries_looking_at_the_common_cell():
    from attncourse.experiments.danet import _shared_top

    cells = torch.tensor([[3, 3, 3, 0]])
    attn = torch.tensor([[[0.1, 0.7, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1], [0.7, 0.1, 0.1, 0.1], [1.0, 0, 0, 0]]])
    assert _shared_top(attn, cells).tolist() == [[1.0, 1.0, 0.0, 0.0]]    # two of three digit queries share key 1
