"""The package's layout does not change what any experiment trains.

For every registered experiment arm the fixture ``fixtures/layout_identity.json`` records what the arm builds
(state-dict keys and shapes), the runner's job id (what recorded results and checkpoints are filed under) and a
seeded forward pass. Moving a model class between files must leave all three unchanged.

The fixture was written from the code before the package was restructured; rewrite it only when an arm is
meant to change (``python tests/test_layout_identity.py --write``). Arms added later are not in the fixture
and are not compared; an arm of the fixture that is gone fails.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

FIXTURE = Path(__file__).parent / "fixtures" / "layout_identity.json"
FIXTURE_ARMS = sorted(json.loads(FIXTURE.read_text())) if FIXTURE.exists() else []


def _tensors(out):
    """Every tensor in a model's output (a tensor, a tuple/list or a dict of them), in a fixed order."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for k in sorted(out) for t in _tensors(out[k])]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _tensors(o)]
    return []


def snapshot(experiment: str, arm: str) -> dict:
    """What one arm builds, the runner's job id for it, and a summary of one seeded eval-mode forward."""
    from attncourse import get_profile, make_task
    from attncourse.experiments.core import get_experiment
    from attncourse.experiments.runner import Job

    exp = get_experiment(experiment)
    task = make_task(exp.task, get_profile("smoke").with_(n_train=16, n_test=16), seed=0, **exp.task_kwargs)
    torch.manual_seed(0)
    net = exp.arms[arm](task).eval()
    shape = (2,) + tuple(task.x_train.shape[1:])
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        outputs = _tensors(net(x))
    return {"job_id": Job(experiment, arm, 0, get_profile("full")).id,
            "state_dict": {k: list(v.shape) for k, v in net.state_dict().items()},
            "input_shape": list(shape),
            "outputs": [{"shape": list(t.shape), "sum": float(t.double().sum()), "abs_sum": float(t.double().abs().sum())}
                        for t in outputs]}


def _all_arms() -> list[str]:
    from attncourse.experiments.core import EXPERIMENTS

    return [f"{name}/{arm}" for name, exp in sorted(EXPERIMENTS.items()) for arm in exp.arms]


def test_fixture_covers_arms():
    """The fixture is present and names real experiments; every arm it records still exists."""
    assert FIXTURE_ARMS, f"missing fixture {FIXTURE}"
    missing = sorted(set(FIXTURE_ARMS) - set(_all_arms()))
    assert not missing, f"arms recorded in the fixture are no longer registered: {missing}"


@pytest.mark.parametrize("key", FIXTURE_ARMS)
def test_arm_unchanged(key):
    expected = json.loads(FIXTURE.read_text())[key]
    experiment, arm = key.split("/", 1)
    got = snapshot(experiment, arm)
    assert got["job_id"] == expected["job_id"], f"{key}: the job id changed (recorded results would be orphaned)"
    assert got["state_dict"] == expected["state_dict"], f"{key}: the state dict's keys or shapes changed"
    assert got["input_shape"] == expected["input_shape"]
    assert [o["shape"] for o in got["outputs"]] == [o["shape"] for o in expected["outputs"]]
    for g, e in zip(got["outputs"], expected["outputs"]):
        scale = max(e["abs_sum"], 1e-6)
        assert math.isclose(g["abs_sum"], e["abs_sum"], rel_tol=1e-4, abs_tol=1e-6), f"{key}: output changed"
        assert math.isclose(g["sum"], e["sum"], rel_tol=1e-4, abs_tol=1e-5 * scale), f"{key}: output changed"


def test_networks_keep_the_names_their_runs_were_recorded_under():
    """A network class that moved keeps, in arm specs, the dotted path its runs were recorded under; a subclass
    (another network) does not inherit it."""
    from attncourse import models
    from attncourse.experiments.core import NetArm, net_spec_name

    recorded_as = {models.AttnResNet: "attncourse.models.AttnResNet",
                   models.InceptionNet: "attncourse.blocks.inception.InceptionNet",
                   models.PlainNet: "attncourse.blocks.inception.PlainNet",
                   models.BranchResNet: "attncourse.branch_models.BranchResNet",
                   models.DeepStack: "attncourse.branch_models.DeepStack",
                   models.SegNet: "attncourse.segmentation_models.SegNet",
                   models.ReIDNet: "attncourse.reid_models.ReIDNet",
                   models.SkipFusionNet: "attncourse.models.SkipFusionNet"}
    for net, name in recorded_as.items():
        assert net_spec_name(net) == name
        assert repr(NetArm(net, {"b": 1, "a": 2})) == f"NetArm({name}, {{'a': 2, 'b': 1}})"

    class Wider(models.AttnResNet):
        pass

    assert net_spec_name(Wider) == f"{__name__}.test_networks_keep_the_names_their_runs_were_recorded_under.<locals>.Wider"


RECORDED = Path(__file__).resolve().parents[1] / "attncourse" / "recorded" / "checkpoints"
CHECKPOINTS = sorted(RECORDED.glob("*/*.pt"))


@pytest.mark.parametrize("path", CHECKPOINTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recorded_checkpoint_loads(path):
    """Every recorded checkpoint still loads, strictly, into the model today's code builds for its arm — or is
    refused because the arm's block declared a new ``spec_revision`` since it was trained (its training changed, so
    the old weights are not the arm's any more: they wait to be retrained, and ``load_or_train`` says so)."""
    import torch

    import attncourse as ac
    from attncourse.experiments import CheckpointMismatch, arm_spec, get_experiment

    arm, _, profile = path.name[:-len(".pt")].partition(".")  # <arm>.pt is the full profile, <arm>.<profile>.pt others
    profile = profile or "full"
    recorded_spec = torch.load(path, map_location="cpu", weights_only=False)["provenance"].get("arm_spec")
    spec_now = arm_spec(get_experiment(path.parent.name).arms[arm])
    if recorded_spec not in (None, spec_now):
        import re
        unrevised = re.sub(r", revisions?=(\{[^}]*\}|\d+)\)$", ")", spec_now)
        assert unrevised == re.sub(r", revisions?=(\{[^}]*\}|\d+)\)$", ")", recorded_spec), (spec_now, recorded_spec)
        with pytest.raises(CheckpointMismatch, match="trained for"):
            ac.load_trained(path.parent.name, arm, profile=profile)
        return
    model = ac.load_trained(path.parent.name, arm, profile=profile)
    assert model.provenance["source"] == "recorded"
    assert Path(model.provenance["path"]).resolve() == path.resolve()


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    torch.set_num_threads(1)
    records = {}
    for key in _all_arms():
        records[key] = snapshot(*key.split("/", 1))
    lines = [f"{json.dumps(k)}: {json.dumps(v, sort_keys=True)}" for k, v in sorted(records.items())]
    FIXTURE.write_text("{\n" + ",\n".join(lines) + "\n}\n")
    print(f"wrote {len(records)} arms to {FIXTURE}")
