import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from attncourse.data import long_range_pairs, multiscale_digits
from attncourse.models import AttnResNet
from attncourse.train import History, evaluate, fit, load_checkpoint, predict, random_translate, save_checkpoint


@pytest.fixture(scope="module")
def easy_task():
    # large, clean digits: a tiny CNN should beat chance (10 %) clearly in a few CPU epochs
    return multiscale_digits(600, 200, canvas=24, digit_size=(16, 22), noise=0.0, seed=1)


def small_net(task):
    return AttnResNet(task.in_channels, task.num_classes, widths=(8, 16, 32))


def test_training_really_learns(easy_task):
    torch.manual_seed(0)
    net = small_net(easy_task)
    _, acc_before = evaluate(net, easy_task.x_test, easy_task.y_test)
    hist = fit(net, easy_task, epochs=8, batch_size=64, lr=5e-3, progress=False)
    assert isinstance(hist, History) and hist.epoch == list(range(1, 9))
    assert hist.train_loss[-1] < hist.train_loss[0]
    assert hist.final_test_acc > 0.3 > acc_before + 0.1  # well above chance (0.1) and above the untrained net
    assert predict(net, easy_task.x_test[:5]).shape == (5, 10)


def test_fit_validates_arguments(easy_task):
    with pytest.raises(ValueError, match="epochs"):
        fit(small_net(easy_task), easy_task, epochs=0)
    with pytest.raises(ValueError, match="batch_size"):
        fit(small_net(easy_task), easy_task, epochs=1, batch_size=0)


