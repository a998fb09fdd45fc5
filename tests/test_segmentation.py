"""The segmentation kind: loss with the ignore index and upsampling, augmentation that moves the labels,
streamed evaluation equal to a whole-split reference, and fit end to end on a tiny digit_scenes task."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attncourse.data.digit_scenes import IGNORE_INDEX, digit_scenes
from attncourse.metrics.segmentation import confusion_matrix, iou_per_class, mean_iou, pixel_accuracy
from attncourse.objectives import get_objective
from attncourse.train import fit


@pytest.fixture(scope="module")
def tiny():
    return digit_scenes(96, 24, seed=0)


@pytest.fixture(scope="module")
def objective():
    return get_objective("segmentation")


class Oracle(nn.Module):
    """Outputs the truth one-hot (from a lookup of the test images), at 1/`stride` resolution when asked."""

    def __init__(self, task, stride=1):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.table = {bytes(x.numpy().tobytes()): y for x, y in zip(task.x_test, task.y_test)}
        self.stride = stride

    def forward(self, x):
        ys = [self.table[bytes((x[i] * 255).round().to(torch.uint8).numpy().tobytes())] for i in range(len(x))]
        y = torch.stack(ys).long()
        y[y == IGNORE_INDEX] = 0
        out = F.one_hot(y, 11).permute(0, 3, 1, 2).float() * 10 + self.w
        return out[..., ::self.stride, ::self.stride] if self.stride > 1 else out


def test_the_kind_is_registered(objective, tiny):
    assert objective.kind == "segmentation" == tiny.kind and objective.metric == "miou"


def test_loss_is_cross_entropy_over_non_ignored_pixels_after_upsampling(objective):
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 11, (2, 8, 8), generator=g).to(torch.uint8)
    y[0, :4] = IGNORE_INDEX
    coarse = torch.randn(2, 11, 4, 4, generator=g)
    up = F.interpolate(coarse, size=(8, 8), mode="bilinear", align_corners=False)
    keep = y != IGNORE_INDEX
    manual = -up.log_softmax(1).gather(1, y.long().clamp(max=10)[:, None])[:, 0][keep].mean()
    assert objective.loss(coarse, y).item() == pytest.approx(manual.item(), rel=1e-5)
    hits, count = objective.train_hits(coarse, y)
    assert count == int(keep.sum()) and int(hits) == int((up.argmax(1) == y.long())[keep].sum())
    everything_ignored = torch.full_like(y, IGNORE_INDEX)
    coarse.requires_grad_(True)
    loss = objective.loss(coarse, everything_ignored)
    loss.backward()
    assert loss.item() == 0 and torch.isfinite(coarse.grad).all()


def test_augmentation_moves_the_labels_with_the_image(objective, tiny):
    x = tiny.float_images(tiny.x_train[:16])
    y = tiny.y_train[:16]
    xs, ys = objective.augment(x, y, 3, torch.Generator().manual_seed(1))
    assert xs.shape == x.shape and ys.shape == y.shape and ys.dtype == y.dtype
    assert not torch.equal(xs, x)
    assert set(ys.unique().tolist()) <= set(y.unique().tolist()) | {0}
    for i in range(16):  # find each sample's shift from the image, then check the labels moved by the same
        found = False
        for dy in range(-3, 4):
            for dx in range(-3, 4):
                shifted = torch.zeros_like(x[i, 0])
                shifted[max(dy, 0):48 + min(dy, 0), max(dx, 0):48 + min(dx, 0)] = \
                    x[i, 0][max(-dy, 0):48 + min(-dy, 0), max(-dx, 0):48 + min(-dx, 0)]
                if torch.equal(shifted, xs[i, 0]):
                    lab = torch.zeros_like(y[i])
                    lab[max(dy, 0):48 + min(dy, 0), max(dx, 0):48 + min(dx, 0)] = \
                        y[i][max(-dy, 0):48 + min(-dy, 0), max(-dx, 0):48 + min(-dx, 0)]
                    assert torch.equal(lab, ys[i])
                    found = True
        assert found
    assert objective.augment(x, y, 0, None)[1] is y


def test_evaluate_streams_to_the_whole_split_reference(objective, tiny):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 11, 3, padding=1), nn.AvgPool2d(4)).eval()  # a coarse, random model
    got = objective.evaluate(model, tiny, batch_size=7, amp=False, channels_last=False)
    with torch.no_grad():
        logits = F.interpolate(model(tiny.float_images(tiny.x_test)), size=(48, 48), mode="bilinear", align_corners=False)
    y = tiny.y_test.long()
    pred = logits.argmax(1)
    cm = confusion_matrix(pred, y, 11)
    assert got["miou"] == pytest.approx(mean_iou(cm), abs=1e-12)
    assert got["pixel_accuracy"] == pytest.approx(pixel_accuracy(cm), abs=1e-12)
    assert got["loss"] == pytest.approx(F.cross_entropy(logits, y, ignore_index=IGNORE_INDEX).item(), rel=1e-5)
    for size, name in ((1, "small"), (2, "large")):
        mask = tiny.size_test == size
        iou = iou_per_class(confusion_matrix(pred[mask], y[mask], 11))[1:]
        expected = float(iou[~iou.isnan()].mean())
        assert got[f"digit_pixel_miou_{name}"] == pytest.approx(expected, abs=1e-12)
        scene = (tiny.size_test == size) | (tiny.size_test == 0)  # the other size's digit pixels left out
        iou = iou_per_class(confusion_matrix(pred[scene], y[scene], 11))[1:]
        assert got[f"scene_miou_{name}"] == pytest.approx(float(iou[~iou.isnan()].mean()), abs=1e-12)
        assert got[f"accuracy_{name}"] == pytest.approx(float((pred[mask] == y[mask]).double().mean()), abs=1e-12)
    assert len(got["iou"]) == 11


@pytest.mark.parametrize("stride", [1, 4])
def test_a_perfect_model_scores_one(objective, tiny, stride):
    got = objective.evaluate(Oracle(tiny, stride), tiny, batch_size=10, amp=False, channels_last=False)
    if stride == 1:
        assert got["miou"] == 1.0 and got["pixel_accuracy"] == 1.0
        assert got["scene_miou_large"] == got["scene_miou_small"] == got["digit_pixel_miou_large"] == 1.0
    else:  # a 4× coarser map loses the thin parts: still far above chance, below perfect
        assert 0.3 < got["miou"] < 1.0


def tiny_fcn():
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.Conv2d(32, 32, 3, padding=2, dilation=2), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.Conv2d(32, 11, 1))


def test_fit_trains_a_segmentation_model_end_to_end(tiny):
    torch.manual_seed(0)
    model = tiny_fcn()
    hist = fit(model, tiny, epochs=4, batch_size=16, lr=1e-2, progress=False, device="cpu", seed=0)
    assert hist.metric == "miou" and len(hist.test_acc) == 4
    assert hist.test_acc == [m["miou"] for m in hist.test_metrics]
    assert {"loss", "miou", "pixel_accuracy", "iou", "scene_miou_small", "scene_miou_large", "digit_pixel_miou_small",
            "digit_pixel_miou_large"} <= set(hist.test_metrics[-1])
    assert hist.train_loss[-1] < hist.train_loss[0]
    # better than labelling everything background: that scores IoU = (background share) for background and 0
    # for every digit class present, so its mIoU is that share over the number of classes present
    y = tiny.y_test
    present = len(set(y.unique().tolist()) - {IGNORE_INDEX})
    all_background = float((y == 0).sum() / (y != IGNORE_INDEX).sum()) / present
    assert hist.test_acc[-1] > max(all_background, hist.test_acc[0])
    assert all(math.isfinite(v) for v in hist.test_acc)


# --------------------------------------------------------------------------- the models of module 06
from attncourse.data.digit_scenes import FCN_RECEPTIVE_FIELD  # noqa: E402
from attncourse.models.segmentation import HEADS, SegNet, receptive_field  # noqa: E402
from attncourse.train import predict_labels  # noqa: E402


@pytest.mark.parametrize("head", HEADS)
def test_every_head_outputs_logits_at_output_stride_4(head):
    torch.manual_seed(0)
    model = SegNet(1, 11, head).train()
    out = model(torch.rand(3, 1, 48, 48))
    assert out.shape == (3, 11, 12, 12)
    out.sum().backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if "gamma" not in n)


def test_the_receptive_field_is_what_the_task_promises():
    """Measured: the input pixels that influence one output logit (positive weights, so nothing cancels)."""
    model = SegNet(1, 11, "fcn").eval()
    assert receptive_field(model) == FCN_RECEPTIVE_FIELD == 35
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.abs() + 0.01)
    x = torch.rand(1, 1, 64, 64, requires_grad=True)
    model(x)[0, 0, 8, 8].backward()
    rows = x.grad[0, 0].abs().sum(1).nonzero().flatten()
    cols = x.grad[0, 0].abs().sum(0).nonzero().flatten()
    assert int(rows[-1] - rows[0]) + 1 == 35 == int(cols[-1] - cols[0]) + 1
    # PAM and CAM widen it to the whole map: an input pixel far away changes the logit once γ ≠ 0
    danet = SegNet(1, 11, "danet").eval()
    with torch.no_grad():
        for m in danet.modules():
            if hasattr(m, "gamma"):
                m.gamma.fill_(1.0)
    x = torch.rand(1, 1, 64, 64, requires_grad=True)
    danet(x)[0, :, 0, 0].sum().backward()
    assert x.grad[0, 0, 40:, 40:].abs().sum() > 0


def test_danet_at_init_is_two_plain_branches_summed():
    torch.manual_seed(0)
    model = SegNet(1, 11, "danet").eval()
    x = torch.rand(2, 1, 48, 48)
    feats = model.backbone(x)
    plain = [b.project(b.reduce(feats)) for b in model.head.branches]  # attention skipped
    assert_close = torch.testing.assert_close
    assert_close(model(x), model.head.classifier(plain[0] + plain[1]))


def test_bad_input_and_bad_head():
    with pytest.raises(ValueError, match="SegNet"):
        SegNet(1, 11, "fcn")(torch.rand(2, 3, 48, 48))
    with pytest.raises(ValueError, match="head"):
        SegNet(1, 11, "aspp")


def test_predict_labels_and_the_experiment(tiny):
    from attncourse.experiments import get_experiment

    exp = get_experiment("danet_scenes")
    assert list(exp.arms) == ["fcn", "pam", "cam", "danet", "cbam_series", "fcn_two_branch", "cam_paper",
                              "danet_paper"] and exp.task == "digit_scenes"
    model = exp.arms["danet"](tiny)
    labels = predict_labels(model, tiny.x_test[:5])
    assert labels.shape == (5, 48, 48) and labels.dtype == torch.int64 and int(labels.max()) < 11


def test_pictures(tiny):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from attncourse.viz.segmentation import show_channel_affinity, show_pam_attention, show_segmentation

    model = SegNet(1, 11, "danet")
    pred = predict_labels(model, tiny.x_test[:3])
    fig = show_segmentation(tiny.x_test[:3], tiny.y_test[:3], pred, classes=tiny.classes)
    assert len(fig.axes) == 9
    feats = model.head.branches[0].reduce(model.backbone(tiny.float_images(tiny.x_test[:1])))
    s = model.head.branches[0].attention.attention_maps(feats)["position"][0]
    assert len(show_pam_attention(tiny.x_test[0], s, [(2, 3), (9, 9)], (12, 12)).axes) == 2
    c = model.head.branches[1].attention.attention_maps(feats)["channel"][0]
    assert show_channel_affinity(c).axes
    plt.close("all")


def test_size_table_reads_every_runs_final_metrics():
    from attncourse.experiments.danet import size_table

    def run(miou, large, small, scene=None):  # runs recorded before the rename stored miou_large / miou_small
        final = {"miou": miou, "miou_large": large, "miou_small": small, "pixel_accuracy": 0.9}
        if scene is not None:
            final = {"miou": miou, "digit_pixel_miou_large": large, "digit_pixel_miou_small": small,
                     "scene_miou_large": scene[0], "scene_miou_small": scene[1], "pixel_accuracy": 0.9}
        return {"history": {"test_metrics": [{"miou": 0.0}, final]}}

    results = {"arms": {"fcn": {"runs": [run(0.5, 0.6, 0.2), run(0.7, 0.8, 0.4)]},
                        "danet": {"runs": [run(0.9, 0.95, 0.3, scene=(0.5, 0.1))]}}}
    fcn, danet = size_table(results)
    assert fcn["arm"] == "fcn" and fcn["n"] == 2
    assert fcn["miou"] == pytest.approx(0.6) and fcn["miou_std"] == pytest.approx(0.1414, abs=1e-4)
    assert fcn["digit_pixel_miou_large"] == pytest.approx(0.7) and fcn["digit_pixel_miou_small"] == pytest.approx(0.3)
    assert math.isnan(fcn["scene_miou_large"]) and "miou_large" not in fcn  # not recorded then, and no old name
    assert danet["digit_pixel_miou_large"] == 0.95 and danet["digit_pixel_miou_large_std"] == 0.0
    assert danet["scene_miou_large"] == 0.5 and danet["scene_miou_small"] == 0.1


def test_size_effects_pair_the_seeds_and_say_the_interval_is_over_seeds_only():
    from attncourse.experiments.danet import size_effects

    def run(seed, large, small):
        return {"seed": seed, "history": {"test_metrics": [{"miou": 0.0},
                                                           {"scene_miou_large": large, "scene_miou_small": small}]}}

    results = {"experiment": "toy", "arms": {
        "add": {"runs": [run(0, 0.90, 0.70), run(1, 0.88, 0.72), run(2, 0.89, 0.74)]},
        "aff": {"runs": [run(2, 0.95, 0.60), run(0, 0.94, 0.55), run(1, 0.95, 0.57), run(3, 0.99, 0.99)]}}}
    large, small = size_effects(results, "aff", "add")
    assert large["metric"] == "scene_miou_large" and large["n"] == 3          # seed 3 has no partner
    assert large["per_seed"] == pytest.approx([0.04, 0.07, 0.06]) and large["label"] == "clear gain"
    assert small["per_seed"] == pytest.approx([-0.15, -0.15, -0.14]) and small["label"] == "clear loss"
    assert small["ci_low"] < small["delta"] < small["ci_high"] < 0 and small["item_source"] == "none"
    mixed = size_effects({"arms": {"a": {"runs": [run(0, 0.5, 0.5), run(1, 0.6, 0.4)]},
                                   "b": {"runs": [run(0, 0.6, 0.5), run(1, 0.5, 0.4)]}}}, "a", "b")
    assert mixed[0]["label"] == "inconclusive" and mixed[1]["delta"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="size_effects: no arm 'iaff'"):
        size_effects(results, "iaff", "add")


@pytest.mark.parametrize("large, small, words", [
    ((0.04, 0.07, 0.06), (-0.15, -0.15, -0.14), "it moves IoU from the small digits to the large one"),
    ((-0.04, -0.07, -0.06), (0.15, 0.15, 0.14), "it moves IoU from the large digit to the small ones"),
    ((0.04, 0.07, 0.06), (0.15, 0.15, 0.14), "it gains on both sizes"),
    ((-0.04, -0.07, -0.06), (-0.15, -0.15, -0.14), "it loses on both sizes"),
    ((0.04, -0.07, 0.06), (-0.15, -0.15, -0.14), None),
])
def test_the_size_sentence_follows_the_labels(large, small, words):
    from attncourse.experiments.danet import size_sentence

    def run(seed, l, s):
        return {"seed": seed, "history": {"test_metrics": [{"scene_miou_large": l, "scene_miou_small": s}]}}

    results = {"arms": {"add": {"runs": [run(k, 0.5, 0.5) for k in range(3)]},
                        "aff": {"runs": [run(k, 0.5 + large[k], 0.5 + small[k]) for k in range(3)]}}}
    text = size_sentence(results, "aff", "add", "AFF", "the plain sum")
    assert text.startswith("By digit size, AFF against the plain sum (IoU points, 95 % interval over 3 seeds only): ")
    assert text.endswith(".") and "-" not in text
    if words:
        assert words in text and text.count("a clear") == 2
    else:                                                  # an inconclusive size claims no direction
        assert "the large digit +1.0 [" in text and "inconclusive;" in text and "moves" not in text
        assert "the small digits −14.7 [" in text and "a clear loss" in text


def test_cam_form_reaches_the_heads_with_cam():
    from attncourse.blocks.dual import ChannelSelfAttention

    def forms(net):
        return [m.form for m in net.modules() if isinstance(m, ChannelSelfAttention)]

    assert forms(SegNet(1, 11, head="cam")) == ["code"] and forms(SegNet(1, 11, head="danet")) == ["code"]
    assert forms(SegNet(1, 11, head="cam", cam_form="paper")) == ["paper"]
    assert forms(SegNet(1, 11, head="danet", cam_form="paper")) == ["paper"]
    with pytest.raises(ValueError, match="SegNet: cam_form"):
        SegNet(1, 11, head="pam", cam_form="paper")
    with pytest.raises(ValueError, match="SegNet: cam_form"):
        SegNet(1, 11, head="cam", cam_form="eq3")


def test_danet_scenes_paper_form_arms_leave_the_recorded_arms_unchanged():
    """The new arms add ``cam_form="paper"``; the recorded arms keep their exact specs (so their job ids)."""
    from attncourse.experiments import arm_spec, get_experiment

    arms = get_experiment("danet_scenes").arms
    for arm in ("fcn", "pam", "cam", "danet", "cbam_series"):
        assert arm_spec(arms[arm]) == f"NetArm(attncourse.segmentation_models.SegNet, {{'head': {arm!r}}})"
    assert arms["cam_paper"].kwargs == {"head": "cam", "cam_form": "paper"}
    assert arms["danet_paper"].kwargs == {"head": "danet", "cam_form": "paper"}


def test_the_two_branch_plain_head_is_danet_without_attention_at_its_parameters():
    """The control for DANet's second conv branch: two plain branches summed, DANet's parameters within 1 %."""
    from attncourse.cost import count_flops, count_params
    from attncourse.experiments import get_experiment

    exp = get_experiment("danet_scenes")
    task = type("T", (), {"in_channels": 1, "num_classes": 11})()
    control, danet, fcn = (exp.arms[a](task) for a in ("fcn_two_branch", "danet", "fcn"))
    assert len(control.head.branches) == len(danet.head.branches) == 2 and len(fcn.head.branches) == 1
    assert all(isinstance(b.attention, nn.Identity) for b in control.head.branches)
    assert abs(count_params(control) / count_params(danet) - 1) < 0.01
    assert count_params(control) / count_params(fcn) - 1 > 0.12  # the second branch is what DANet adds in size
    # the convolutions are DANet's; only the attention's own matrix products (PAM's N×N) are missing
    flops = {name: count_flops(m, (1, 1, 48, 48)) for name, m in (("control", control), ("danet", danet), ("fcn", fcn))}
    assert flops["fcn"] < flops["control"] < flops["danet"]


class PaintOneClass(nn.Module):
    """Paints every pixel of a scene with the class of that scene's large (or small) digit: a model that "finds" the
    digit by labelling the whole image."""

    def __init__(self, task, size: int):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.table = {}
        for x, y, s in zip(task.x_test, task.y_test, task.size_test):
            cls = y[(s == size) & (y != IGNORE_INDEX)]
            self.table[bytes(x.numpy().tobytes())] = int(cls.mode().values) if len(cls) else 0

    def forward(self, x):
        cls = torch.tensor([self.table[bytes((x[i] * 255).round().to(torch.uint8).numpy().tobytes())]
                            for i in range(len(x))])
        return F.one_hot(cls, 11).float()[:, :, None, None].expand(-1, -1, *x.shape[-2:]) * 10 + self.w


@pytest.mark.parametrize("size, name", [(2, "large"), (1, "small")])
def test_painting_the_whole_scene_with_the_digits_class_is_not_a_perfect_size_score(objective, tiny, size, name):
    """The digit-pixel mIoU cannot see false positives on the background: the painting scores 1.0 on it for the
    large digits (one per scene). The scene mIoU counts them: the painting scores the digits' share of the scene."""
    got = objective.evaluate(PaintOneClass(tiny, size), tiny, batch_size=10, amp=False, channels_last=False)
    if name == "large":
        assert got["digit_pixel_miou_large"] > 0.99  # blind to the painted background (labels near edges may differ)
    assert got[f"scene_miou_{name}"] < 0.5
    assert got[f"scene_miou_{name}"] < got[f"digit_pixel_miou_{name}"]
