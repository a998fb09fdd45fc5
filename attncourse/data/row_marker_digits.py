"""``row_marker_digits``: a task whose label depends on *which row* a mark sits in (module 09, Coordinate Attention).

The canvas (``height = bands · (digit_size + 2)`` by ``width``) holds ``bands`` horizontal bands. Each band holds
one real digit (:func:`attncourse.data.source_digits`: train images only from training source digits, test images
only from test source digits), the ``bands`` digits of one image of different classes, each at a random column in
the right part of the canvas. A solid bar, ``bar_width`` px wide and as tall as a digit, marks one band — a different
one per image, uniformly — on exactly the rows of that band's digit. Label: the class of the marked band's digit.

``marker="far"`` (the task): the bar sits at the canvas's left edge, so at least ``min_gap`` px of empty canvas lie
between it and every digit — more than the 25 px receptive field of the course's baseline ``AttnResNet``.

``marker="near"`` (the control): the same digits, bands, columns and labels, but the bar sits 1 px left of the
marked digit, inside one receptive field with it: where along the row things are no longer matters.

Construction facts, each checked in ``tests/test_data_row_marker.py``:

* moving the bar to another band changes the label and keeps every pixel value of the image, only at other rows:
  the image's global mean (and its whole histogram) is the same whichever band is marked;
* in the ``"far"`` task the bar and the digit it marks share their rows (``H`` coordinates) and nothing else.

``task.info["target_band_train"]`` / ``["target_band_test"]`` hold each image's marked band (lists of ints);
``sources_*[:, b]`` is the source digit of band ``b``. Deterministic given ``seed``.
"""
from __future__ import annotations

import numpy as np

from . import DIGIT_CLASSES, TASKS, _build, _check_common, _is_int, _require, _resized_all

__all__ = ["row_marker_digits", "render_row_marker", "MARKERS", "BASELINE_RECEPTIVE_FIELD"]

MARKERS = ("far", "near")
#: receptive field (px) of the default baseline ``AttnResNet`` (checked by ``tests/test_models.py``)
BASELINE_RECEPTIVE_FIELD = 25
BAR_LEFT = 1  # the far bar's first column


def render_row_marker(digits: list[np.ndarray], tops: list[int], lefts: list[int], target_band: int, *, height: int,
                      width: int, marker: str = "far", bar_width: int = 3) -> np.ndarray:
    """One noise-free image ``[height, width]`` in [0, 1]: each ``digits[b]`` pasted at ``(tops[b], lefts[b])``, and the
    bar on the rows of ``digits[target_band]`` — at the left edge (``"far"``) or 1 px left of that digit (``"near"``)."""
    img = np.zeros((height, width), np.float32)
    for digit, top, left in zip(digits, tops, lefts):
        size = digit.shape[0]
        np.maximum(img[top:top + size, left:left + size], digit, out=img[top:top + size, left:left + size])
    size = digits[target_band].shape[0]
    top = tops[target_band]
    bar_left = BAR_LEFT if marker == "far" else lefts[target_band] - 1 - bar_width
    img[top:top + size, bar_left:bar_left + bar_width] = 1.0
    return img


