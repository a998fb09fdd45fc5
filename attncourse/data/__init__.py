"""Real data that works offline, and diagnostic tasks built from it.

Everything starts from the 1,797 real handwritten digits that ship inside scikit-learn
(``sklearn.datasets.load_digits``: 8×8 images, 17 grey levels: the values 0–16). They are split once,
deterministically, into *training source digits* and *test source digits*; every generated task
draws its training samples only from the first and its test samples only from the second, so no
test digit is ever seen in training.

Each generator returns a :class:`DigitTask`: compact ``uint8`` image tensors ``[N, C, H, W]`` (small
enough to live on the GPU whole) plus ``int64`` labels, and records which source digits each sample
used. Each task is built so that one family of attention *should* help; ``task.info["why"]`` says
what a plain CNN of the baseline's receptive field can and cannot see.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "DigitTask", "source_digits", "cluttered_digits", "channel_cue_digits", "long_range_pairs",
    "multiscale_digits", "make_task", "TASKS", "cifar10", "Task",
]

SPLIT_SEED = 20240601  # fixed forever: changing it changes every task
TRAIN_FRACTION = 0.7


class Task:
    """What every task offers the training loop, whatever its kind: the image tensors resident on one device.

    Subclasses are dataclasses with ``x_train``, ``y_train``, ``x_test``, ``y_test`` (images ``uint8`` with the
    channels at dim 1; a video task overrides :attr:`in_channels`) and a ``kind`` class attribute naming the
    objective that trains them (:mod:`attncourse.objectives`).
    """

    kind: ClassVar[str] = "classification"

    @property
    def in_channels(self) -> int:
        return self.x_train.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.x_train.shape[-2:])

    def to(self, device):
        """The same task with all tensors on ``device`` (data then stays resident during training)."""
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        return type(self)(**moved)


@dataclass
class DigitTask(Task):
    """A generated classification task. Images are ``uint8`` in [0, 255]; use :meth:`float_images`."""

    name: str
    x_train: torch.Tensor  # uint8 [N, C, H, W]
    y_train: torch.Tensor  # int64 [N]
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    classes: list[str]
    sources_train: torch.Tensor  # int64 [N, k]: indices into load_digits() used by each sample
    sources_test: torch.Tensor
    info: dict = field(default_factory=dict)
    kind: ClassVar[str] = "classification"  # the task kind: fit trains it with attncourse.objectives.get_objective(kind)

    def __repr__(self) -> str:
        return (f"DigitTask({self.name!r}: train {tuple(self.x_train.shape)}, test {tuple(self.x_test.shape)}, "
                f"{self.num_classes} classes)")


def float_images(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] → float32 [0, 1] (any other dtype is returned as float)."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


DigitTask.float_images = staticmethod(float_images)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- source digits
@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)  # [1797, 8, 8] in [0, 1]
    return images, bunch.target.astype(np.int64)


@lru_cache(maxsize=1)
def _split() -> tuple[np.ndarray, np.ndarray]:
    """Stratified, deterministic split of source-digit indices into train / test."""
    _, labels = _digits()
    rng = np.random.default_rng(SPLIT_SEED)
    train, test = [], []
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        cut = int(round(TRAIN_FRACTION * len(idx)))
        train.append(idx[:cut])
        test.append(idx[cut:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def source_digits(split: str = "train") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The real digits of one split: ``(images [n, 8, 8] float in [0,1], labels [n], indices [n])``.

    Fresh tensors on every call: editing them in place never reaches the cached split (so a test digit
    can never move into training).
    """
    if split not in ("train", "test"):
        raise ValueError(f"source_digits: split must be 'train' or 'test', got {split!r}")
    images, labels = _digits()
    idx = _split()[0 if split == "train" else 1]
    return (torch.from_numpy(images[idx].copy()), torch.from_numpy(labels[idx].copy()),
            torch.from_numpy(idx.copy()))


