"""``second_order_cue_digits``: channel-cue digits whose marked channel differs only in a second-order statistic.

Like :func:`attncourse.data.channel_cue_digits`, each of the ``channels`` input channels holds a different digit
and the label is the class of the digit in one *marked* channel (a different one per sample). Here the mark is
built so that the mean cannot see it:

* every channel is ``0.5 + contrast · (digit − mean(digit))``: its spatial mean is exactly 0.5, whatever the
  digit;
* every channel gets a zero-mean texture (uniform noise with its own mean subtracted);
* ``cue="std"`` (the task): the marked channel's texture is ``cue_ratio`` times stronger — a larger standard
  deviation, the same mean;
* ``cue="mean"`` (the control): all textures are equally strong and the marked channel is brighter by
  ``offset`` — the cue is in the mean, as in ``channel_cue_digits``.

Values stay inside [0, 1] by construction (no clipping), so the means are equal up to the uint8 rounding
(±0.5/255 per pixel). ``task.info["marked_train"]`` / ``["marked_test"]`` hold each sample's marked channel.
"""
from __future__ import annotations

import numpy as np

from . import DIGIT_CLASSES, TASKS, _build, _check_common, _require, _resized_all

__all__ = ["second_order_cue_digits", "SECOND_ORDER_WHY", "FIRST_ORDER_WHY"]

SECOND_ORDER_WHY = (
    "The marked channel differs from the others only in the strength of a zero-mean texture: every channel's "
    "spatial mean is 0.5 by construction, so a squeeze that averages the input channels (SE's global average "
    "pooling, Gather-Excite's parameter-free gather at any extent) reads nothing from the input itself. SRM's style "
    "pooling reads the standard deviation directly, and GSoP's covariance holds every channel's variance on its "
    "diagonal. Inside a network the line is softer: after a convolution and a ReLU a texture's strength becomes a "
    "mean (the mean of ReLU(z) grows with the std of a zero-mean z), so a mean-squeeze placed after convolutions can "
    "still find the cue, if the convolutions learn to turn it into a mean first.")
FIRST_ORDER_WHY = (
    "The control: every texture has the same strength and the marked channel is brighter by a constant offset, so "
    "the cue is in the channel's mean — what SE's global average pooling reads. Style pooling (SRM) keeps the mean "
    "too; a covariance (GSoP) removes it (it is centred), so GSoP can only see the offset through what the "
    "convolutions before it make of it.")


def second_order_cue_digits(n_train: int = 6000, n_test: int = 1500, *, canvas: int = 24, channels: int = 4,
                            cue: str = "std", contrast: float = 0.25, texture: float = 0.08, cue_ratio: float = 2.0,
                            offset: float = 0.06, seed: int = 0):
    """Channel-cue digits with the cue in the marked channel's texture strength (``cue="std"``) or mean (``"mean"``).

    Args:
        canvas, channels: image side (px) and number of channels, one digit each (distinct classes).
        cue: ``"std"`` (the marked texture is ``cue_ratio`` × stronger) or ``"mean"`` (the marked channel is
            ``offset`` brighter, all textures equal).
        contrast: the digits' amplitude around the channel mean 0.5.
        texture: half-width of the uniform texture of the unmarked channels (std ``texture / √3``).

    Images ``uint8 [N, channels, canvas, canvas]``; labels: the class of the marked channel's digit.
    """
    name = "second_order_cue_digits"
    _check_common(name, n_train, n_test, seed)
    _require(cue in ("std", "mean"), name, "cue", f"must be 'std' or 'mean', got {cue!r}")
    _require(2 <= channels <= 10, name, "channels", f"must be in [2, 10] (one distinct class per channel), got {channels}")
    _require(canvas >= 8, name, "canvas", f"canvas={canvas} is smaller than a digit (8 px)")
    _require(0 < contrast <= 0.4, name, "contrast", f"must be in (0, 0.4] (values stay in [0, 1]), got {contrast}")
    _require(texture > 0 and cue_ratio > 1, name, "texture/cue_ratio",
             f"need texture > 0 and cue_ratio > 1, got {texture}, {cue_ratio}")
    peak = 1.25 * texture * (cue_ratio if cue == "std" else 1) + (offset if cue == "mean" else 0)
    _require(contrast + peak < 0.5 and offset >= 0, name, "texture/offset",
             f"contrast + 1.25·texture·(cue_ratio) + offset must stay below 0.5 so no pixel leaves [0, 1], got "
             f"contrast={contrast}, texture={texture}, cue_ratio={cue_ratio}, offset={offset}")
    size = min(canvas - 2, 20)
    marked = []

    def make_one(rng, pool, labels):
        classes = rng.choice(10, size=channels, replace=False)
        target = int(rng.integers(channels))
        img = np.empty((channels, canvas, canvas), np.float32)
        srcs = []
        for ch, c in enumerate(classes):
            cand = pool[labels == c]
            j = int(cand[rng.integers(len(cand))])
            srcs.append(j)
            digit = np.zeros((canvas, canvas), np.float32)
            top, left = rng.integers(0, canvas - size + 1, size=2)
            digit[top:top + size, left:left + size] = _resized_all(size)[j]
            amplitude = texture * (cue_ratio if (cue == "std" and ch == target) else 1.0)
            tex = rng.uniform(-amplitude, amplitude, size=(canvas, canvas)).astype(np.float32)
            tex -= tex.mean()  # |mean| ≤ amplitude/4 by far (n ≥ 64 samples): the 1.25 bound above holds
            img[ch] = 0.5 + contrast * (digit - digit.mean()) + tex
            if cue == "mean" and ch == target:
                img[ch] += offset
        if img.min() < 0 or img.max() > 1:  # cannot happen under the checks above; never clip silently
            raise RuntimeError(f"{name}: a pixel left [0, 1] ({img.min():.3f}, {img.max():.3f})")
        marked.append(target)
        return img, int(classes[target]), srcs

    info = dict(canvas=canvas, channels=channels, cue=cue, contrast=contrast, texture=texture, cue_ratio=cue_ratio,
                offset=offset, seed=seed, attention="channel",
                why=SECOND_ORDER_WHY if cue == "std" else FIRST_ORDER_WHY)
    task = _build(name, n_train, n_test, seed, make_one, 10, DIGIT_CLASSES, info)
    task.info["marked_train"], task.info["marked_test"] = marked[:n_train], marked[n_train:]
    return task


TASKS["second_order_cue_digits"] = second_order_cue_digits