def row_marker_digits(n_train: int = 6000, n_test: int = 1500, *, marker: str = "far", bands: int = 3,
                      digit_size: int = 10, width: int = 56, bar_width: int = 3, noise: float = 0.05,
                      seed: int = 0) -> "DigitTask":  # noqa: F821
    """Digits in ``bands`` horizontal bands; a bar marks one band; label = the class of the marked band's digit.

    Args:
        marker: ``"far"`` (the bar at the left edge, beyond the baseline's receptive field from every digit) or
            ``"near"`` (the control: the bar 1 px left of the marked digit).
        bands: digits (and bands) per image, 2–10 (their classes differ).
        digit_size: side of each digit in px; each band is ``digit_size + 2`` px tall.
        width: canvas width; the digits' columns leave at least ``BASELINE_RECEPTIVE_FIELD + 2`` px between the far
            bar and any digit, so ``width`` must be at least ``BAR_LEFT + bar_width + 27 + digit_size``.
        noise: std of the Gaussian pixel noise added after drawing (then clipped to [0, 1]).
    """
    name = "row_marker_digits"
    _check_common(name, n_train, n_test, seed)
    _require(marker in MARKERS, name, "marker", f"must be one of {MARKERS}, got {marker!r}")
    _require(_is_int(bands) and 2 <= bands <= 10, name, "bands", f"must be an int in [2, 10], got {bands!r}")
    _require(_is_int(digit_size) and 4 <= digit_size <= 32, name, "digit_size", f"must be an int in [4, 32], got {digit_size!r}")
    _require(_is_int(bar_width) and 1 <= bar_width <= 8, name, "bar_width", f"must be an int in [1, 8], got {bar_width!r}")
    _require(noise >= 0, name, "noise", f"must be >= 0, got {noise}")
    min_gap = BASELINE_RECEPTIVE_FIELD + 2
    first_col = BAR_LEFT + bar_width + min_gap  # the leftmost column a digit may start at
    _require(_is_int(width) and width >= first_col + digit_size, name, "width",
             f"must be an int >= {first_col + digit_size} (bar, a {min_gap} px gap, a digit), got {width!r}")
    band_h = digit_size + 2
    height = bands * band_h
    targets: list[int] = []  # each image's marked band, in generation order (train, then test)

    def make_one(rng, pool, labels):
        classes = rng.choice(10, size=bands, replace=False)
        srcs, digits, tops, lefts = [], [], [], []
        for b, c in enumerate(classes):
            cand = pool[labels == c]
            j = int(cand[rng.integers(len(cand))])
            srcs.append(j)
            digits.append(_resized_all(digit_size)[j])
            tops.append(b * band_h + int(rng.integers(0, band_h - digit_size + 1)))
            lefts.append(int(rng.integers(first_col, width - digit_size + 1)))
        target = int(rng.integers(bands))
        targets.append(target)
        img = render_row_marker(digits, tops, lefts, target, height=height, width=width, marker=marker,
                                bar_width=bar_width)
        if noise:
            img = (img + rng.normal(0.0, noise, size=img.shape)).clip(0, 1)
        return img[None].astype(np.float32), int(classes[target]), srcs

    if marker == "far":
        why = (f"{bands} digits of different classes sit in {bands} horizontal bands on the right; a bar at the left "
               f"edge marks one band and the label is the class of that band's digit. At least {min_gap} px separate "
               f"the bar from every digit, more than the baseline's {BASELINE_RECEPTIVE_FIELD} px receptive field, so no "
               "convolution sees the bar and a digit together. Moving the bar to another band changes the label but "
               "not the image's global mean (nor its histogram): SE's squeeze, a global average, is blind to which "
               "band is marked. A squeeze along W (CoordAtt pools each row) puts the bar and the digit of the same "
               "band into one descriptor, so a per-row gate can single out the marked band before the global pool.")
    else:
        why = ("The control: the same digits, bands, columns and labels, but the bar sits 1 px left of the marked "
               "digit, inside one receptive field with it. A plain CNN sees locally which digit is marked; where "
               "along the row the bar is does not matter, so neither SE nor a directional squeeze should be needed.")
    info = dict(marker=marker, bands=bands, digit_size=digit_size, height=height, width=width, bar_width=bar_width,
                noise=noise, seed=seed, min_gap=min_gap, first_digit_column=first_col,
                attention="position (coordinate attention)" if marker == "far" else "none (control)", why=why)
    task = _build(name, n_train, n_test, seed, make_one, 10, DIGIT_CLASSES, info)
    task.info["target_band_train"], task.info["target_band_test"] = targets[:n_train], targets[n_train:]
    return task


TASKS["row_marker_digits"] = row_marker_digits
