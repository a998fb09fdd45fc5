"""Mixed attention blocks: CBAM (and its order ablation), BAM, scSE.

Equivalence with timm's ``CbamModule``, the CAM-without-max-pool = SE identity, exact formulas of every
combination (re-computed by hand from the blocks' own weights), gradcheck, shapes, errors, registry.
"""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.testing import assert_close

from attncourse.blocks import BLOCKS, create_block, get_block_spec, list_blocks
from attncourse.blocks.mixed import BAM, CBAM, SCSE, ChannelAttention, SpatialAttention, spatial_descriptor
from attncourse.cost import count_params
from attncourse.models import AttnResNet

MIXED = ["cbam", "cbam_spatial_first", "cbam_parallel", "channel_attention", "cam", "spatial_attention", "sam",
         "bam", "scse", "scse_max"]


def _randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights everywhere and non-trivial BN statistics, so a wrong formula cannot pass by accident
    (the official init zeroes the spatial BN scale, which would make every spatial map a constant 0.5)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return module


def _bn_eval(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


# --------------------------------------------------------------------------- registry and papers
def test_registered_names_placements_and_papers():
    assert set(MIXED) <= set(list_blocks("mixed"))
    for name in MIXED:
        spec = get_block_spec(name)
        assert spec.placement == ("stage" if name == "bam" else "residual"), name
    assert "1807.06521" in get_block_spec("cbam").paper
    assert "1807.06514" in get_block_spec("bam").paper
    assert "1803.02579" in get_block_spec("scse").paper
    assert create_block("cbam", 16).order == "channel_spatial"
    assert create_block("cbam_spatial_first", 16).order == "spatial_channel"
    assert create_block("cbam_parallel", 16).order == "parallel"
    assert create_block("scse", 16).combine == "sum" and create_block("scse_max", 16).combine == "max"
    assert isinstance(create_block("cam", 16), ChannelAttention) and isinstance(create_block("sam", 16), SpatialAttention)


def test_module_docstring_names_the_three_papers():
    import attncourse.blocks.mixed as mixed

    for title, arxiv in [("CBAM: Convolutional Block Attention Module", "1807.06521"),
                         ("BAM: Bottleneck Attention Module", "1807.06514"),
                         ("Concurrent Spatial and Channel Squeeze & Excitation in Fully Convolutional Networks", "1803.02579")]:
        assert title in mixed.__doc__ and arxiv in mixed.__doc__


# --------------------------------------------------------------------------- CBAM vs timm
@pytest.mark.parametrize("channels,reduction,k,hw", [(32, 16, 7, (9, 11)), (16, 4, 3, (6, 6)), (24, 8, 7, (5, 13))])
def test_cbam_equals_timm_cbam_module(channels, reduction, k, hw):
    """timm: MLP without bias, spatial descriptor [mean, max], conv k×k (no bias) + BN, sigmoid gates."""
    from timm.layers.cbam import CbamModule

    ref = _randomize(CbamModule(channels, rd_ratio=1 / reduction, spatial_kernel_size=k), seed=1).eval()
    ours = CBAM(channels, reduction, kernel_size=k, spatial_order="mean_max", bias=False).eval()
    assert ours.channel.reduced_channels == ref.channel.fc1.out_channels == channels // reduction
    mapping = {"channel.fc1.weight": "channel.fc1.weight", "channel.fc2.weight": "channel.fc2.weight",
               "spatial.conv.weight": "spatial.conv.conv.weight"}
    mapping.update({f"spatial.bn.{s}": f"spatial.conv.bn.{s}"
                    for s in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")})
    theirs = ref.state_dict()
    assert set(mapping) == set(ours.state_dict()) and set(mapping.values()) == set(theirs)
    ours.load_state_dict({a: theirs[b] for a, b in mapping.items()})
    x = torch.randn(3, channels, *hw)
    with torch.no_grad():
        assert_close(ours(x), ref(x))
        # the official order [max, mean] is the same block with the conv's two input slices swapped
        official = CBAM(channels, reduction, kernel_size=k, spatial_order="max_mean", bias=False).eval()
        state = {a: theirs[b] for a, b in mapping.items()}
        state["spatial.conv.weight"] = state["spatial.conv.weight"].flip(1)
        official.load_state_dict(state)
        assert_close(official(x), ref(x))


def test_descriptor_order_matters_for_fixed_weights():
    sam = _randomize(SpatialAttention(kernel_size=3), seed=2).eval()
    swapped = SpatialAttention(kernel_size=3, order="mean_max").eval()
    swapped.load_state_dict(sam.state_dict())
    x = torch.randn(2, 5, 6, 7)
    assert not torch.allclose(sam(x), swapped(x))
    with torch.no_grad():
        swapped.conv.weight.copy_(sam.conv.weight.flip(1))
    assert_close(sam(x), swapped(x))


def test_spatial_descriptor_is_channel_max_and_mean():
    x = torch.randn(2, 5, 4, 3)
    d = spatial_descriptor(x)
    assert d.shape == (2, 2, 4, 3)
    assert_close(d[:, 0], x.max(dim=1).values)
    assert_close(d[:, 1], x.mean(dim=1))
    assert_close(spatial_descriptor(x, "mean_max"), d.flip(1))


# --------------------------------------------------------------------------- CAM = SE without the max pool
def _hand_se(x, fc1, fc2):
    z = x.mean((2, 3), keepdim=True)
    return x * torch.sigmoid(F.conv2d(F.relu(F.conv2d(z, fc1.weight, fc1.bias)), fc2.weight, fc2.bias))


@pytest.mark.parametrize("channels,reduction", [(16, 4), (32, 16), (12, 3)])
def test_channel_attention_with_only_avg_pool_is_an_se_block(channels, reduction):
    cam = _randomize(ChannelAttention(channels, reduction, pools=("avg",)), seed=3)
    x = torch.randn(2, channels, 5, 7)
    assert_close(cam(x), _hand_se(x, cam.fc1, cam.fc2))
    if "se" in BLOCKS:  # the package's SE block (blocks/channel.py): same parameter names fc1/fc2
        se = create_block("se", channels, reduction=reduction)
        se.load_state_dict(cam.state_dict())
        assert_close(cam(x), se(x))
        assert count_params(se) == count_params(cam)
    # with both pools it is no longer SE ...
    full = ChannelAttention(channels, reduction)
    full.load_state_dict(cam.state_dict())
    assert not torch.allclose(full(x), cam(x))
    # ... but it is the "se_avgmax" variant of the SE design space
    if "se_avgmax" in BLOCKS:
        avgmax = create_block("se_avgmax", channels, reduction=reduction)
        avgmax.load_state_dict(cam.state_dict())
        assert_close(full(x), avgmax(x))


def test_channel_attention_shares_one_mlp_and_sums_before_the_sigmoid():
    cam = _randomize(ChannelAttention(8, 2), seed=4)
    x = torch.randn(3, 8, 4, 5)
    mlp = lambda z: F.conv2d(F.relu(F.conv2d(z, cam.fc1.weight, cam.fc1.bias)), cam.fc2.weight, cam.fc2.bias)
    mc = torch.sigmoid(mlp(x.mean((2, 3), keepdim=True)) + mlp(x.amax((2, 3), keepdim=True)))
    assert_close(cam.weights(x), mc)
    assert_close(cam(x), x * mc)
    c, cr = 8, 4
    assert count_params(cam) == 2 * c * cr + cr + c  # one MLP for both pools
    assert count_params(ChannelAttention(8, 2, bias=False)) == 2 * c * cr
    assert count_params(ChannelAttention(8, 2, pools=("max",))) == count_params(cam)


# --------------------------------------------------------------------------- CBAM orders, exact formulas
def _sam_by_hand(sam: SpatialAttention, x):
    d = torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], 1)
    return torch.sigmoid(_bn_eval(sam.bn, F.conv2d(d, sam.conv.weight, padding=sam.kernel_size // 2)))


def _cam_by_hand(cam: ChannelAttention, x):
    mlp = lambda z: F.conv2d(F.relu(F.conv2d(z, cam.fc1.weight, cam.fc1.bias)), cam.fc2.weight, cam.fc2.bias)
    return torch.sigmoid(mlp(x.mean((2, 3), keepdim=True)) + mlp(x.amax((2, 3), keepdim=True)))


def test_cbam_orders_follow_their_formulas():
    x = torch.randn(2, 8, 6, 5)
    blocks = {}
    for order in ("channel_spatial", "spatial_channel", "parallel"):
        blocks[order] = b = CBAM(8, 2, kernel_size=3, order=order).eval()
        b.load_state_dict(_randomize(CBAM(8, 2, kernel_size=3), seed=5).state_dict())
    with torch.no_grad():
        b = blocks["channel_spatial"]
        x1 = x * _cam_by_hand(b.channel, x)
        assert_close(b(x), x1 * _sam_by_hand(b.spatial, x1))
        b = blocks["spatial_channel"]
        x1 = x * _sam_by_hand(b.spatial, x)
        assert_close(b(x), x1 * _cam_by_hand(b.channel, x1))
        b = blocks["parallel"]
        assert_close(b(x), x * _cam_by_hand(b.channel, x) * _sam_by_hand(b.spatial, x))
        outs = [blk(x) for blk in blocks.values()]
    assert not torch.allclose(outs[0], outs[1]) and not torch.allclose(outs[0], outs[2])


def test_cbam_attention_maps_are_the_maps_applied():
    b = _randomize(CBAM(8, 2), seed=6).eval()
    x = torch.randn(2, 8, 7, 6)
    maps = b.attention_maps(x)
    assert maps["channel"].shape == (2, 8, 1, 1) and maps["spatial"].shape == (2, 1, 7, 6)
    assert_close(b(x), x * maps["channel"] * maps["spatial"])
    assert ((maps["spatial"] > 0) & (maps["spatial"] < 1)).all()


def test_official_init_makes_the_spatial_map_a_constant_half():
    sam = SpatialAttention(16)
    assert torch.all(sam.bn.weight == 0)
    x = torch.randn(2, 16, 5, 5)
    assert_close(sam.train().weights(x), torch.full((2, 1, 5, 5), 0.5))
    net = AttnResNet(1, 10, attention="cbam", attention_kwargs={"reduction": 4})
    cbams = [m for m in net.modules() if isinstance(m, CBAM)]
    assert len(cbams) == 3 and all(torch.all(m.spatial.bn.weight == 0) for m in cbams)  # survives the backbone's init


# --------------------------------------------------------------------------- BAM
def test_bam_is_x_times_one_plus_sigmoid_of_the_gate_product():
    bam = _randomize(BAM(16, 4), seed=7).eval()
    x = torch.randn(2, 16, 9, 11)
    cg, sg = bam.channel_gate, bam.spatial_gate
    with torch.no_grad():
        z = x.mean((2, 3), keepdim=True)
        mc = F.conv2d(F.relu(_bn_eval(cg[1], F.conv2d(z, cg[0].weight, cg[0].bias))), cg[3].weight, cg[3].bias)
        h = F.relu(_bn_eval(sg[1], F.conv2d(x, sg[0].weight, sg[0].bias)))
        for i in (3, 6):  # two dilated 3×3 convs, d = 4
            assert sg[i].dilation == (4, 4) and sg[i].kernel_size == (3, 3) and sg[i].padding == (4, 4)
            h = F.relu(_bn_eval(sg[i + 1], F.conv2d(h, sg[i].weight, sg[i].bias, padding=4, dilation=4)))
        ms = F.conv2d(h, sg[9].weight, sg[9].bias)
        assert mc.shape == (2, 16, 1, 1) and ms.shape == (2, 1, 9, 11)
        expected = x * (1 + torch.sigmoid(mc * ms))
        assert_close(bam(x), expected)
        maps = bam.attention_maps(x)
        assert_close(maps["channel"], mc)
        assert_close(maps["spatial"], ms)
        assert_close(maps["attention"], torch.sigmoid(mc * ms))
        # the paper's sum (σ(Mc + Ms)) is a different block
        paper = BAM(16, 4, combine="sum").eval()
        paper.load_state_dict(bam.state_dict())
        assert_close(paper(x), x * (1 + torch.sigmoid(mc + ms)))
        assert not torch.allclose(paper(x), expected)


def test_bam_at_init_with_hooks_combines_its_gates_as_one_plus_sigmoid():
    """The freshly built block (official init, training mode): capture the gates with hooks and recompute."""
    bam = BAM(32, 4)
    seen = {}
    bam.channel_gate.register_forward_hook(lambda m, i, o: seen.__setitem__("mc", o))
    bam.spatial_gate.register_forward_hook(lambda m, i, o: seen.__setitem__("ms", o))
    x = torch.randn(4, 32, 8, 8)
    y = bam(x)
    assert seen["mc"].shape == (4, 32, 1, 1) and seen["ms"].shape == (4, 1, 8, 8)
    assert_close(y, x * (1 + torch.sigmoid(seen["mc"] * seen["ms"])))
    ratio = y / x
    assert (ratio > 1).all() and (ratio < 2).all()  # 1 + σ(·) ∈ (1, 2): BAM never suppresses below identity
    assert all(torch.all(m.bias == 0) for m in bam.modules() if isinstance(m, nn.Conv2d))
    bns = [m for m in bam.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 4 and all(torch.all(b.weight == 1) for b in bns)


def test_bam_structure_and_params():
    bam = BAM(64, 16, dilation=4, num_dilated=2)
    cr = 4
    assert bam.reduced_channels == cr
    convs = [m for m in bam.spatial_gate if isinstance(m, nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(1, 1), (3, 3), (3, 3), (1, 1)]
    assert [c.dilation for c in convs] == [(1, 1), (4, 4), (4, 4), (1, 1)]
    channel = 64 * cr + cr + 2 * cr + cr * 64 + 64  # fc1, BN, fc2
    spatial = (64 * cr + cr + 2 * cr) + 2 * (9 * cr * cr + cr + 2 * cr) + (cr + 1)
    assert count_params(bam) == channel + spatial
    assert len([m for m in BAM(64, 16, num_dilated=3).spatial_gate if isinstance(m, nn.Conv2d)]) == 5


def test_bam_is_placed_at_stage_boundaries_not_in_residual_blocks():
    net = AttnResNet(1, 10, attention="bam", attention_kwargs={"reduction": 4}, attention_stages=(1, 2))
    for i, stage in enumerate(net.stages, start=1):
        assert all(not isinstance(b.attention, BAM) for b in stage if hasattr(b, "attention"))
        assert isinstance(stage[-1], BAM) == (i in (1, 2))


def test_bam_batch_one_training_is_a_clear_error_and_eval_works():
    bam = BAM(16, 4)
    with pytest.raises(ValueError, match=r"BAM.*batch of at least 2"):
        bam.train()(torch.randn(1, 16, 5, 5))
    assert bam.eval()(torch.randn(1, 16, 5, 5)).shape == (1, 16, 5, 5)


# --------------------------------------------------------------------------- scSE
def test_scse_sum_and_max_follow_their_formulas():
    s = _randomize(SCSE(8), seed=8)
    m = SCSE(8, combine="max")
    m.load_state_dict(s.state_dict())
    x = torch.randn(3, 8, 5, 6)
    wc = torch.sigmoid(F.conv2d(F.relu(F.conv2d(x.mean((2, 3), keepdim=True), s.fc1.weight, s.fc1.bias)),
                                s.fc2.weight, s.fc2.bias))
    ws = torch.sigmoid(F.conv2d(x, s.spatial.weight, s.spatial.bias))
    assert s.reduced_channels == 4  # r = 2, the paper's
    assert_close(s(x), x * wc + x * ws)
    assert_close(m(x), torch.maximum(x * wc, x * ws))
    assert not torch.allclose(s(x), m(x))
    maps = s.attention_maps(x)
    assert_close(maps["channel"], wc)
    assert_close(maps["spatial"], ws)
    # sum: for a positive input the output lies in (0, 2x); max: in (0, x)
    xp = x.abs() + 0.1
    assert ((s(xp) > 0) & (s(xp) < 2 * xp)).all() and ((m(xp) > 0) & (m(xp) < xp)).all()


def test_scse_cse_part_is_an_se_block():
    s = _randomize(SCSE(16, reduction=4), seed=9)
    x = torch.randn(2, 16, 4, 4)
    wc, _ = s.maps(x)
    assert_close(x * wc, _hand_se(x, s.fc1, s.fc2))
    assert count_params(s) == (16 * 4 + 4) + (4 * 16 + 16) + (16 + 1)


# --------------------------------------------------------------------------- gradients and shapes
def _double_block(name):
    kwargs = {"reduction": 2}
    if name in ("spatial_attention", "sam"):
        kwargs["kernel_size"] = 3
    return _randomize(create_block(name, 6, **kwargs), seed=10).double()


@pytest.mark.parametrize("name", MIXED)
def test_gradcheck_float64(name):
    block = _double_block(name)
    x = torch.randn(2, 6, 5, 4, dtype=torch.float64, requires_grad=True)
    # the max-pools' subgradients are fine: random inputs have no ties
    assert torch.autograd.gradcheck(block.eval(), (x,), eps=1e-6, atol=1e-5)
    assert torch.autograd.gradcheck(block.train(), (x,), eps=1e-6, atol=1e-5)  # BN on batch statistics


@pytest.mark.parametrize("name", MIXED)
def test_parameters_receive_gradients(name):
    block = _randomize(create_block(name, 8, reduction=2), seed=11).train()
    block(torch.randn(3, 8, 6, 5)).square().sum().backward()
    missing = [n for n, p in block.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing, missing


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(MIXED), n=st.integers(1, 3), c=st.sampled_from([4, 8, 12]),
       h=st.integers(1, 9), w=st.integers(1, 9))
def test_shapes_non_square_and_batch_one_in_eval(name, n, c, h, w):
    block = create_block(name, c, reduction=2).eval()
    x = torch.randn(n, c, h, w)
    with torch.no_grad():
        y = block(x)
        maps = block.attention_maps(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    for key, m in maps.items():
        assert m.shape[0] == n and m.dim() == 4
        if key == "channel":
            assert m.shape[1:] == (c, 1, 1)
        elif key == "spatial":
            assert m.shape[1:] == (1, h, w)


@pytest.mark.parametrize("name", ["cbam", "cbam_parallel", "scse", "bam"])
def test_in_the_backbone_on_cluttered_size_inputs(name):
    net = AttnResNet(1, 10, attention=name, attention_kwargs={"reduction": 4}).eval()
    assert net(torch.randn(1, 1, 40, 40)).shape == (1, 10)
    assert net(torch.randn(2, 1, 24, 36)).shape == (2, 10)


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("k", [2, 4, 6, 0, -3])
def test_even_or_non_positive_spatial_kernel_is_a_clear_error(k):
    with pytest.raises(ValueError, match=r"SpatialAttention: kernel_size must be an odd positive int.*3 or 7"):
        SpatialAttention(16, kernel_size=k)
    with pytest.raises(ValueError, match="kernel_size"):
        CBAM(16, 4, kernel_size=k)


@pytest.mark.parametrize("k", [1, 3, 5, 7])
def test_odd_kernels_keep_the_map_size(k):
    assert SpatialAttention(kernel_size=k).weights(torch.randn(2, 3, 5, 4)).shape == (2, 1, 5, 4)


BLOCK_CLASS = {"cbam": "CBAM", "cbam_spatial_first": "CBAM", "cbam_parallel": "CBAM", "channel_attention": "ChannelAttention",
               "cam": "ChannelAttention", "spatial_attention": "SpatialAttention", "sam": "SpatialAttention",
               "bam": "BAM", "scse": "SCSE", "scse_max": "SCSE"}


@pytest.mark.parametrize("name", MIXED)
def test_wrong_channels_and_wrong_rank_raise_naming_the_block_and_shapes(name):
    block = create_block(name, 16, reduction=4).eval()
    cls = BLOCK_CLASS[name]
    with pytest.raises(ValueError, match=rf"^{cls}: expected 16 channels.*got shape \(2, 8, 5, 5\)"):
        block(torch.randn(2, 8, 5, 5))
    with pytest.raises(ValueError, match=rf"^{cls}: expected a 4-D input.*got shape \(16, 5, 5\)"):
        block(torch.randn(16, 5, 5))


def test_bad_options_raise_naming_the_block():
    with pytest.raises(ValueError, match="CBAM: order"):
        CBAM(16, order="sideways")
    with pytest.raises(ValueError, match="SpatialAttention: order"):
        SpatialAttention(order="min_max")
    with pytest.raises(ValueError, match="ChannelAttention: pools"):
        ChannelAttention(16, pools=("avg", "median"))
    with pytest.raises(ValueError, match="ChannelAttention: pools"):
        ChannelAttention(16, pools=())
    with pytest.raises(ValueError, match="ChannelAttention: reduction=32 is larger than channels=16"):
        ChannelAttention(16, 32)
    with pytest.raises(ValueError, match="BAM: combine"):
        BAM(16, combine="concat")
    with pytest.raises(ValueError, match="BAM: dilation"):
        BAM(16, dilation=0)
    with pytest.raises(ValueError, match="SCSE: combine"):
        SCSE(16, combine="mean")


# --------------------------------------------------------------------------- the module's map helpers
def test_digit_masks_find_the_digit_exactly_without_clutter_and_cover_it_with_clutter():
    from attncourse.data import cluttered_digits
    from attncourse.experiments.cbam import digit_masks

    clean = cluttered_digits(n_train=2, n_test=6, n_clutter=0, seed=3)
    digit, clutter = digit_masks(clean, range(6))
    bright = clean.x_test[:, 0] > round(0.25 * 255)
    assert torch.equal(digit, bright) and not clutter.any()
    task = cluttered_digits(n_train=2, n_test=6, seed=4)
    digit, clutter = digit_masks(task, range(6))
    assert digit.any(dim=(1, 2)).all() and not (digit & clutter).any()
    assert (task.x_test[:, 0][digit] > round(0.25 * 255)).all()  # the digit's strokes are bright in the image


def test_spatial_maps_are_the_maps_each_cbam_applied():
    from attncourse.experiments.cbam import map_contrast, spatial_maps

    net = AttnResNet(1, 10, attention="cbam", attention_kwargs={"reduction": 4}).eval()
    _randomize(net, seed=12)
    x = torch.randn(3, 1, 12, 10)
    maps = spatial_maps(net, x)
    assert [tuple(m.shape) for m in maps] == [(3, 1, 12, 10), (3, 1, 6, 5), (3, 1, 3, 3)]
    with torch.no_grad():
        h = net.stem(x)
        block = net.stages[0][0]
        inner = block.conv2(block.act(block.conv1(h)))
        assert_close(maps[0], block.attention.attention_maps(inner)["spatial"])
    flat = torch.full((2, 1, 4, 4), 0.5)
    digit = torch.zeros(2, 8, 8, dtype=torch.bool)
    digit[:, :4] = True
    stats = map_contrast(flat, digit, ~digit)
    assert stats["ratio"] == 1.0 and stats["images_digit_higher"] == 0.0
    ramp = torch.linspace(1, 0, 4).reshape(1, 1, 4, 1).expand(2, 1, 4, 4)  # high at the top, where the "digit" is
    assert map_contrast(ramp, digit, ~digit)["ratio"] > 1.5
