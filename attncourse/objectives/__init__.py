"""Task kinds for the one training loop: what :func:`attncourse.train.fit` needs to know about a task.

``fit`` never branches on the kind of task. It asks the task's :class:`Objective` — found by the task's
``kind`` attribute (``"classification"`` when it has none) — for everything that differs:

==================  ================================================================================
``batches``         the index batches of one epoch (a random permutation; metric learning: P×K)
``steps_per_epoch`` how many batches that is (the learning-rate schedule needs it up front)
``augment``         on-device augmentation of a batch (the labels move with the image where they must)
``loss``            the training loss from the model's output and the labels (float32)
``train_hits``      ``(hits, count)`` for the running training metric (accuracy, pixel accuracy, …)
``evaluate``        a dict of test metrics, holding ``"loss"`` and the kind's primary ``metric``
==================  ================================================================================

Two more things are generic, for every kind:

* **auxiliary losses** — a submodule that sets a tensor attribute ``aux_loss`` during its training forward
  (a regulariser, e.g. STA's inter-frame term) has it added to the loss (:func:`auxiliary_loss`);
* **training progress** — before every optimisation step ``fit`` calls ``set_training_progress(p)`` on each
  submodule that has that method, ``p`` ∈ [0, 1] being the fraction of all steps done (e.g. Dynamic
  Convolution anneals its softmax temperature).

Kinds live in this package, one file each (``segmentation.py``, ``metric.py``, …); :func:`get_objective`
imports ``attncourse.objectives.<kind>`` on first use, and that file calls :func:`register_objective`.
"""
from __future__ import annotations

import importlib
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..augment import translate_batch
from ..speed import autocast, memory_format, speed_settings

__all__ = ["Objective", "Classification", "register_objective", "get_objective", "objective_for", "OBJECTIVES",
           "auxiliary_loss", "progress_modules", "iter_outputs", "translate_batch"]

OBJECTIVES: dict[str, "Objective"] = {}


def register_objective(objective: "Objective") -> "Objective":
    """Make ``objective`` the one used for tasks whose ``kind`` is ``objective.kind``."""
    OBJECTIVES[objective.kind] = objective
    return objective


def get_objective(kind: str) -> "Objective":
    """The objective registered for ``kind``, importing ``attncourse.objectives.<kind>`` if needed."""
    if kind not in OBJECTIVES:
        try:
            importlib.import_module(f"{__name__}.{kind}")
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{kind}":
                raise
    if kind not in OBJECTIVES:
        raise ValueError(f"no objective for task kind {kind!r}; known kinds: {', '.join(sorted(OBJECTIVES))}")
    return OBJECTIVES[kind]


def objective_for(task) -> "Objective":
    """The objective of ``task``: by its ``kind`` attribute, ``"classification"`` when it has none."""
    return get_objective(getattr(task, "kind", "classification"))


def auxiliary_loss(model: nn.Module) -> torch.Tensor | None:
    """The sum of the ``aux_loss`` tensors the model's submodules set in this forward (then cleared), or ``None``."""
    total = None
    for m in model.modules():
        extra = getattr(m, "aux_loss", None)
        if isinstance(extra, torch.Tensor):
            total = extra.float() if total is None else total + extra.float()
            m.aux_loss = None
    return total


def progress_modules(model: nn.Module) -> list:
    """The bound ``set_training_progress`` methods of every submodule that has one."""
    return [m.set_training_progress for m in model.modules() if callable(getattr(m, "set_training_progress", None))]


@torch.no_grad()
def iter_outputs(model: nn.Module, x: torch.Tensor, batch_size: int = 512, *, device=None, amp: bool | None = None,
                 channels_last: bool | None = None) -> Iterator[tuple[slice, object]]:
    """Yield ``(slice, output)`` for consecutive batches of ``x`` (uint8 or float images), in eval mode.

    The output is the model's, computed on ``device`` (default: the model's) under the speed settings; the
    model's mode is restored afterwards. The caller reduces each batch (a confusion matrix, embeddings, …),
    so a dense output never has to fit in memory for the whole split.
    """
    from ..data import float_images

    device = torch.device(device) if device is not None else next(model.parameters()).device
    speed = speed_settings(device, amp, channels_last)
    was_training = model.training
    model.eval()
    try:
        for i in range(0, len(x), batch_size):
            xb = float_images(x[i:i + batch_size].to(device, non_blocking=True))
            with autocast(device, speed["amp"]):
                out = model(memory_format(xb, speed["channels_last"]))
            yield slice(i, i + len(xb)), out
    finally:
        model.train(was_training)


