"""``digit_scenes``: a segmentation task — scenes of real digits at two scales, labelled per pixel.

Each ``canvas``² scene holds one *large* digit (``large_size`` px, larger than the receptive field of the
course's FCN) and ``n_small`` *small* digits (``small_size`` px), all drawn from the split's source digits
(:func:`attncourse.data.source_digits`: train scenes only from training source digits, test scenes only
from test source digits). Every digit is pasted into its own layer; the image is the pixel-wise maximum.

Labels, ``uint8 [N, H, W]``, one per pixel (``num_classes = 11``):

* ``0`` — background: no digit reaches ``bg_below`` there;
* ``1 + d`` — digit class ``d``: the brightest digit at that pixel reaches ``ink_above`` and no other digit
  reaches ``bg_below`` there;
* ``255`` (:data:`IGNORE_INDEX`) — ambiguous: the soft edge of a stroke (between ``bg_below`` and
  ``ink_above``) or ink of two digits overlapping.

``size_train`` / ``size_test`` (``uint8 [N, H, W]``) say which digit owns each digit pixel: ``1`` small,
``2`` large, ``0`` elsewhere — the segmentation objective reports mIoU per digit size from it.

``question`` names the module's question, and only changes ``info["attention"]`` and ``info["why"]``: ``"context"``
(module 06: dual attention) or ``"skip_fusion"`` (module 09: AFF fusing a skip connection). The scenes and labels do
not depend on it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from . import (DIGIT_CLASSES, TASKS, Task, _check_common, _require, _resized_all, _task_salt, _to_uint8, float_images,
               source_digits)

__all__ = ["SceneTask", "digit_scenes", "IGNORE_INDEX", "BACKGROUND", "SMALL", "LARGE", "FCN_RECEPTIVE_FIELD"]

IGNORE_INDEX = 255
BACKGROUND = 0
SMALL, LARGE = 1, 2  # values of the size maps
#: theoretical receptive field (px) of the course's FCN (:class:`attncourse.models.segmentation.SegNet`, head
#: included); a test in tests/test_segmentation.py checks it against the network.
FCN_RECEPTIVE_FIELD = 35


def _context_question(large_size, small_size) -> tuple[str, str]:
    """Module 06's question: does attention give the large digit's pixels the context they lack?"""
    rf = FCN_RECEPTIVE_FIELD
    return "dual (position + channel self-attention)", (
        f"Every pixel must be labelled with the class of the whole digit it belongs to. The large digit "
        f"({large_size[0]}-{large_size[1]} px, upscaled so its strokes are thick blobs) is larger than the "
        f"plain FCN's receptive field ({rf} px): a pixel near one end sees only a piece of a stroke, which "
        f"looks the same in several classes (the bottom loop of a 6, 8 or 0), so the FCN can give different "
        f"parts of one digit different classes. Position attention lets each pixel gather features from "
        f"every other pixel of the same digit, and channel attention mixes class-like channels computed "
        f"over the whole map, so the labels of one large digit can agree. The small digits "
        f"({small_size[0]}-{small_size[1]} px) fit inside the receptive field, so context is not what they "
        f"lack; at output stride 4 they cover only a few feature pixels, which limits every arm alike. "
        f"mIoU by digit size (scene_miou_large, scene_miou_small) separates the two effects.")


def _skip_fusion_question(large_size, small_size) -> tuple[str, str]:
    """Module 09's question: is a fixed sum the right way to fuse a skip connection with the deep path?"""
    rf = FCN_RECEPTIVE_FIELD
    return "feature fusion (AFF / iAFF on a skip connection)", (
        f"Every pixel must be labelled with the class of the whole digit it belongs to, and the scene needs two "
        f"kinds of evidence. The large digit ({large_size[0]}-{large_size[1]} px) outgrows the FCN's receptive "
        f"field ({rf} px): its pixels need the deep path's context. The small digits ({small_size[0]}-"
        f"{small_size[1]} px) cover a few cells at output stride 4: their edges need the detail of a skip "
        f"connection from the stride-2 features. A plain sum weighs the two paths 1:1 at every pixel and channel, "
        f"on a large digit's pixels as on a small digit's edge; a learned linear mix (concat + 1x1) chooses one "
        f"weight per channel, the same for every image; AFF chooses the weight per pixel and channel from the two "
        f"inputs, so it can lean on the context in one place and on the detail in another. mIoU by digit size "
        f"(scene_miou_large, scene_miou_small) shows which digits each fusion serves.")


#: ``question`` → the function giving ``info["attention"]`` and ``info["why"]``
QUESTIONS = {"context": _context_question, "skip_fusion": _skip_fusion_question}


@dataclass
class SceneTask(Task):
    """A generated segmentation task: ``uint8`` images ``[N, C, H, W]`` and ``uint8`` label maps ``[N, H, W]``."""

    name: str
    x_train: torch.Tensor  # uint8 [N, 1, H, W]
    y_train: torch.Tensor  # uint8 [N, H, W]: 0 background, 1 + digit, 255 ignore
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    classes: list[str]
    sources_train: torch.Tensor  # int64 [N, k]: indices into load_digits(), -1 where a scene has fewer digits
    sources_test: torch.Tensor
    size_train: torch.Tensor  # uint8 [N, H, W]: 1 small digit, 2 large digit, 0 elsewhere
    size_test: torch.Tensor
    info: dict = field(default_factory=dict)
    kind: ClassVar[str] = "segmentation"
    ignore_index: ClassVar[int] = IGNORE_INDEX
    float_images = staticmethod(float_images)

    def __repr__(self) -> str:
        return (f"SceneTask({self.name!r}: train {tuple(self.x_train.shape)}, test {tuple(self.x_test.shape)}, "
                f"{self.num_classes} classes incl. background)")


