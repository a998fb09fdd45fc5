"""Module 09's experiments: registered, sharing module 05's cluttered-digits runs, every arm built and run."""
from __future__ import annotations

import pytest
import torch

from attncourse.blocks.position import CoordAtt, ShuffleAttention
from attncourse.config import get_profile
from attncourse.cost import count_params
from attncourse.data import make_task
from attncourse.experiments import get_experiment
from attncourse.experiments.runner import Job

NAMES = ["coordatt_rows", "coordatt_rows_control", "sa_cluttered"]


def test_registered_with_their_tasks_arms_and_module():
    rows, control, sa = (get_experiment(n) for n in NAMES)
    assert all(e.module == "09_position_fusion" for e in (rows, control, sa))
    assert rows.task == control.task == "row_marker_digits" and control.task_kwargs == {"marker": "near"}
    assert list(rows.arms) == ["baseline", "se", "cbam", "coordatt"]
    assert list(control.arms) == ["baseline", "se", "coordatt"]
    assert sa.task == "cluttered_digits" and list(sa.arms) == ["baseline", "se", "cbam", "sa"]


@pytest.mark.parametrize("profile", ["smoke", "full"])
def test_sa_cluttered_shares_the_baseline_se_and_cbam_runs_with_mixed_compare(profile):
    p = get_profile(profile)
    for arm in ("baseline", "se", "cbam"):
        assert Job("sa_cluttered", arm, 1, p).id == Job("mixed_compare", arm, 1, p).id
    assert Job("coordatt_rows", "baseline", 0, p).id != Job("coordatt_rows_control", "baseline", 0, p).id
    assert Job("coordatt_rows", "se", 0, p).id == Job("coordatt_rows", "se", 0, p).id


@pytest.mark.parametrize("name", NAMES)
def test_every_arm_builds_and_classifies_a_batch_of_its_task(name):
    exp = get_experiment(name)
    task = make_task(exp.task, get_profile("smoke").with_(n_train=4, n_test=4), **exp.task_kwargs)
    x = task.float_images(task.x_train[:2])
    sizes = {}
    for arm, build in exp.arms.items():
        torch.manual_seed(0)
        net = build(task).eval()
        assert net(x).shape == (2, 10)
        sizes[arm] = count_params(net)
    assert all(sizes[arm] >= sizes["baseline"] for arm in sizes)
    if "sa" in sizes:  # SA: 6 parameters per block here (one channel per half), 3 blocks
        assert sizes["sa"] - sizes["baseline"] == 18
        assert [m.groups for m in exp.arms["sa"](task).modules() if isinstance(m, ShuffleAttention)] == [8, 16, 32]
    if "coordatt" in sizes:
        assert {m.reduced_channels for m in exp.arms["coordatt"](task).modules() if isinstance(m, CoordAtt)} == {8}
