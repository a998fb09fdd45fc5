"""Video re-identification with handwritten digits: ``digit_tracklets`` (module 08, STA).

An **identity** is one individual source digit — one person's handwriting of one numeral, not a class.
A **tracklet** is ``frames`` frames of one identity, filmed by one of several "cameras": the digit is drawn
tall (a ``height``×``width`` box, like a pedestrian's bounding box) with per-frame jitter (shift, scale, small
rotation) over static background clutter (fragments cut from other digits), and some frames are partly or
wholly **occluded** by a grey obstacle. Each camera has its own contrast, background level, noise and amount
of clutter, so one identity looks different from camera to camera.

* Training identities come from the training source digits, test identities from the test source digits
  (:func:`attncourse.data.source_digits`): no test identity is ever seen in training.
* Each identity has ``tracklets_per_identity`` tracklets, under cameras ``c, c+1, …`` (mod ``cameras``).
* The test split is a query set and a gallery: the first tracklet of each test identity is its query, the
  others are gallery tracklets. With 4 tracklets and 3 cameras one gallery tracklet shares the query's
  camera; the re-ID protocol removes it from that query's ranking (:mod:`attncourse.metrics.reid`).

Sizes: ``n_train`` and ``n_test`` count **frames** (so a profile's budget means the same compute as for
the image tasks): ``n // frames`` tracklets, ``tracklets // tracklets_per_identity`` identities (at most the
source digits of the split). Deterministic given ``seed``; ``occlusion=0`` gives the very same tracklets
without their occluders (every random draw is made either way), which is how the notebook measures what
occlusion costs each model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from . import TASKS, Task, _check_common, _digits, _is_int, _require, _task_salt, float_images, source_digits

__all__ = ["TrackletTask", "digit_tracklets", "CAMERAS"]

#: camera styles: gain on the digit, background level, pixel-noise std, number of clutter fragments
CAMERAS = (
    {"gain": 1.00, "background": 0.00, "noise": 0.03, "clutter": 3},
    {"gain": 0.70, "background": 0.18, "noise": 0.08, "clutter": 2},
    {"gain": 0.90, "background": 0.06, "noise": 0.05, "clutter": 5},
    {"gain": 0.80, "background": 0.10, "noise": 0.10, "clutter": 4},
)


@dataclass
class TrackletTask(Task):
    """A video re-identification task. Tracklets are ``uint8`` ``[N, T, C, H, W]``; use :meth:`float_images`.

    ``y_*`` are identity indices (train: ``0 … num_classes-1``, the classes of the identity classifier;
    test: their own indices — test identities are new people). ``cam_*`` are camera ids, ``query_test`` marks
    the query tracklets (the rest of the test split is the gallery), ``occluded_*`` marks each frame's
    occluded rows (``bool [N, T, H]``) and ``sources_*`` the source digit of each tracklet.
    """

    name: str
    x_train: torch.Tensor      # uint8 [N, T, C, H, W]
    y_train: torch.Tensor      # int64 [N]: identity 0 … num_classes-1
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    cam_train: torch.Tensor    # int64 [N]
    cam_test: torch.Tensor
    query_test: torch.Tensor   # bool [N_test]: query (True) or gallery (False)
    sources_train: torch.Tensor  # int64 [N]: index into load_digits()
    sources_test: torch.Tensor
    occluded_train: torch.Tensor  # bool [N, T, H]: occluded rows of each frame
    occluded_test: torch.Tensor
    info: dict = field(default_factory=dict)
    kind: ClassVar[str] = "metric"  # trained by attncourse.objectives.metric (P×K batches, ID + triplet loss, mAP)
    float_images = staticmethod(float_images)

    @property
    def in_channels(self) -> int:
        return self.x_train.shape[2]

    @property
    def frames(self) -> int:
        return self.x_train.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.x_train.shape[-2:])

    @property
    def classes(self) -> list[str]:
        return [f"id{i}" for i in range(self.num_classes)]

    def __repr__(self) -> str:
        nq = int(self.query_test.sum())
        return (f"TrackletTask({self.name!r}: train {tuple(self.x_train.shape)} ({self.num_classes} identities), "
                f"test {tuple(self.x_test.shape)} ({nq} queries, {len(self.query_test) - nq} gallery))")


# --------------------------------------------------------------------------- rendering
def _render_digits(src: torch.Tensor, cy, cx, h, w, angle, height: int, width: int) -> torch.Tensor:
    """Each 8×8 ``src[i]`` drawn ``h[i]``×``w[i]`` px, rotated by ``angle[i]`` (rad) about ``(cy[i], cx[i])``."""
    n = len(src)
    ys = torch.arange(height, dtype=torch.float32) + 0.5
    xs = torch.arange(width, dtype=torch.float32) + 0.5
    dy = ys[None, :, None] - cy[:, None, None]
    dx = xs[None, None, :] - cx[:, None, None]
    cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    ry, rx = cos * dy - sin * dx, sin * dy + cos * dx          # rotate the canvas back onto the digit
    grid = torch.stack([rx / (w[:, None, None] / 2), ry / (h[:, None, None] / 2)], dim=-1)  # [n, H, W, 2] in [-1, 1]
    out = F.grid_sample(src[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out[:, 0].reshape(n, height, width)


def _render_fragments(src, r0, c0, size, top, left, sy, sx, height: int, width: int) -> torch.Tensor:
    """Crops ``src[i][r0:r0+size, c0:c0+size]`` (source px) drawn at ``(top, left)`` scaled by ``(sy, sx)`` px/px."""
    ys = torch.arange(height, dtype=torch.float32)[None, :, None] + 0.5
    xs = torch.arange(width, dtype=torch.float32)[None, None, :] + 0.5
    sr = r0[:, None, None] + (ys - top[:, None, None]) / sy[:, None, None]  # source row (px) of each canvas px
    sc = c0[:, None, None] + (xs - left[:, None, None]) / sx[:, None, None]
    inside = ((sr >= r0[:, None, None]) & (sr < r0[:, None, None] + size)
              & (sc >= c0[:, None, None]) & (sc < c0[:, None, None] + size))
    grid = torch.stack([sc.expand(-1, height, width) / 4 - 1, sr.expand(-1, height, width) / 4 - 1], dim=-1)
    out = F.grid_sample(src[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0]
    return out * inside


def _split_tracklets(split: str, n_frames: int, frames: int, per_identity: int, cameras: int, rng) -> dict:
    """Which identity, camera and query role each tracklet of one split has."""
    _, _, pool = source_digits(split)
    pool = pool.numpy()
    n_tracklets = max(1, n_frames // frames)
    n_ids = max(1, min(len(pool), n_tracklets // per_identity))
    ids = np.sort(rng.choice(pool, size=n_ids, replace=False))
    label = np.arange(n_tracklets) % n_ids                 # tracklet i belongs to identity i mod n_ids
    nth = np.arange(n_tracklets) // n_ids                  # its index among that identity's tracklets
    first_cam = rng.integers(0, cameras, size=n_ids)
    cam = (first_cam[label] + nth) % cameras
    return {"label": label, "source": ids[label], "cam": cam, "query": nth == 0, "n_ids": n_ids, "split": split}


def _render_split(plan: dict, *, frames, height, width, digit_height, shift, scale, rotation, occlusion, whole,
                  clutter_scale, clear_frame, rng) -> tuple[torch.Tensor, torch.Tensor]:
    images, _ = _digits()
    n, t = len(plan["label"]), frames
    src = torch.from_numpy(images[plan["source"]])                         # [n, 8, 8]
    # the digit: a tall box, its place and size per tracklet, jittered per frame
    base_h = rng.uniform(*digit_height, size=n) * height
    base_cy = height / 2 + rng.uniform(-1.5, 1.5, size=n)
    base_cx = width / 2 + rng.uniform(-1.0, 1.0, size=n)
    s = rng.uniform(1 - scale, 1 + scale, size=(n, t))
    h = base_h[:, None] * s
    w = h * (width / height)
    cy = base_cy[:, None] + rng.uniform(-shift, shift, size=(n, t))
    cx = base_cx[:, None] + rng.uniform(-shift, shift, size=(n, t)) / 2
    angle = np.deg2rad(rng.uniform(-rotation, rotation, size=(n, t)))
    f = lambda a: torch.tensor(np.asarray(a, np.float32).reshape(-1))  # noqa: E731
    digit = _render_digits(src.repeat_interleave(t, 0), f(cy), f(cx), f(h), f(w), f(angle), height, width)
    digit = digit.reshape(n, t, height, width)

    # static clutter per tracklet: 3×3-source-pixel fragments of other digits of the same split, the camera's count
    pool = source_digits(plan["split"])[2].numpy()
    max_frag = max(c["clutter"] for c in CAMERAS) + clutter_scale
    frag_src = torch.from_numpy(images[rng.choice(pool, size=n * max_frag)])
    r0 = rng.integers(0, 6, size=n * max_frag).astype(np.float32)
    c0 = rng.integers(0, 6, size=n * max_frag).astype(np.float32)
    sy = np.repeat(base_h / 8, max_frag)
    sx = sy * (width / height)
    top = rng.uniform(0, height - 3 * sy)
    left = rng.uniform(0, np.maximum(width - 3 * sx, 0))
    frags = _render_fragments(frag_src, f(r0), f(c0), 3.0, f(top), f(left), f(sy), f(sx), height, width)
    frags = frags.reshape(n, max_frag, height, width)
    count = np.array([CAMERAS[c]["clutter"] + clutter_scale for c in plan["cam"]])
    use = torch.from_numpy(np.arange(max_frag)[None, :] < count[:, None])
    clutter = (frags * use[:, :, None, None]).amax(1) * 0.85 if max_frag else torch.zeros(n, height, width)
    img = torch.maximum(digit, clutter[:, None])

    # occlusion: a grey obstacle over a horizontal band (a quarter or half of the frame) or the whole frame
    hit = rng.uniform(size=(n, t)) < occlusion
    none_left = hit.all(1)
    keep = rng.integers(0, t, size=n)
    if clear_frame:                                               # every tracklet keeps at least one clear frame
        hit[none_left, keep[none_left]] = False
    is_whole = rng.uniform(size=(n, t)) < whole
    band = np.where(rng.uniform(size=(n, t)) < 0.5, height // 4, height // 2)
    band_top = (rng.uniform(size=(n, t)) * (height - band + 1)).astype(int)
    grey = rng.uniform(0.3, 0.6, size=(n, t)).astype(np.float32)
    rows = np.arange(height)[None, None, :]
    covered = hit[..., None] & (is_whole[..., None] | ((rows >= band_top[..., None]) & (rows < (band_top + band)[..., None])))
    covered_t = torch.from_numpy(covered)
    img = torch.where(covered_t[..., None], torch.from_numpy(grey)[..., None, None], img)

    # the camera: gain, background level and pixel noise
    cam = [CAMERAS[c] for c in plan["cam"]]
    gain = torch.tensor([c["gain"] for c in cam], dtype=torch.float32)[:, None, None, None]
    bg = torch.tensor([c["background"] for c in cam], dtype=torch.float32)[:, None, None, None]
    sd = torch.tensor([c["noise"] for c in cam], dtype=torch.float32)[:, None, None, None]
    noise = torch.from_numpy(rng.standard_normal(size=(n, t, height, width)).astype(np.float32))
    img = (bg + gain * img + sd * noise).clamp_(0, 1)
    x = torch.from_numpy(np.clip(np.rint(img.numpy() * 255.0), 0, 255).astype(np.uint8))[:, :, None]
    return x, covered_t


def digit_tracklets(n_train: int = 8000, n_test: int = 2000, *, seed: int = 0, frames: int = 4, height: int = 32,
                    width: int = 16, cameras: int = 3, tracklets_per_identity: int = 4, occlusion: float = 0.35,
                    whole: float = 0.25, shift: float = 1.0, scale: float = 0.05, rotation: float = 5.0,
                    digit_height: tuple[float, float] = (0.7, 0.85), clutter: int = 0,
                    clear_frame: bool = True) -> TrackletTask:
    """Tracklets of individual handwritten digits under several cameras, with jitter, occlusion and clutter.

    ``n_train`` / ``n_test`` count frames (``n // frames`` tracklets). ``occlusion``: the chance that a frame
    is occluded; of those, ``whole`` are wholly covered, the rest over a band of a quarter or half of the
    height. ``clutter`` adds fragments to every camera's count. ``clear_frame`` (default) keeps at least one frame
    of every tracklet free of occlusion; ``clear_frame=False`` with ``occlusion=1`` and ``whole=0`` is the
    partial-occlusion variant: every frame has one band hidden, no frame is clear or wholly hidden, so only a model
    that takes each region from the frames where it is visible (STA) can see the whole digit; a per-frame weight
    (temporal attention) cannot pick a clean frame. The random draws are the same either way. See the module
    docstring for the protocol.

    Why: a re-ID model must recognise *this* digit, not its class, from frames that are each incomplete.
    Averaging frames (temporal average pooling) mixes the grey obstacle into every body region of the clip;
    STA scores each horizontal region of each frame by its activation energy and can take each region from
    the frames where it is visible.
    """
    name = "digit_tracklets"
    _check_common(name, n_train, n_test, seed)
    _require(_is_int(frames) and frames >= 1, name, "frames", f"must be a positive int, got {frames!r}")
    _require(_is_int(height) and _is_int(width) and height >= 8 and width >= 4, name, "height/width",
             f"need height >= 8 and width >= 4, got {height}×{width}")
    _require(_is_int(cameras) and 1 <= cameras <= len(CAMERAS), name, "cameras",
             f"must be in [1, {len(CAMERAS)}], got {cameras!r}")
    _require(_is_int(tracklets_per_identity) and tracklets_per_identity >= 1, name, "tracklets_per_identity",
             f"must be a positive int, got {tracklets_per_identity!r}")
    for what, value in (("occlusion", occlusion), ("whole", whole)):
        _require(0.0 <= value <= 1.0 and math.isfinite(value), name, what, f"must be in [0, 1], got {value!r}")
    lo, hi = digit_height
    _require(0 < lo <= hi <= 1, name, "digit_height", f"needs 0 < min <= max <= 1 (fractions of height), got {digit_height}")
    _require(_is_int(clutter) and clutter >= 0, name, "clutter", f"must be a non-negative int, got {clutter!r}")
    _require(isinstance(clear_frame, bool), name, "clear_frame", f"must be a bool, got {clear_frame!r}")

    out = {}
    for split, n, offset in (("train", n_train, 0), ("test", n_test, 1)):
        rng = np.random.default_rng([seed, offset, _task_salt(name)])
        plan = _split_tracklets(split, n, frames, tracklets_per_identity, cameras, rng)
        x, occ = _render_split(plan, frames=frames, height=height, width=width, digit_height=digit_height,
                               shift=shift, scale=scale, rotation=rotation, occlusion=occlusion, whole=whole,
                               clutter_scale=clutter, clear_frame=clear_frame, rng=rng)
        out[split] = (x, plan, occ)
    (xtr, ptr, otr), (xte, pte, ote) = out["train"], out["test"]
    long = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.int64)  # noqa: E731
    info = dict(frames=frames, height=height, width=width, cameras=cameras, tracklets_per_identity=tracklets_per_identity,
                occlusion=occlusion, whole=whole, shift=shift, scale=scale, rotation=rotation, digit_height=digit_height,
                clutter=clutter, clear_frame=clear_frame,
                seed=seed, train_identities=ptr["n_ids"], test_identities=pte["n_ids"],
                counts="n_train and n_test count frames", attention="spatial-temporal",
                why=("An identity is one individual handwritten digit, recognised across cameras from clips whose "
                     "frames are each jittered and often partly or wholly hidden by a grey obstacle. Temporal "
                     "average pooling mixes the obstacle into every region of the clip's feature; STA weights each "
                     "horizontal region of each frame by its activation energy and takes each region from the "
                     "frames where it is visible, so it should lose less to occlusion."))
    return TrackletTask(name, xtr, long(ptr["label"]), xte, long(pte["label"]), int(ptr["n_ids"]),
                        long(ptr["cam"]), long(pte["cam"]), torch.as_tensor(pte["query"]), long(ptr["source"]),
                        long(pte["source"]), otr, ote, info)


TASKS["digit_tracklets"] = digit_tracklets