def _place(rng, layers: np.ndarray, patch: np.ndarray, taken: list[tuple[int, int, int]], bg_below: float,
           tries: int = 40) -> tuple[int, int]:
    """A top-left corner for ``patch`` where it touches no ink already in ``layers`` and no ``taken`` box.

    Of ``tries`` random corners the first free one is taken, else the one with the fewest clashing pixels
    (those become ignore pixels).
    """
    canvas, size = layers.shape[-1], patch.shape[0]
    mine = patch >= bg_below
    occupied = (layers >= bg_below).any(0)
    best, best_clash = (0, 0), None
    for _ in range(tries):
        top, left = (int(v) for v in rng.integers(0, canvas - size + 1, size=2))
        clash = int((occupied[top:top + size, left:left + size] & mine).sum())
        clash += sum(size * size for t, l, s in taken
                     if not (top + size <= t or t + s <= top or left + size <= l or l + s <= left))
        if best_clash is None or clash < best_clash:
            best, best_clash = (top, left), clash
        if clash == 0:
            break
    return best


def digit_scenes(n_train: int = 6000, n_test: int = 1500, *, canvas: int = 48, large_size: tuple[int, int] = (36, 44),
                 small_size: tuple[int, int] = (9, 14), n_small: tuple[int, int] = (2, 3), ink_above: float = 0.5,
                 bg_below: float = 0.15, question: str = "context", seed: int = 0) -> SceneTask:
    """Scenes of one large and ``n_small`` small digits; per-pixel labels (see the module docstring)."""
    name = "digit_scenes"
    _check_common(name, n_train, n_test, seed)
    _require(question in QUESTIONS, name, "question", f"must be one of {sorted(QUESTIONS)}, got {question!r}")
    for what, (lo, hi) in (("large_size", large_size), ("small_size", small_size)):
        _require(1 <= lo <= hi, name, what, f"needs 1 <= min <= max, got {(lo, hi)}")
        _require(hi <= canvas, name, what, f"the largest digit ({hi} px) does not fit the canvas ({canvas} px)")
    _require(0 <= n_small[0] <= n_small[1], name, "n_small", f"needs 0 <= min <= max, got {n_small}")
    _require(0 < bg_below <= ink_above <= 1, name, "bg_below/ink_above",
             f"needs 0 < bg_below <= ink_above <= 1, got {bg_below}, {ink_above}")
    k_max = 1 + n_small[1]
    out = {}
    for split, n, offset in (("train", n_train, 0), ("test", n_test, 1)):
        _, labels, idx = source_digits(split)
        pool, pool_labels = idx.numpy(), labels.numpy()
        rng = np.random.default_rng([seed, offset, _task_salt(name)])
        xs = np.zeros((n, canvas, canvas), np.float32)
        ys = np.zeros((n, canvas, canvas), np.uint8)
        sizes = np.zeros((n, canvas, canvas), np.uint8)
        srcs = np.full((n, k_max), -1, np.int64)
        for i in range(n):
            count = 1 + int(rng.integers(n_small[0], n_small[1] + 1))
            layers = np.zeros((count, canvas, canvas), np.float32)
            cls = np.zeros(count, np.int64)
            kind = np.zeros(count, np.uint8)
            taken: list[tuple[int, int, int]] = []
            for j in range(count):
                lo, hi = large_size if j == 0 else small_size
                size = int(rng.integers(lo, hi + 1))
                k = int(rng.integers(len(pool)))
                patch = _resized_all(size)[pool[k]]
                if j == 0:
                    top, left = (int(v) for v in rng.integers(0, canvas - size + 1, size=2))
                else:
                    top, left = _place(rng, layers[:j], patch, taken, bg_below)
                    taken.append((top, left, size))
                layers[j, top:top + size, left:left + size] = patch
                cls[j], kind[j], srcs[i, j] = pool_labels[k], LARGE if j == 0 else SMALL, pool[k]
            order = np.sort(layers, axis=0)
            top1 = order[-1]
            second = order[-2] if count > 1 else np.zeros_like(top1)
            owner = layers.argmax(0)
            ink = (top1 >= ink_above) & (second < bg_below)
            label = np.full((canvas, canvas), IGNORE_INDEX, np.uint8)
            label[top1 < bg_below] = BACKGROUND
            label[ink] = 1 + cls[owner[ink]]
            xs[i] = top1
            ys[i] = label
            sizes[i][ink] = kind[owner[ink]]
        out[split] = (_to_uint8(xs[:, None]), torch.from_numpy(ys), torch.from_numpy(srcs), torch.from_numpy(sizes))
    attention, why = QUESTIONS[question](large_size, small_size)
    info = dict(canvas=canvas, large_size=large_size, small_size=small_size, n_small=n_small, ink_above=ink_above,
                bg_below=bg_below, seed=seed, attention=attention, fcn_receptive_field=FCN_RECEPTIVE_FIELD,
                ignore_index=IGNORE_INDEX, why=why)
    classes = ["background", *DIGIT_CLASSES]
    return SceneTask(name, out["train"][0], out["train"][1], out["test"][0], out["test"][1], 11, classes,
                     out["train"][2], out["test"][2], out["train"][3], out["test"][3], info)


TASKS["digit_scenes"] = digit_scenes
