"""Metric learning through the one fit: P×K batches, batch-hard triplet loss, re-ID evaluation, end to end."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from attncourse.data.digit_tracklets import digit_tracklets
from attncourse.metrics.reid import reid_metrics
from attncourse.objectives import get_objective
from attncourse.objectives.metric import MetricLearning, batch_hard_triplet, pk_groups, reid_evaluate
from attncourse.train import fit


class ToyReID(nn.Module):
    """The convention: (logits, embedding) in training, the embedding in eval."""

    def __init__(self, in_features: int, num_classes: int, dim: int = 32):
        super().__init__()
        self.embed = nn.Sequential(nn.Flatten(2), nn.Linear(in_features, dim))
        self.classifier = nn.Linear(dim, num_classes)

    def forward(self, x):
        e = self.embed(x).mean(1)  # [N, T, D] → [N, D]
        return (self.classifier(e), e) if self.training else e


@pytest.fixture(scope="module")
def tiny():
    return digit_tracklets(384, 192, seed=0)


def test_the_metric_kind_is_found_by_the_task():
    assert isinstance(get_objective("metric"), MetricLearning) and get_objective("metric").metric == "map"


def test_pk_groups_visit_every_identity_once_with_k_each():
    labels = torch.tensor([0] * 5 + [1] * 4 + [2] * 2 + [3] * 4 + [4] * 4)
    g = torch.Generator().manual_seed(0)
    groups = pk_groups(labels, 2, 4, g)
    assert len(groups) == 2  # 5 identities in groups of 2: the last incomplete group is dropped
    seen = []
    for idx in groups:
        ids = labels[idx]
        assert len(idx) == 8 and len(ids.unique()) == 2 and (ids.bincount()[ids.unique()] == 4).all()
        seen += ids.unique().tolist()
    assert len(set(seen)) == 4
    big = [idx for idx in pk_groups(labels, 5, 4, torch.Generator().manual_seed(1))][0]
    assert len(big) == 20 and len(set(big[labels[big] == 0].tolist())) == 4  # ≥ K members: without replacement
    assert torch.equal(torch.cat(pk_groups(labels, 2, 4, torch.Generator().manual_seed(3))),
                       torch.cat(pk_groups(labels, 2, 4, torch.Generator().manual_seed(3))))


@pytest.mark.parametrize("normalize", [False, True])
def test_batch_hard_triplet_equals_loops(normalize):
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(12, 5, generator=g)
    y = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 3, 4, 4, 4])  # identity 3 has no positive: not an anchor
    e = emb / emb.norm(dim=1, keepdim=True) if normalize else emb
    terms = []
    for a in range(12):
        pos = [float((e[a] - e[p]).norm()) for p in range(12) if p != a and y[p] == y[a]]
        neg = [float((e[a] - e[n]).norm()) for n in range(12) if y[n] != y[a]]
        if pos and neg:
            terms.append(max(0.0, max(pos) - min(neg) + 0.3))
    got = batch_hard_triplet(emb, y, 0.3, normalize=normalize).item()
    assert got == pytest.approx(sum(terms) / len(terms), abs=1e-5)
    assert batch_hard_triplet(emb[:3], y[:3]).item() == 0.0  # one identity: no negatives


def test_loss_needs_logits_and_embedding():
    with pytest.raises(ValueError, match=r"\(logits, embedding\)"):
        MetricLearning().loss(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long))


def test_evaluate_equals_the_metrics_on_embeddings(tiny):
    torch.manual_seed(0)
    model = ToyReID(32 * 16, tiny.num_classes).eval()
    out = reid_evaluate(model, tiny, amp=False)  # float32, like the reference below
    with torch.no_grad():
        emb = model(tiny.float_images(tiny.x_test))
    q = tiny.query_test
    ref = reid_metrics(torch.cdist(emb[q], emb[~q]), tiny.y_test[q], tiny.y_test[~q], tiny.cam_test[q],
                       tiny.cam_test[~q])
    for key in ("map", "rank1", "rank5", "rank10", "n_queries"):
        assert out[key] == pytest.approx(ref[key], abs=1e-6), key
    assert out["n_queries"] == int(q.sum()) and out["loss"] >= 0


def test_fit_trains_metric_learning_end_to_end(tiny):
    torch.manual_seed(0)
    model = ToyReID(32 * 16, tiny.num_classes)
    objective = get_objective("metric")
    hist = fit(model, tiny, epochs=4, batch_size=64, lr=3e-3, max_shift=1, progress=False, device="cpu", seed=0)
    assert hist.metric == "map" and len(hist.test_acc) == 4
    assert {"loss", "map", "rank1", "rank5", "rank10"} <= set(hist.test_metrics[-1])
    assert hist.test_acc == [m["map"] for m in hist.test_metrics]
    assert objective.steps_per_epoch(tiny, 64) == tiny.num_classes // 4  # P = 64 // (4 frames · K=4) = 4
    assert hist.train_loss[-1] < hist.train_loss[0]  # identity + triplet loss go down
    assert 0 < hist.test_acc[-1] <= 1


# --------------------------------------------------------------------------- the re-ID models and the experiment
@pytest.mark.parametrize("head", ["tap", "temporal_attention", "sta"])
def test_reid_net_convention_and_shapes(head):
    from attncourse.models.reid import ReIDNet

    torch.manual_seed(0)
    net = ReIDNet(1, 7, head=head)
    x = torch.rand(3, 4, 1, 32, 16)
    logits, emb = net.train()(x)
    assert logits.shape == (3, 7) and emb.shape == (3, 128)
    assert (getattr(net.temporal, "aux_loss", None) is not None) == (head == "sta")
    assert net.eval()(x).shape == (3, 128)
    assert net.frame_features(x).shape == (3, 4, 64, 8, 4)
    assert net.clip_features(x).shape == (3, net.temporal.out_channels, 8, 4)
    with pytest.raises(ValueError, match=r"ReIDNet.*\[N, T, C, H, W\]"):
        net(torch.rand(3, 4, 32, 16))
    with pytest.raises(ValueError, match="ReIDNet: expected 1 channels"):
        net(torch.rand(3, 4, 2, 32, 16))


def test_reid_net_in_channels_last_equals_contiguous():
    from attncourse.models.reid import ReIDNet

    torch.manual_seed(0)
    net = ReIDNet(1, 5, head="sta").eval()
    x = torch.rand(2, 4, 1, 32, 16)
    ref = net(x)
    net.to(memory_format=torch.channels_last)
    torch.testing.assert_close(net(x), ref, rtol=1e-4, atol=1e-4)


def test_sta_experiment_is_registered_and_trains_through_fit(tiny):
    from attncourse.experiments import get_experiment

    exp = get_experiment("sta_tracklets")
    assert list(exp.arms) == ["tap", "temporal_attention", "sta"] and exp.task == "digit_tracklets"
    torch.manual_seed(0)
    model = exp.arms["sta"](tiny)
    assert model.classifier.out_features == tiny.num_classes and model.stem[0][0].in_channels == 1
    hist = fit(model, tiny, epochs=1, batch_size=64, progress=False, device="cpu", seed=0)
    assert hist.metric == "map" and 0 <= hist.test_acc[0] <= 1 and hist.train_loss[0] > 0


def test_one_clip_fails_clearly_in_training():
    from attncourse.models.reid import ReIDNet

    net = ReIDNet(1, 5, head="tap")
    for x in (torch.rand(1, 4, 1, 32, 16), torch.rand(1, 1, 1, 4, 4)):   # BNNeck, and a one-pixel last stage
        with pytest.raises(ValueError, match=r"ReIDNet: .*BNNeck.*batch 1 of shape \(1, "):
            net(x)
    net(torch.rand(2, 1, 1, 4, 4))                     # two clips: two values per channel everywhere
    net.eval()(torch.rand(1, 1, 1, 4, 4))              # eval mode uses the running statistics
