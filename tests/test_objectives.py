"""One training loop for every task kind: fit asks the task's objective, adds auxiliary losses and drives
training-progress hooks, without knowing which kind of task it trains."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attncourse.objectives import (OBJECTIVES, Classification, Objective, auxiliary_loss, get_objective, iter_outputs,
                                   objective_for, register_objective, translate_batch)
from attncourse.train import fit


@dataclass
class ToyTask:
    """A regression task in the shape fit expects: uint8 images, float targets (the mean brightness)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    kind: str = "toy_regression"

    def to(self, device):
        return ToyTask(*(t.to(device) for t in (self.x_train, self.y_train, self.x_test, self.y_test)), self.kind)


class ToyRegression(Objective):
    kind = "toy_regression"
    metric = "mse"

    def __init__(self):
        self.batch_sizes = []

    def loss(self, out, y):
        return F.mse_loss(out.float().squeeze(1), y)

    def train_hits(self, out, y):
        return ((out.detach().float().squeeze(1) - y).abs() < 0.05).sum(), y.numel()

    def batches(self, task, batch_size, generator):
        for idx in super().batches(task, batch_size, generator):
            self.batch_sizes.append(len(idx))
            yield idx

    def evaluate(self, model, task, *, batch_size=512, amp=None, channels_last=None):
        errs = [F.mse_loss(out.float().squeeze(1), task.y_test[where], reduction="sum")
                for where, out in iter_outputs(model, task.x_test, batch_size, amp=amp, channels_last=channels_last)]
        mse = (sum(errs) / len(task.y_test)).item()
        return {"loss": mse, "mse": mse}


def toy_task(n_train=96, n_test=32):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n_train + n_test, 1, 8, 8), generator=g, dtype=torch.uint8)
    y = x.float().div(255).mean(dim=(1, 2, 3))
    return ToyTask(x[:n_train], y[:n_train], x[n_train:], y[n_train:])


class Progress(nn.Module):
    def __init__(self):
        super().__init__()
        self.seen = []

    def set_training_progress(self, p):
        self.seen.append(p)

    def forward(self, x):
        return x


class Penalised(nn.Module):
    """Sets an auxiliary loss in training: a huge weight on it makes training drive the scale to zero."""

    def __init__(self, weight):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.weight = weight

    def forward(self, x):
        if self.training:
            self.aux_loss = self.weight * self.scale.square()
        return x * self.scale


def toy_net(extra=()):
    return nn.Sequential(*extra, nn.Flatten(), nn.Linear(64, 1))


@pytest.fixture()
def toy_objective():
    objective = register_objective(ToyRegression())
    yield objective
    OBJECTIVES.pop("toy_regression", None)


def test_fit_uses_the_objective_of_the_tasks_kind(toy_objective):
    task = toy_task()
    hist = fit(toy_net(), task, epochs=3, batch_size=32, max_shift=0, progress=False, device="cpu")
    assert hist.metric == "mse"
    assert [set(m) for m in hist.test_metrics] == [{"loss", "mse"}] * 3
    assert hist.test_acc == [m["mse"] for m in hist.test_metrics]
    assert toy_objective.batch_sizes == [32, 32, 32] * 3  # its batches, not a copy of the classification loop's
    assert hist.test_acc[-1] < hist.test_acc[0]  # it learns the regression


def test_auxiliary_losses_are_added_and_cleared(toy_objective):
    task = toy_task()
    torch.manual_seed(0)
    free, penalised = Penalised(0.0), Penalised(100.0)
    h_free = fit(toy_net([free]), task, epochs=4, batch_size=32, lr=0.3, max_shift=0, progress=False, device="cpu")
    h_pen = fit(toy_net([penalised]), task, epochs=4, batch_size=32, lr=0.3, max_shift=0, progress=False, device="cpu")
    assert h_pen.train_loss[0] > 10 > h_free.train_loss[0]  # the reported loss includes 100·scale²
    assert penalised.aux_loss is None  # consumed by the step that used it

    model = toy_net([Penalised(2.0)]).train()
    model(torch.rand(4, 1, 8, 8))
    assert auxiliary_loss(model).item() == pytest.approx(2.0)
    assert auxiliary_loss(model) is None  # each forward's term is added once


def test_training_progress_runs_from_zero_towards_one_once_per_step(toy_objective):
    hook = Progress()
    fit(toy_net([hook]), toy_task(), epochs=2, batch_size=32, max_shift=0, progress=False, device="cpu")
    assert hook.seen == [i / 6 for i in range(6)]


def test_resumed_training_continues_progress_where_it_stopped(toy_objective, tmp_path):
    hook = Progress()
    ckpt = tmp_path / "ckpt.pt"
    fit(toy_net([hook]), toy_task(), epochs=1, batch_size=32, max_shift=0, progress=False, device="cpu")
    hook2 = Progress()
    net = toy_net([hook2])
    fit(net, toy_task(), epochs=2, batch_size=32, max_shift=0, progress=False, device="cpu", checkpoint=ckpt)
    resumed = Progress()
    fit(toy_net([resumed]), toy_task(), epochs=2, batch_size=32, max_shift=0, progress=False, device="cpu",
        checkpoint=ckpt)
    assert hook2.seen == [i / 6 for i in range(6)] and resumed.seen == []  # finished: nothing left to run


def test_kind_lookup():
    assert isinstance(objective_for(object()), Classification)  # no kind: classification
    with pytest.raises(ValueError, match="no objective for task kind 'astrology'"):
        get_objective("astrology")


def test_translate_batch_moves_every_frame_of_a_tracklet_together():
    x = torch.zeros(3, 4, 1, 9, 9)
    x[..., 4, 4] = 1
    g = torch.Generator().manual_seed(1)
    y = translate_batch(x, 2, g)
    assert y.shape == x.shape
    for sample in y:
        where = [tuple(torch.nonzero(frame[0]).tolist()[0]) for frame in sample]
        assert len(set(where)) == 1  # one shift per tracklet


@pytest.mark.parametrize("n, batch", [(65, 64), (129, 64), (1, 64), (64, 64), (66, 64), (2, 1)])
def test_batches_cover_the_training_set_once_and_never_leave_one_sample_alone(n, batch):
    from types import SimpleNamespace

    task = SimpleNamespace(x_train=torch.zeros(n, 1, 2, 2))
    obj = Classification()
    got = list(obj.batches(task, batch, torch.Generator().manual_seed(0)))
    assert sorted(torch.cat(got).tolist()) == list(range(n))
    assert len(got) == obj.steps_per_epoch(task, batch)
    assert n == 1 or batch == 1 or all(len(b) > 1 for b in got)
    assert batch > 1 or all(len(b) == 1 for b in got)   # batch 1 asked for is batch 1 given


def test_fit_trains_an_sk_network_when_the_last_batch_would_hold_one_sample():
    from attncourse.models.branch import BranchResNet
    from attncourse.data import cluttered_digits

    task = cluttered_digits(n_train=65, n_test=8, seed=0)
    torch.manual_seed(0)
    hist = fit(BranchResNet(1, 10, conv="sk"), task, epochs=1, batch_size=64, seed=0, device="cpu", progress=False)
    assert len(hist.train_loss) == 1