class Objective:
    """What :func:`attncourse.train.fit` needs from a task kind; the defaults are those of classification."""

    kind = "base"
    metric = "accuracy"  # the primary test metric, reported as ``test_acc`` in histories and results

    @staticmethod
    def _batch_starts(n: int, batch_size: int) -> list[int]:
        """Where each batch of ``n`` samples starts. A last piece of a single sample joins the one before it
        (unless ``batch_size`` is 1): BatchNorm cannot train on one sample."""
        starts = list(range(0, n, batch_size))
        if batch_size > 1 and len(starts) > 1 and n - starts[-1] == 1:
            starts.pop()
        return starts

    def steps_per_epoch(self, task, batch_size: int) -> int:
        return len(self._batch_starts(len(task.x_train), batch_size))

    def batches(self, task, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
        """Index batches of one epoch: a random permutation of the training set, cut into ``batch_size`` pieces
        (see :meth:`_batch_starts`)."""
        n = len(task.x_train)
        perm = torch.randperm(n, generator=generator).to(task.x_train.device)
        starts = self._batch_starts(n, batch_size) + [n]
        for start, end in zip(starts, starts[1:]):
            yield perm[start:end]

    def augment(self, x: torch.Tensor, y: torch.Tensor, max_shift: int, generator: torch.Generator):
        """Random translation of the images; the labels are unchanged."""
        return translate_batch(x, max_shift, generator), y

    def loss(self, out, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def train_hits(self, out, y: torch.Tensor) -> tuple[torch.Tensor, int]:
        raise NotImplementedError

    def evaluate(self, model: nn.Module, task, *, batch_size: int = 512, amp: bool | None = None,
                 channels_last: bool | None = None) -> dict:
        raise NotImplementedError

    def item_outcomes(self, model: nn.Module, task, *, batch_size: int = 512, amp: bool | None = None,
                      channels_last: bool | None = None) -> dict | None:
        """The per-item test outcomes behind the primary metric, compactly (see :mod:`attncourse.metrics.effect`),
        or ``None`` for a kind that has none. Effect intervals resample the test items with them."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, metric={self.metric!r})"


class Classification(Objective):
    """One label per image: cross-entropy, accuracy."""

    kind = "classification"
    metric = "accuracy"

    def loss(self, out, y):
        return F.cross_entropy(out.float(), y)

    def train_hits(self, out, y):
        return (out.detach().argmax(1) == y).sum(), y.numel()

    def evaluate(self, model, task, *, batch_size=512, amp=None, channels_last=None):
        loss_sum, hits, n = 0.0, 0, 0
        for where, out in iter_outputs(model, task.x_test, batch_size, amp=amp, channels_last=channels_last):
            y = task.y_test[where].to(out.device)
            loss_sum += F.cross_entropy(out.float(), y, reduction="sum").item()
            hits += (out.argmax(1) == y).sum().item()
            n += y.numel()
        if n == 0:
            return {"loss": float("nan"), "accuracy": float("nan")}
        return {"loss": loss_sum / n, "accuracy": hits / n}

    def item_outcomes(self, model, task, *, batch_size=512, amp=None, channels_last=None):
        """Which test images the model gets right (bit-packed)."""
        from ..metrics.effect import correct_items

        right = [(out.argmax(1) == task.y_test[where].to(out.device)).cpu()
                 for where, out in iter_outputs(model, task.x_test, batch_size, amp=amp, channels_last=channels_last)]
        return correct_items(torch.cat(right).numpy()) if right else None


register_objective(Classification())
