"""Training: ``fit`` with the whole dataset resident on the device, plus evaluation and checkpoints.

Speed choices (measured in ``benchmarks/train_throughput.py``):

* the task's tensors are moved to the device once; batches are index slices, never host→device copies;
* augmentation (random translation) runs on the device, batched, with ``grid_sample``;
* bf16 autocast wherever the hardware computes bf16 natively (:func:`bf16_supported`: CUDA GPUs from
  Ampere on, CPUs with AVX512-BF16 or AMX), float32 elsewhere — the weights stay float32 either way;
* channels_last memory format on CUDA and CPU (faster convolutions in both).

``fit(..., amp=None, channels_last=None)`` picks these automatically; pass ``True``/``False`` to force them.
"""
from __future__ import annotations

import math

import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .augment import random_translate
from .config import pick_device, seed_everything
from .data import DigitTask, float_images
from .objectives import auxiliary_loss, iter_outputs, objective_for, progress_modules
from .speed import (autocast as _autocast, bf16_supported, memory_format as _memory_format, speed_settings,
                    to_channels_last)

__all__ = ["History", "fit", "evaluate", "predict", "predict_labels", "random_translate", "save_checkpoint",
           "load_checkpoint", "progress_bar", "bf16_supported", "speed_settings"]


@dataclass
class History:
    """Per-epoch metrics returned by :func:`fit`."""

    epoch: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)
    train_acc: list = field(default_factory=list)
    test_loss: list = field(default_factory=list)
    test_acc: list = field(default_factory=list)  # the primary test metric per epoch (see ``metric``)
    lr: list = field(default_factory=list)
    seconds: list = field(default_factory=list)
    metric: str = "accuracy"  # what test_acc holds: the task kind's primary metric (accuracy, miou, map, ...)
    test_metrics: list = field(default_factory=list)  # every test metric of every epoch (dicts)
    settings: dict = field(default_factory=dict)  # how it was trained: device, bf16 autocast, channels_last

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def final_test_acc(self) -> float:
        return self.test_acc[-1] if self.test_acc else float("nan")

    @property
    def best_test_acc(self) -> float:
        return max(self.test_acc) if self.test_acc else float("nan")

    def __repr__(self) -> str:
        if not self.epoch:
            return "History(empty)"
        return (f"History({len(self.epoch)} epochs: train loss {self.train_loss[-1]:.3f}, "
                f"test {'acc' if self.metric == 'accuracy' else self.metric} {self.final_test_acc:.3f}, "
                f"{sum(self.seconds):.1f}s)")


# --------------------------------------------------------------------------- progress bars
def _interactive() -> bool:
    if os.environ.get("CI"):
        return False
    try:
        from IPython import get_ipython

        if get_ipython() is not None and "IPKernelApp" in get_ipython().config:
            return True
    except Exception:
        pass
    return sys.stderr.isatty()


def progress_bar(iterable=None, *, total=None, desc=None, enabled=None, leave=True):
    """A tqdm progress bar: widget in Jupyter, text in a terminal, none in CI or when ``enabled=False``.

    ``ATTNCOURSE_PROGRESS`` = ``auto`` (default) | ``text`` | ``off`` overrides the choice.
    """
    mode = os.environ.get("ATTNCOURSE_PROGRESS", "auto").lower()
    if enabled is None:
        enabled = mode != "off" and (mode == "text" or _interactive())
    if mode == "text":
        from tqdm import tqdm
        return tqdm(iterable, total=total, desc=desc, disable=not enabled, leave=leave, file=sys.stdout,
                    mininterval=2.0, ncols=80, ascii=True)
    from tqdm.auto import tqdm
    return tqdm(iterable, total=total, desc=desc, disable=not enabled, leave=leave)


# --------------------------------------------------------------------------- evaluation
@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 512, device=None, amp: bool | None = None,
            channels_last: bool | None = None) -> torch.Tensor:
    """Logits (float32, on the CPU) for every image in ``x`` (uint8 or float), evaluated in eval mode.

    ``amp`` / ``channels_last``: as in :func:`fit` (default automatic). The model is restored to the
    mode it was in.
    """
    device = pick_device(device) if device is not None else None
    out = [o.float().cpu() for _, o in iter_outputs(model, x, batch_size, device=device, amp=amp,
                                                     channels_last=channels_last)]
    return torch.cat(out) if out else torch.empty(0)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512, amp: bool | None = None,
             channels_last: bool | None = None) -> tuple[float, float]:
    """``(mean cross-entropy, accuracy)`` of ``model`` on ``(x, y)``."""
    logits = predict(model, x, batch_size, amp=amp, channels_last=channels_last)
    y = y.cpu()
    return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()


@torch.no_grad()
def predict_labels(model: nn.Module, images: torch.Tensor, size=None) -> torch.Tensor:
    """Per-pixel class labels ``[N, H, W]`` (int64, CPU) for ``images`` (uint8 or float), in eval mode.

    The segmentation counterpart of :func:`predict`: logits upsampled (bilinear) to ``size`` (default the
    images' own), then the arg-max over classes.
    """
    size = tuple(images.shape[-2:]) if size is None else tuple(size)
    out = [F.interpolate(o.float(), size=size, mode="bilinear", align_corners=False).argmax(1).cpu()
           for _, o in iter_outputs(model, images, 256, amp=False, channels_last=False)]
    return torch.cat(out) if out else torch.empty(0, *size, dtype=torch.int64)


