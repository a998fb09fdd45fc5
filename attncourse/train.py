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

from .config import pick_device, seed_everything
from .data import DigitTask, float_images

__all__ = ["History", "fit", "evaluate", "predict", "random_translate", "save_checkpoint", "load_checkpoint", "progress_bar",
           "bf16_supported", "speed_settings"]


@dataclass
class History:
    """Per-epoch metrics returned by :func:`fit`."""

    epoch: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)
    train_acc: list = field(default_factory=list)
    test_loss: list = field(default_factory=list)
    test_acc: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    seconds: list = field(default_factory=list)
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
                f"test acc {self.final_test_acc:.3f}, {sum(self.seconds):.1f}s)")


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


# --------------------------------------------------------------------------- augmentation
def random_translate(x: torch.Tensor, max_shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shift each image in the batch by its own random integer offset in ``[-max_shift, max_shift]`` px.

    Runs on ``x``'s device (``grid_sample`` with zero padding); ``[N, C, H, W] → [N, C, H, W]``.
    """
    if max_shift <= 0:
        return x
    n, _, h, w = x.shape
    shifts = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=generator, device="cpu").to(x.device, torch.float32)
    theta = torch.zeros(n, 2, 3, device=x.device)
    theta[:, 0, 0] = 1
    theta[:, 1, 1] = 1
    theta[:, 0, 2] = -2 * shifts[:, 0] / w  # grid coordinates span [-1, 1]
    theta[:, 1, 2] = -2 * shifts[:, 1] / h
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid.to(x.dtype), mode="nearest", padding_mode="zeros", align_corners=False)


# --------------------------------------------------------------------------- speed settings
def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def bf16_supported(device: torch.device | str) -> bool:
    """Whether ``device`` computes bfloat16 natively, so bf16 autocast is a speed-up and not a slow emulation.

    CUDA: compute capability ≥ 8.0 (Ampere and later). CPU: the ``avx512_bf16`` or ``amx_bf16`` flag (Linux
    ``/proc/cpuinfo``), or ARM's ``bf16`` feature. Anything else (MPS, older CPUs, other OSes): ``False``.
    ``ATTNCOURSE_BF16=0`` or ``1`` overrides the detection.
    """
    forced = os.environ.get("ATTNCOURSE_BF16")
    if forced in {"0", "1"}:
        return forced == "1"
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16", "bf16"})
    return False


def speed_settings(device, amp: bool | None = None, channels_last: bool | None = None) -> dict:
    """The ``amp`` (bf16 autocast) and ``channels_last`` choices :func:`fit` makes on ``device``.

    ``None`` means automatic: bf16 where :func:`bf16_supported`, channels_last on CUDA and CPU.
    """
    device = torch.device(device)
    return {"amp": bf16_supported(device) if amp is None else bool(amp),
            "channels_last": device.type in ("cuda", "cpu") if channels_last is None else bool(channels_last)}


def _autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on ``device`` when ``enabled`` (weights stay float32; losses are computed in float32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled and device.type in ("cuda", "cpu"))


def _memory_format(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


# --------------------------------------------------------------------------- evaluation
@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 512, device=None, amp: bool | None = None,
            channels_last: bool | None = None) -> torch.Tensor:
    """Logits (float32, on the CPU) for every image in ``x`` (uint8 or float), evaluated in eval mode.

    ``amp`` / ``channels_last``: as in :func:`fit` (default automatic). The model is restored to the
    mode it was in.
    """
    device = pick_device(device) if device is not None else next(model.parameters()).device
    speed = speed_settings(device, amp, channels_last)
    was_training = model.training
    model.eval()
    out = []
    try:
        for i in range(0, len(x), batch_size):
            xb = float_images(x[i:i + batch_size].to(device, non_blocking=True))
            with _autocast(device, speed["amp"]):
                out.append(model(_memory_format(xb, speed["channels_last"])).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512, amp: bool | None = None,
             channels_last: bool | None = None) -> tuple[float, float]:
    """``(mean cross-entropy, accuracy)`` of ``model`` on ``(x, y)``."""
    logits = predict(model, x, batch_size, amp=amp, channels_last=channels_last)
    y = y.cpu()
    return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()


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
def fit(model: nn.Module, task: DigitTask, *, epochs: int = 10, batch_size: int = 128, lr: float = 3e-3,
        weight_decay: float = 5e-4, max_shift: int = 2, seed: int = 0, device=None, amp: bool | None = None,
        channels_last: bool | None = None, progress: bool | None = None, checkpoint: str | os.PathLike | None = None,
        desc: str | None = None) -> History:
    """Train ``model`` on ``task`` with AdamW and a one-cycle schedule; evaluate on the test split every epoch.

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
    device = pick_device(device)
    speed = speed_settings(device, amp, channels_last)
    amp, channels_last = speed["amp"], speed["channels_last"]
    gen = seed_everything(seed)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    data = task.to(device)
    n = len(data.x_train)
    steps_per_epoch = math.ceil(n / batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.25)
    history, start_epoch = History(), 0

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
        perm = torch.randperm(n, generator=gen).to(device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            xb = float_images(data.x_train[idx])
            yb = data.y_train[idx]
            xb = random_translate(xb, max_shift, gen)
            with _autocast(device, amp):
                logits = model(_memory_format(xb, channels_last))
                loss = F.cross_entropy(logits.float(), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.detach() * len(idx)
            correct += (logits.detach().argmax(1) == yb).sum()
            bar.update(1)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
        test_loss, test_acc = evaluate(model, data.x_test, data.y_test, batch_size=max(512, batch_size), amp=amp,
                                       channels_last=channels_last)
        history.epoch.append(epoch + 1)
        history.train_loss.append(loss_sum.item() / n)
        history.train_acc.append(correct.item() / n)
        history.test_loss.append(test_loss)
        history.test_acc.append(test_acc)
        history.lr.append(sched.get_last_lr()[0])
        history.seconds.append(seconds)
        bar.set_postfix(loss=f"{history.train_loss[-1]:.3f}", test_acc=f"{test_acc:.3f}", refresh=False)
        if checkpoint is not None:
            save_checkpoint(checkpoint, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                         "scheduler": sched.state_dict(), "history": history.as_dict(),
                                         "epoch": epoch + 1, "epochs": epochs, "generator": gen.get_state()})
    bar.close()
    model.eval()
    return history