def test_random_translate_shifts_each_sample_by_an_integer():
    x = torch.zeros(16, 1, 9, 9)
    x[:, :, 4, 4] = 1.0
    y = random_translate(x, 2, torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    assert torch.all(y.sum(dim=(1, 2, 3)) == 1)  # the single pixel survives, unblurred
    pos = y[:, 0].flatten(1).argmax(1)
    rows, cols = pos // 9, pos % 9
    assert rows.sub(4).abs().max() <= 2 and cols.sub(4).abs().max() <= 2
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 1  # per-sample shifts
    assert torch.equal(random_translate(x, 0), x)


def test_checkpoint_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path, easy_task, monkeypatch):
    from attncourse.objectives import Classification

    torch.manual_seed(0)
    reference = small_net(easy_task)
    h_ref = fit(reference, easy_task, epochs=3, batch_size=128, progress=False)

    ckpt = tmp_path / "run.pt"
    real_evaluate, calls = Classification.evaluate, []

    def crash_in_epoch_3(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("simulated crash")
        return real_evaluate(*args, **kwargs)

    torch.manual_seed(0)
    net = small_net(easy_task)
    monkeypatch.setattr(Classification, "evaluate", crash_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        fit(net, easy_task, epochs=3, batch_size=128, progress=False, checkpoint=ckpt)
    monkeypatch.setattr(Classification, "evaluate", real_evaluate)
    assert load_checkpoint(ckpt)["epoch"] == 2

    resumed = small_net(easy_task)  # a fresh process would start from new weights; the checkpoint restores them
    h = fit(resumed, easy_task, epochs=3, batch_size=128, progress=False, checkpoint=ckpt)
    assert h.epoch == [1, 2, 3]
    torch.testing.assert_close(h.train_loss, h_ref.train_loss)
    for p, q in zip(resumed.state_dict().values(), reference.state_dict().values()):
        torch.testing.assert_close(p, q)
    with pytest.raises(ValueError, match="3 epochs, not 5"):
        fit(small_net(easy_task), easy_task, epochs=5, progress=False, checkpoint=ckpt)


def test_interrupted_write_leaves_the_old_checkpoint_intact(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"step": 1, "w": torch.ones(3)})
    # a child process starts writing a huge checkpoint and is killed mid-write
    code = textwrap.dedent(f"""
        import os, threading, torch
        from attncourse.train import save_checkpoint
        real_save = torch.save
        def slow_save(obj, f):
            f.write(b"partial garbage")
            f.flush()
            os._exit(9)  # crash in the middle of writing
        torch.save = slow_save
        save_checkpoint({str(path)!r}, {{"step": 2}})
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert proc.returncode == 9
    assert load_checkpoint(path)["step"] == 1
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "ckpt.pt"]
    assert all(name.endswith(".tmp") for name in leftovers)  # only a temp file, never a torn ckpt.pt
    # an exception during the write cleans its temp file and keeps the old checkpoint
    class Boom:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")
    with pytest.raises(RuntimeError):
        save_checkpoint(path, {"bad": Boom()})
    assert load_checkpoint(path)["step"] == 1
    assert len(list(tmp_path.iterdir())) == 1 + len(leftovers)


def test_speed_settings_follow_bf16_detection_and_explicit_choices(monkeypatch):
    import attncourse.speed as speed_mod
    from attncourse.train import bf16_supported, speed_settings

    monkeypatch.delenv("ATTNCOURSE_BF16", raising=False)
    monkeypatch.setattr(speed_mod, "_cpu_flags", lambda: {"avx2", "avx512_bf16"})
    assert bf16_supported("cpu") and speed_settings("cpu") == {"amp": True, "channels_last": True}
    monkeypatch.setattr(speed_mod, "_cpu_flags", lambda: {"avx2", "avx512f"})
    assert not bf16_supported("cpu") and speed_settings("cpu") == {"amp": False, "channels_last": True}
    monkeypatch.setenv("ATTNCOURSE_BF16", "1")  # the override wins over detection
    assert bf16_supported("cpu")
    assert speed_settings("cpu", amp=False, channels_last=False) == {"amp": False, "channels_last": False}
    monkeypatch.setenv("ATTNCOURSE_BF16", "0")
    assert not bf16_supported("cpu")


def test_fit_records_its_speed_settings(easy_task):
    torch.manual_seed(0)
    hist = fit(small_net(easy_task), easy_task, epochs=1, batch_size=128, amp=False, channels_last=True, progress=False)
    assert hist.settings == {"device": "cpu", "amp_bf16": False, "channels_last": True}


@pytest.mark.parametrize("n_train", [8, 16, 24, 40, 64])
def test_fit_runs_with_very_few_steps(easy_task, n_train):
    """1–5 optimisation steps in all: the one-cycle schedule must not divide by a zero-length phase."""
    from dataclasses import replace

    small = replace(easy_task, x_train=easy_task.x_train[:n_train], y_train=easy_task.y_train[:n_train])
    hist = fit(small_net(small), small, epochs=1, batch_size=8, progress=False)
    assert len(hist.epoch) == 1 and math.isfinite(hist.train_loss[0])


def test_channels_last_training_of_a_model_with_5d_parameters():
    """CondConv / DynamicConv keep their expert kernels as one 5-D parameter, which
    ``model.to(memory_format=torch.channels_last)`` cannot convert; fit converts only the 4-D tensors."""
    from attncourse.models.branch import BranchResNet
    from attncourse.data import multiscale_digits

    task = multiscale_digits(64, 32, seed=0)
    for conv in ("condconv", "dynamic_conv"):
        net = BranchResNet(task.in_channels, task.num_classes, conv=conv)
        assert any(p.dim() == 5 for p in net.parameters())
        hist = fit(net, task, epochs=1, batch_size=32, channels_last=True, progress=False, device="cpu")
        assert math.isfinite(hist.train_loss[0])
        assert all(p.is_contiguous(memory_format=torch.channels_last) for p in net.parameters() if p.dim() == 4)


def test_fit_stops_with_a_clear_error_when_the_loss_becomes_nan():
    """A run whose loss turns NaN must fail, not train on for every epoch and be recorded as a result at chance."""
    import pytest as _pytest
    from torch import nn as _nn

    from attncourse.data import make_task as _make_task
    from attncourse.train import fit as _fit

    class Poisoned(_nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = _nn.Linear(1, 10)

        def forward(self, x):
            return self.fc(x.float().mean((1, 2, 3))[:, None]) * float("nan")

    task = _make_task("cluttered_digits", "smoke")
    with _pytest.raises(FloatingPointError, match="fit: the training loss of poisoned became nan in epoch 1"):
        _fit(Poisoned(), task, epochs=2, batch_size=64, device="cpu", desc="poisoned")