# --------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, fsync, then rename.

    A crash mid-write leaves the previous checkpoint untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint`."""
    return torch.load(Path(path), map_location=map_location, weights_only=False)


# --------------------------------------------------------------------------- fit
def _one_cycle(opt, lr: float, total_steps: int):
    """One-cycle schedule with a 25 % warm-up. With very few steps (≤ 5) the warm-up is lengthened so both of
    its phases have at least a fraction of a step (PyTorch divides by their lengths); one step uses ``lr`` flat."""
    if total_steps < 2:
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    pct = min(0.75, max(0.25, 1.5 / total_steps))
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total_steps, pct_start=pct)


def fit(model: nn.Module, task: DigitTask, *, epochs: int = 10, batch_size: int = 128, lr: float = 3e-3,
        weight_decay: float = 5e-4, max_shift: int = 2, seed: int = 0, device=None, amp: bool | None = None,
        channels_last: bool | None = None, progress: bool | None = None, checkpoint: str | os.PathLike | None = None,
        desc: str | None = None, objective=None) -> History:
    """Train ``model`` on ``task`` with AdamW and a one-cycle schedule; evaluate on the test split every epoch.

    One loop for every kind of task: the task's :class:`~attncourse.objectives.Objective` (found by
    ``task.kind``, or given as ``objective``) supplies the batches, augmentation, loss and test metrics —
    classification (accuracy), segmentation (mIoU), metric learning (mAP). The history's ``test_acc`` holds the
    objective's primary metric, named in ``history.metric``; ``history.test_metrics`` holds all of them.
    Submodules' ``aux_loss`` tensors are added to the loss, and ``set_training_progress(p)`` is called on
    submodules that have it before every step (see :mod:`attncourse.objectives`).

    The task's tensors are moved to ``device`` once (default: :func:`~attncourse.config.pick_device`).
    ``amp``: bf16 autocast (default: where the hardware has bf16, :func:`bf16_supported`); ``channels_last``:
    the model and batches in channels_last memory format (default: on CUDA and CPU). Both are recorded
    in the returned history's ``settings``.
    With ``checkpoint=path`` the model, optimiser, schedule and history are saved atomically after
    every epoch, and a later call with the same path resumes after the last finished epoch.
    Returns a :class:`History`.
    """
    if epochs < 1:
        raise ValueError(f"fit: epochs must be >= 1, got {epochs}")
    if batch_size < 1:
        raise ValueError(f"fit: batch_size must be >= 1, got {batch_size}")
    objective = objective if objective is not None else objective_for(task)
    device = pick_device(device)
    speed = speed_settings(device, amp, channels_last)
    amp, channels_last = speed["amp"], speed["channels_last"]
    gen = seed_everything(seed)
    model.to(device)
    if channels_last:
        to_channels_last(model)
    data = task.to(device)
    steps_per_epoch = objective.steps_per_epoch(data, batch_size)
    total_steps = epochs * steps_per_epoch
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = _one_cycle(opt, lr, total_steps)
    progress_hooks = progress_modules(model)
    history, start_epoch = History(metric=objective.metric), 0

    if checkpoint is not None and Path(checkpoint).exists():
        state = load_checkpoint(checkpoint, map_location=device)
        if state.get("epochs", epochs) != epochs:
            raise ValueError(f"fit: checkpoint {str(checkpoint)!r} belongs to a run of {state['epochs']} epochs, "
                             f"not {epochs}; the learning-rate schedule depends on it. Use a new checkpoint path.")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        history = History(**state["history"])
        start_epoch = state["epoch"]
        gen.set_state(state["generator"])

    history.settings = {"device": str(device), "amp_bf16": amp, "channels_last": channels_last}
    bar = progress_bar(total=(epochs - start_epoch) * steps_per_epoch, desc=desc or "train", enabled=progress)
    for epoch in range(start_epoch, epochs):
        model.train()
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        hits = torch.zeros((), device=device)
        seen = counted = 0
        for step, idx in enumerate(objective.batches(data, batch_size, gen)):
            for hook in progress_hooks:
                hook((epoch * steps_per_epoch + step) / total_steps)
            xb, yb = objective.augment(float_images(data.x_train[idx]), data.y_train[idx], max_shift, gen)
            with _autocast(device, amp):
                out = model(_memory_format(xb, channels_last))
            loss = objective.loss(out, yb)
            extra = auxiliary_loss(model)
            if extra is not None:
                loss = loss + extra
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.detach() * len(idx)
            seen += len(idx)
            h, c = objective.train_hits(out, yb)
            hits += h
            counted += c
            bar.update(1)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
        metrics = objective.evaluate(model, data, batch_size=max(512, batch_size), amp=amp, channels_last=channels_last)
        epoch_loss = loss_sum.item() / max(seen, 1)
        if not math.isfinite(epoch_loss):  # a NaN run must fail, not train on and be recorded as a result
            raise FloatingPointError(f"fit: the training loss of {desc or type(model).__name__} became {epoch_loss} in "
                                     f"epoch {epoch + 1} (amp={amp}, channels_last={channels_last}); nothing recorded")
        history.epoch.append(epoch + 1)
        history.train_loss.append(epoch_loss)
        history.train_acc.append(hits.item() / max(counted, 1))
        history.test_loss.append(metrics["loss"])
        history.test_acc.append(metrics[objective.metric])
        history.test_metrics.append(dict(metrics))
        history.lr.append(sched.get_last_lr()[0])
        history.seconds.append(seconds)
        bar.set_postfix(loss=f"{history.train_loss[-1]:.3f}", test=f"{metrics[objective.metric]:.3f}", refresh=False)
        if checkpoint is not None:
            save_checkpoint(checkpoint, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                         "scheduler": sched.state_dict(), "history": history.as_dict(),
                                         "epoch": epoch + 1, "epochs": epochs, "generator": gen.get_state()})
    bar.close()
    model.eval()
    return history