@lru_cache(maxsize=64)
def _resized_all(size: int) -> np.ndarray:
    """Every source digit resized to ``size``×``size`` (bilinear, antialiased), float32 [1797, s, s]."""
    images, _ = _digits()
    t = torch.from_numpy(images)[:, None]
    out = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=size < 8)
    return out[:, 0].clamp_(0, 1).numpy()


# --------------------------------------------------------------------------- validation helpers
def _require(cond: bool, task: str, param: str, why: str) -> None:
    if not cond:
        raise ValueError(f"{task}: invalid {param}: {why}")


def _is_int(value) -> bool:
    """An int or NumPy integer, but not a bool (``True`` is not "one sample")."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_common(task: str, n_train: int, n_test: int, seed: int) -> None:
    _require(_is_int(n_train) and n_train > 0, task, "n_train", f"must be a positive int, got {n_train!r}")
    _require(_is_int(n_test) and n_test > 0, task, "n_test", f"must be a positive int, got {n_test!r}")
    _require(_is_int(seed) and seed >= 0, task, "seed", f"must be a non-negative int, got {seed!r}")


def _to_uint8(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8))


def _paste_max(canvas: np.ndarray, patch: np.ndarray, top: int, left: int) -> None:
    h, w = patch.shape
    region = canvas[top:top + h, left:left + w]
    np.maximum(region, patch[: region.shape[0], : region.shape[1]], out=region)


def _build(task: str, n_train: int, n_test: int, seed: int, make_one, num_classes: int, classes, info) -> DigitTask:
    """Run ``make_one(rng, pool_idx, pool_labels) -> (image [C,H,W], label, sources)`` for each split."""
    out = {}
    for split, n, offset in (("train", n_train, 0), ("test", n_test, 1)):
        _, labels, idx = source_digits(split)
        rng = np.random.default_rng([seed, offset, _task_salt(task)])
        xs, ys, srcs = [], [], []
        for _ in range(n):
            img, y, src = make_one(rng, idx.numpy(), labels.numpy())
            xs.append(img)
            ys.append(y)
            srcs.append(src)
        out[split] = (_to_uint8(np.stack(xs)), torch.tensor(ys, dtype=torch.int64), torch.tensor(np.array(srcs), dtype=torch.int64))
    return DigitTask(task, out["train"][0], out["train"][1], out["test"][0], out["test"][1], num_classes, list(classes),
                     out["train"][2], out["test"][2], info)


def _task_salt(name: str) -> int:
    return sum((i + 1) * ord(ch) for i, ch in enumerate(name))


DIGIT_CLASSES = [str(i) for i in range(10)]


# --------------------------------------------------------------------------- cluttered digits
def cluttered_digits(n_train: int = 6000, n_test: int = 1500, *, canvas: int = 40, digit_size: tuple[int, int] = (14, 24),
                     n_clutter: int = 6, clutter_size: int = 4, seed: int = 0) -> DigitTask:
    """A digit at a random place and scale on a ``canvas``² image, among ``n_clutter`` fragments cut from other digits.

    Label: the class of the whole digit. Fragments are ``clutter_size``² crops of other source digits
    (same split), rescaled like the digit, so locally they look like strokes of a digit.

    Why: every local window looks digit-like, so a plain CNN must pool evidence from the clutter as
    well as from the digit; spatial attention can learn *where* the digit is and down-weight the rest.
    """
    name = "cluttered_digits"
    _check_common(name, n_train, n_test, seed)
    lo, hi = digit_size
    _require(1 <= lo <= hi, name, "digit_size", f"needs 1 <= min <= max, got {digit_size}")
    _require(canvas >= hi, name, "canvas", f"canvas={canvas} is smaller than the largest digit ({hi} px)")
    _require(n_clutter >= 0, name, "n_clutter", f"must be >= 0, got {n_clutter}")
    _require(1 <= clutter_size <= 8, name, "clutter_size", f"must be in [1, 8] (source digits are 8×8), got {clutter_size}")

    def make_one(rng, pool, labels):
        canvas_img = np.zeros((canvas, canvas), np.float32)
        size = int(rng.integers(lo, hi + 1))
        scale = size / 8.0
        srcs = []
        for _ in range(n_clutter):
            j = int(rng.integers(len(pool)))
            srcs.append(pool[j])
            big = _resized_all(size)[pool[j]]
            fs = max(1, int(round(clutter_size * scale)))
            fs = min(fs, size)
            r0, c0 = rng.integers(0, size - fs + 1, size=2)
            frag = big[r0:r0 + fs, c0:c0 + fs]
            top, left = rng.integers(0, canvas - fs + 1, size=2)
            _paste_max(canvas_img, frag, int(top), int(left))
        k = int(rng.integers(len(pool)))
        top, left = rng.integers(0, canvas - size + 1, size=2)
        _paste_max(canvas_img, _resized_all(size)[pool[k]], int(top), int(left))
        return canvas_img[None], int(labels[k]), [pool[k], *srcs]

    info = dict(canvas=canvas, digit_size=digit_size, n_clutter=n_clutter, clutter_size=clutter_size, seed=seed,
                attention="spatial",
                why=("Every local window holds digit-like strokes (the clutter is cut from real digits), so a plain "
                     "CNN that averages features over the whole canvas mixes clutter evidence into the answer. "
                     "Spatial attention can weight the digit's location up and the fragments down."))
    return _build(name, n_train, n_test, seed, make_one, 10, DIGIT_CLASSES, info)


# --------------------------------------------------------------------------- channel-cue digits
def channel_cue_digits(n_train: int = 6000, n_test: int = 1500, *, canvas: int = 24, channels: int = 4,
                       cue_strength: float = 0.12, noise: float = 0.2, seed: int = 0) -> DigitTask:
    """``channels`` input channels, each holding a different digit; one channel — a different one per
    sample — carries the label, and it is marked only by a faint brightness offset over the whole image.

    Per pixel the cue (``cue_strength``) is buried in noise (std ``noise``); averaged over the image
    it is clear. Label: the class of the digit in the marked channel.

    Why: to answer, a network must decide *which channel* matters from a global statistic and then
    read the digit in that channel. A plain CNN sees only local windows until its final global
    pooling, after which a linear classifier cannot switch between channels; channel attention (SE:
    global pooling → per-channel weights) does exactly this switch inside the network.
    """
    name = "channel_cue_digits"
    _check_common(name, n_train, n_test, seed)
    _require(2 <= channels <= 10, name, "channels", f"must be in [2, 10] (one distinct class per channel), got {channels}")
    _require(canvas >= 8, name, "canvas", f"canvas={canvas} is smaller than a digit (8 px)")
    _require(cue_strength > 0, name, "cue_strength", f"must be positive, got {cue_strength}")
    _require(noise >= 0, name, "noise", f"must be >= 0, got {noise}")
    size = min(canvas - 2, 20)

    def make_one(rng, pool, labels):
        classes = rng.choice(10, size=channels, replace=False)
        img = np.zeros((channels, canvas, canvas), np.float32)
        srcs = []
        for ch, c in enumerate(classes):
            cand = pool[labels == c]
            j = int(cand[rng.integers(len(cand))])
            srcs.append(j)
            top, left = rng.integers(0, canvas - size + 1, size=2)
            img[ch, top:top + size, left:left + size] = _resized_all(size)[j]
        target = int(rng.integers(channels))
        img *= 0.75
        img[target] += cue_strength
        img += rng.normal(0.0, noise, size=img.shape).astype(np.float32)
        img = (img + 0.25).clip(0, 1)
        return img, int(classes[target]), srcs

    info = dict(canvas=canvas, channels=channels, cue_strength=cue_strength, noise=noise, seed=seed, attention="channel",
                why=("The marked channel is only visible as a global statistic (a faint offset under strong noise). "
                     "A plain CNN mixes all channels in its first convolution and has nothing that switches "
                     "channels on or off per sample; channel attention computes per-channel weights from global "
                     "pooling and can suppress the distractor digits."))
    return _build(name, n_train, n_test, seed, make_one, 10, DIGIT_CLASSES, info)


# --------------------------------------------------------------------------- long-range pairs
def long_range_pairs(n_train: int = 6000, n_test: int = 1500, *, height: int = 24, width: int = 96,
                     digit_size: int = 18, seed: int = 0) -> DigitTask:
    """Two digits at opposite ends of a wide ``height``×``width`` canvas. Label 1 when they are the same
    class, else 0 (balanced).

    Why: the two digits are at least ``width - 2*(digit_size+4)`` px apart, more than the receptive
    field of the baseline (25 px for the default ``AttnResNet``), so no single feature sees both. After
    global average pooling the network holds f(a) + f(b); "a equals b" is not linearly separable from
    any such sum (for the two classes with the highest scores h(a1) ≤ h(a2), 2h(a1) > t and
    2h(a2) > t imply h(a1)+h(a2) > t), so the baseline cannot do better than guessing from priors.
    Non-local blocks and global context relate the two positions inside the network.
    """
    name = "long_range_pairs"
    _check_common(name, n_train, n_test, seed)
    _require(digit_size >= 4, name, "digit_size", f"must be >= 4, got {digit_size}")
    _require(height >= digit_size, name, "height", f"height={height} is smaller than the digit ({digit_size} px)")
    _require(width >= 4 * digit_size, name, "width", f"width={width} must be at least 4 × digit_size ({4 * digit_size}) to keep the digits far apart")
    margin = 4

    def make_one(rng, pool, labels):
        same = bool(rng.integers(2))
        a = int(rng.integers(10))
        b = a if same else int((a + rng.integers(1, 10)) % 10)
        img = np.zeros((height, width), np.float32)
        srcs = []
        for c, (x_lo, x_hi) in zip((a, b), ((0, margin), (width - digit_size - margin, width - digit_size))):
            cand = pool[labels == c]
            j = int(cand[rng.integers(len(cand))])
            srcs.append(j)
            top = int(rng.integers(0, height - digit_size + 1))
            left = int(rng.integers(x_lo, x_hi + 1))
            _paste_max(img, _resized_all(digit_size)[j], top, left)
        return img[None], int(same), srcs

    info = dict(height=height, width=width, digit_size=digit_size, seed=seed, attention="non-local / global context",
                min_gap_px=width - 2 * (digit_size + margin),
                why=("The two digits never fall in one receptive field of the baseline, and 'same class?' cannot be "
                     "read linearly from the pooled sum of their features, so a local CNN with a linear classifier "
                     "stays near chance (a non-linear head on the pooled features can recover part of the answer). A "
                     "non-local block lets each position attend to the other digit."))
    return _build(name, n_train, n_test, seed, make_one, 2, ["different", "same"], info)


# --------------------------------------------------------------------------- multi-scale digits
def multiscale_digits(n_train: int = 6000, n_test: int = 1500, *, canvas: int = 40, digit_size: tuple[int, int] = (8, 38),
                      noise: float = 0.1, seed: int = 0) -> DigitTask:
    """One digit whose size varies widely (``digit_size`` px) at a random place, with pixel noise.

    ``task.info["sizes_train"]`` and ``task.info["sizes_test"]`` hold the side in px of each sample's digit (lists of
    ints, aligned with ``x_train`` / ``x_test``): module 07 plots SK's branch weights against it.

    Why: small digits need small filters and large ones a large receptive field; a network with
    branches of several kernel sizes (Inception) or one that selects its kernel size per input (SKNet)
    should handle the spread of scales better than a single fixed kernel size.
    """
    name = "multiscale_digits"
    _check_common(name, n_train, n_test, seed)
    lo, hi = digit_size
    _require(1 <= lo <= hi, name, "digit_size", f"needs 1 <= min <= max, got {digit_size}")
    _require(canvas >= hi, name, "canvas", f"canvas={canvas} is smaller than the largest digit ({hi} px)")
    _require(noise >= 0, name, "noise", f"must be >= 0, got {noise}")

    sizes: list[int] = []  # each sample's digit size in px, in generation order (train, then test)

    def make_one(rng, pool, labels):
        img = np.zeros((canvas, canvas), np.float32)
        size = int(np.exp(rng.uniform(np.log(lo), np.log(hi + 1))))
        size = min(max(size, lo), hi)
        sizes.append(size)  # bookkeeping only: no random draw, so the images are unchanged
        k = int(rng.integers(len(pool)))
        top, left = rng.integers(0, canvas - size + 1, size=2)
        _paste_max(img, _resized_all(size)[pool[k]], int(top), int(left))
        img = (img + rng.normal(0.0, noise, size=img.shape)).clip(0, 1)
        return img[None].astype(np.float32), int(labels[k]), [pool[k]]

    info = dict(canvas=canvas, digit_size=digit_size, noise=noise, seed=seed, attention="multi-scale / branch",
                why=(f"Digit size spans a factor of {digit_size[1] / digit_size[0]:.1f} ({digit_size[0]}–{digit_size[1]} px): "
                     "a fixed 3×3 stack sees strokes of small digits and only parts "
                     "of large ones at a given depth. Multi-branch blocks combine several receptive fields."))
    task = _build(name, n_train, n_test, seed, make_one, 10, DIGIT_CLASSES, info)
    # the side (px) of each sample's digit, a plain list per split (task.info stays JSON-serialisable)
    task.info["sizes_train"], task.info["sizes_test"] = sizes[:n_train], sizes[n_train:]
    return task


TASKS = {
    "cluttered_digits": cluttered_digits,
    "channel_cue_digits": channel_cue_digits,
    "long_range_pairs": long_range_pairs,
    "multiscale_digits": multiscale_digits,
}


def _import_task_module(name: str) -> None:
    """Tasks of other families live in ``attncourse/data/<name>.py``, which adds them to :data:`TASKS` on import."""
    import importlib

    try:
        importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as err:
        if err.name != f"{__name__}.{name}":
            raise


def make_task(name: str, profile=None, seed: int = 0, **kwargs) -> DigitTask:
    """Build a task by name, sized by a :class:`~attncourse.config.Profile` (default: the active one)."""
    from ..config import get_profile

    if name not in TASKS and isinstance(name, str) and name.isidentifier():
        _import_task_module(name)
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; available tasks: {', '.join(sorted(TASKS))}")
    profile = get_profile(profile) if not hasattr(profile, "n_train") else profile
    return TASKS[name](profile.n_train, profile.n_test, seed=seed, **kwargs)


# --------------------------------------------------------------------------- CIFAR-10 (online only)
def cifar10(root: str = "~/.cache/attncourse/cifar10", download: bool = True):
    """CIFAR-10 as ``(x_train uint8 [50000,3,32,32], y_train, x_test, y_test)`` through torchvision.

    Needs the internet the first time (Colab has it). Offline it raises ``RuntimeError`` naming the
    offline diagnostic tasks to use instead.
    """
    import os

    import torchvision

    root = os.path.expanduser(root)
    try:
        train = torchvision.datasets.CIFAR10(root, train=True, download=download)
        test = torchvision.datasets.CIFAR10(root, train=False, download=download)
    except Exception as err:  # URLError, socket errors, missing files when download=False
        raise RuntimeError(
            f"CIFAR-10 could not be loaded from {root!r} ({type(err).__name__}: {err}). It needs an internet "
            f"connection the first time (e.g. on Colab). Offline, use the diagnostic tasks built from real "
            f"digits instead: {', '.join(sorted(TASKS))} (attncourse.data.make_task)."
        ) from err

    def pack(ds):
        x = torch.from_numpy(np.asarray(ds.data)).permute(0, 3, 1, 2).contiguous()
        return x, torch.tensor(ds.targets, dtype=torch.int64)

    return (*pack(train), *pack(test))
