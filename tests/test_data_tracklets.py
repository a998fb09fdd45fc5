"""The digit_tracklets task: identities split by source digit, the query/gallery protocol, shapes, determinism."""
from __future__ import annotations

import pytest
import torch

from attncourse.config import get_profile
from attncourse.data import make_task, source_digits
from attncourse.data.digit_tracklets import TrackletTask, digit_tracklets


@pytest.fixture(scope="module")
def task():
    return digit_tracklets(640, 320, seed=0)


def test_shapes_and_dtypes(task):
    n, t = 640 // 4, 4
    assert task.x_train.shape == (n, t, 1, 32, 16) and task.x_train.dtype == torch.uint8
    assert task.x_test.shape == (320 // 4, t, 1, 32, 16) and task.x_test.dtype == torch.uint8
    for name in ("y_train", "y_test", "cam_train", "cam_test", "sources_train", "sources_test"):
        assert getattr(task, name).dtype == torch.int64, name
    assert task.query_test.dtype == torch.bool and task.occluded_test.shape == (320 // 4, t, 32)
    assert task.in_channels == 1 and task.frames == 4 and task.image_size == (32, 16)  # C, not T
    assert task.kind == "metric" and task.num_classes == n // 4 == int(task.y_train.max()) + 1
    assert "why" in task.info and task.float_images(task.x_train[:1]).dtype == torch.float32


def test_identities_are_individual_digits_split_by_source(task):
    train_pool = set(source_digits("train")[2].tolist())
    test_pool = set(source_digits("test")[2].tolist())
    tr, te = set(task.sources_train.tolist()), set(task.sources_test.tolist())
    assert tr <= train_pool and te <= test_pool and not tr & te  # no test identity is seen in training
    # one identity = one source digit
    for y, s in ((task.y_train, task.sources_train), (task.y_test, task.sources_test)):
        pairs = set(zip(y.tolist(), s.tolist()))
        assert len(pairs) == len(set(y.tolist())) == len(set(s.tolist()))


def test_query_gallery_protocol(task):
    q, y, cam = task.query_test, task.y_test, task.cam_test
    ids = y.unique()
    assert int(q.sum()) == len(ids)  # one query per test identity
    for i in ids.tolist():
        mine = y == i
        assert int((mine & q).sum()) == 1
        qcam = int(cam[mine & q])
        gallery_cams = cam[mine & ~q].tolist()
        assert len(gallery_cams) == 3 and any(c != qcam for c in gallery_cams)  # findable from another camera
        assert gallery_cams.count(qcam) == 1  # and one same-camera tracklet, which the protocol removes
    # every identity is seen by several cameras in training too
    for i in range(task.num_classes):
        assert len(set(task.cam_train[task.y_train == i].tolist())) == 3


def test_frames_differ_and_some_are_occluded(task):
    x = task.x_train.float()
    assert (x[:, 0] != x[:, 1]).any(dim=(1, 2, 3)).all()  # per-frame jitter and noise
    frac = task.occluded_train.float().mean(-1)
    assert 0.05 < (frac > 0).float().mean() < 0.6
    assert ((frac == 1).sum(1) < task.frames).all() and ((frac > 0).sum(1) < task.frames).all()  # a clear frame remains


def test_deterministic_and_seeded():
    a, b, c = digit_tracklets(64, 64, seed=3), digit_tracklets(64, 64, seed=3), digit_tracklets(64, 64, seed=4)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.x_test, b.x_test)
    assert not torch.equal(a.x_train, c.x_train)


def test_no_occlusion_gives_the_same_tracklets_without_occluders():
    occ, clear = digit_tracklets(96, 96, seed=1), digit_tracklets(96, 96, seed=1, occlusion=0.0)
    assert not clear.occluded_test.any()
    assert torch.equal(occ.y_test, clear.y_test) and torch.equal(occ.cam_test, clear.cam_test)
    hidden = occ.occluded_test[:, :, None, :, None].expand_as(occ.x_test)
    assert hidden.any()
    assert torch.equal(occ.x_test[~hidden], clear.x_test[~hidden])  # only the occluded pixels differ


def test_make_task_and_to(task):
    small = make_task("digit_tracklets", get_profile("smoke"), seed=0)
    assert isinstance(small, TrackletTask) and len(small.x_train) == get_profile("smoke").n_train // 4
    moved = task.to("cpu")
    assert isinstance(moved, TrackletTask) and torch.equal(moved.query_test, task.query_test)
    tiny = digit_tracklets(16, 16)  # the size experiments use to read shapes
    assert tiny.num_classes == 1 and len(tiny.x_test) == 4


@pytest.mark.parametrize("kwargs, match", [({"frames": 0}, "frames"), ({"cameras": 9}, "cameras"),
                                           ({"occlusion": 1.5}, "occlusion"), ({"height": 4}, "height"),
                                           ({"seed": -1}, "seed")])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=f"digit_tracklets: invalid {match}"):
        digit_tracklets(64, 64, **kwargs)


# --------------------------------------------------------------------------- the partial-occlusion variant (module 08)
def test_partial_occlusion_hides_parts_of_every_frame_and_no_whole_frame():
    """sta_tracklets_partial's task: every frame has exactly one band (a quarter or half of its rows) hidden, no frame
    is clear or wholly hidden, and almost every row of a tracklet is visible in some frame — the case where per-region
    frame choice (STA) can see the whole digit and a per-frame weight cannot pick a clean frame."""
    from attncourse.experiments import get_experiment
    from attncourse.experiments.sta import PARTIAL_OCCLUSION

    exp, ref = get_experiment("sta_tracklets_partial"), get_experiment("sta_tracklets")
    assert exp.task == ref.task and exp.task_kwargs == PARTIAL_OCCLUSION and ref.task_kwargs == {}
    assert exp.arms == ref.arms and (exp.fit_kwargs, exp.epochs_scale) == (ref.fit_kwargs, ref.epochs_scale)
    part = digit_tracklets(640, 320, seed=0, **PARTIAL_OCCLUSION)
    for occluded in (part.occluded_train, part.occluded_test):
        frac = occluded.float().mean(-1)  # [N, T]: hidden share of each frame's rows
        h = occluded.shape[-1]
        assert set(frac.unique().tolist()) == {(h // 4) / h, (h // 2) / h}
        rows = occluded.int()
        assert ((rows[..., 1:] - rows[..., :-1]) == 1).sum(-1).le(1).all()  # one contiguous band per frame
        assert occluded.all(1).float().mean() < 0.1  # a row hidden in every frame of its tracklet is rare (~5 %)
    # the same digits, cameras and identities as the default task: only the occluders differ
    base = digit_tracklets(640, 320, seed=0)
    assert torch.equal(part.y_test, base.y_test) and torch.equal(part.cam_test, base.cam_test)
    both_clear = ~(part.occluded_test | base.occluded_test)[:, :, None, :, None].expand_as(part.x_test)
    assert torch.equal(part.x_test[both_clear], base.x_test[both_clear])


def test_clear_frame_default_keeps_a_clear_frame_even_at_full_occlusion():
    t = digit_tracklets(320, 160, seed=2, occlusion=1.0)
    assert ((t.occluded_train.any(-1)).sum(1) < t.frames).all()
    with pytest.raises(ValueError, match="digit_tracklets: invalid clear_frame"):
        digit_tracklets(64, 64, clear_frame=1)
