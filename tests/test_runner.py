"""The evidence engine: resumable jobs shared across experiments, run-all, recorded checkpoints."""
import os
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import attncourse as ac
from attncourse.experiments import (BackboneArm, CheckpointMismatch, Job, NetArm, arm_spec, checkpoint_path,
                                    get_experiment, load_or_train, load_results, load_trained, merge_experiment,
                                    plan_jobs, run_all, run_job)

SMOKE = ac.get_profile("smoke")
TINY = SMOKE.with_(n_train=96, n_test=48, epochs=2, batch_size=32)


def test_identical_runs_of_different_experiments_are_one_job():
    ids = {name: Job(name, "baseline", 0, SMOKE).id
           for name in ("foundations_baseline", "senet_cluttered", "cbam_order", "mixed_compare")}
    assert len(set(ids.values())) == 1  # the same baseline on the same task and recipe
    assert Job("senet_cluttered", "se", 0, SMOKE).id == Job("mixed_compare", "se", 0, SMOKE).id
    # the same block under another arm name is the same run too
    assert Job("cbam_order", "channel_spatial", 0, SMOKE).id == Job("mixed_compare", "cbam", 0, SMOKE).id
    assert Job("senet_cluttered", "se", 0, SMOKE).id != Job("senet_cluttered", "se", 1, SMOKE).id
    assert Job("senet_cluttered", "se", 0, SMOKE).id != Job("senet_cluttered", "eca", 0, SMOKE).id
    assert Job("senet_cluttered", "se", 0, SMOKE).id != Job("senet_cluttered", "se", 0, SMOKE.with_(epochs=2)).id
    # the channel-cue baseline trains on another task: another job
    assert Job("senet_channel_cue", "baseline", 0, SMOKE).id != ids["senet_cluttered"]


def test_arm_specs_name_what_is_built():
    assert arm_spec(BackboneArm("se", {"reduction": 4})) != arm_spec(BackboneArm("se", {"reduction": 8}))
    assert arm_spec(BackboneArm("none", {"reduction": 4})) == arm_spec(BackboneArm("none"))
    from attncourse.models import InceptionNet, PlainNet
    assert arm_spec(NetArm(InceptionNet)) != arm_spec(NetArm(PlainNet))
    assert "attention" in arm_spec(NetArm(InceptionNet, {"attention": "se"}))
    with pytest.raises(TypeError, match="stable description"):
        arm_spec(lambda task: None)
    for name in ac.list_experiments():  # every registered arm can be recognised by what it trains
        for builder in get_experiment(name).arms.values():
            arm_spec(builder)


def test_plan_puts_first_seeds_first_then_completes_experiments_in_order():
    jobs = plan_jobs(["senet_cluttered", "nonlocal_pairs"], SMOKE, [0, 1, 2])
    n1, n2 = len(get_experiment("senet_cluttered").arms), len(get_experiment("nonlocal_pairs").arms)
    assert {j.seed for j in jobs[:n1 + n2]} == {0}
    assert [j.experiment for j in jobs[:n1 + n2]] == ["senet_cluttered"] * n1 + ["nonlocal_pairs"] * n2
    rest = jobs[n1 + n2:]
    assert [j.experiment for j in rest] == ["senet_cluttered"] * 2 * n1 + ["nonlocal_pairs"] * 2 * n2
    assert len({j.id for j in jobs}) == len(jobs) == 3 * (n1 + n2)
    with pytest.raises(ValueError, match="unknown arms"):
        plan_jobs(["senet_cluttered"], SMOKE, [0], arms=["nope"])


def test_a_stopped_job_resumes_and_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    from attncourse.objectives import Classification

    job = Job("foundations_baseline", "baseline", 0, TINY)
    reference = run_job(job, tmp_path / "ref")

    calls = {"n": 0}
    real_evaluate = Classification.evaluate

    def crash_on_second_epoch(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("stopped")
        return real_evaluate(*a, **kw)

    monkeypatch.setattr(Classification, "evaluate", crash_on_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        run_job(job, tmp_path / "store")
    folder = tmp_path / "store" / job.id
    assert (folder / "train.pt").exists() and not (folder / "run.json").exists()
    monkeypatch.setattr(Classification, "evaluate", real_evaluate)
    resumed = run_job(job, tmp_path / "store")
    assert resumed["history"]["test_acc"] == pytest.approx(reference["history"]["test_acc"])
    assert resumed["history"]["train_loss"] == pytest.approx(reference["history"]["train_loss"])
    assert (folder / "run.json").exists() and not (folder / "train.pt").exists()
    assert run_job(job, tmp_path / "store") == resumed  # finished: not trained again


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A tiny run-all of two experiments into a temporary store and results folder."""
    root = tmp_path_factory.mktemp("recorded")
    log = root / "log.txt"
    with open(log, "w") as fh:
        out = run_all(["foundations_baseline", "senet_cluttered"], TINY, 1, arms=None, jobs=1,
                      store=root / "store", out_dir=root / "results", log=fh)
    return root, out, log.read_text()


def test_run_all_merges_results_and_seed0_checkpoints(recorded):
    root, out, log = recorded
    assert out["failed"] == [] and set(out["results"]) == {"foundations_baseline", "senet_cluttered"}
    assert "5 distinct" in log and "ETA" in log  # the shared baseline trained once
    res = load_results("senet_cluttered", "smoke", root / "results")
    assert set(res["arms"]) == set(get_experiment("senet_cluttered").arms)
    for key in ("device", "torch", "profile", "seeds", "git_commit", "settings", "created", "task_info"):
        assert key in res
    base = load_results("foundations_baseline", "smoke", root / "results")["arms"]["baseline"]
    assert base["runs"][0]["final_test_acc"] == res["arms"]["baseline"]["runs"][0]["final_test_acc"]
    for arm in res["arms"]:
        assert checkpoint_path(root / "results", "senet_cluttered", arm, "smoke").exists()
    with open(root / "again.txt", "w") as fh:  # everything finished: a second call trains nothing
        again = run_all(["senet_cluttered"], TINY, 1, store=root / "store", out_dir=root / "results", log=fh)
    assert "0 to train" in (root / "again.txt").read_text() and again["failed"] == []


def test_load_trained_gives_the_recorded_model_in_eval_mode(recorded):
    root, _, _ = recorded
    model = load_trained("senet_cluttered", "se", profile="smoke", folder=root / "results")
    assert not model.training
    prov = model.provenance
    for key in ("experiment", "arm", "seed", "profile", "device", "torch", "git_commit", "final_test_acc", "arm_spec"):
        assert key in prov, key
    assert prov["arm"] == "se" and prov["source"] == "recorded"
    run = load_results("senet_cluttered", "smoke", root / "results")["arms"]["se"]["runs"][0]
    assert prov["final_test_acc"] == run["final_test_acc"]
    task = ac.make_task("cluttered_digits", TINY)  # the recorded weights reproduce the recorded accuracy
    _, acc = ac.evaluate(model, task.x_test, task.y_test)
    assert acc == pytest.approx(run["final_test_acc"], abs=0.03)
    with pytest.raises(FileNotFoundError, match="run-all --only senet_cluttered"):
        load_trained("senet_cluttered", "se", profile="cpu", folder=root / "results")
    with pytest.raises(ValueError, match="no arm"):
        load_trained("senet_cluttered", "nope", profile="smoke", folder=root / "results")


def _edit_checkpoint(path, dest, edit):
    ckpt = torch.load(path, weights_only=False)
    edit(ckpt)
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, dest)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["state_dict"].pop(next(iter(c["state_dict"]))), "lacks"),
    (lambda c: c["state_dict"].__setitem__("extra.weight", torch.zeros(1)), "no longer has"),
    (lambda c: c["state_dict"].__setitem__(next(iter(c["state_dict"])), torch.zeros(3, 3)), "shape"),
    (lambda c: c["provenance"].__setitem__("arm_spec", "BackboneArm('se', {'reduction': 16})"), "reduction': 16"),
])
def test_a_checkpoint_that_no_longer_fits_its_arm_is_refused_clearly(recorded, tmp_path, edit, message):
    root, _, _ = recorded
    src = checkpoint_path(root / "results", "senet_cluttered", "se", "smoke")
    _edit_checkpoint(src, checkpoint_path(tmp_path, "senet_cluttered", "se", "smoke"), edit)
    with pytest.raises(CheckpointMismatch, match=message) as err:
        load_trained("senet_cluttered", "se", profile="smoke", folder=tmp_path)
    assert "senet_cluttered/se" in str(err.value)


def test_load_or_train_falls_back_to_a_labelled_live_model(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ATTNCOURSE_PROFILE", "smoke")
    model = load_or_train("senet_cluttered", "eca", profile="cpu", folder=tmp_path, epochs=1)
    out = capsys.readouterr().out
    assert model.provenance["source"] == "live" and not model.training
    assert "python -m attncourse run-all --only senet_cluttered" in out and "demonstration" in out


def test_load_or_train_prefers_the_recorded_model(recorded, capsys):
    root, _, _ = recorded
    model = load_or_train("senet_cluttered", "se", profile="smoke", folder=root / "results")
    assert model.provenance["source"] == "recorded" and "Loaded the recorded" in capsys.readouterr().out


def test_cli_run_all_reports_progress_and_is_resumable(tmp_path):
    cmd = [sys.executable, "-m", "attncourse", "run-all", "--only", "foundations_baseline", "--profile", "smoke",
           "--seeds", "2", "--jobs", "2", "--device", "cpu", "--store", str(tmp_path / "s"), "--out-dir",
           str(tmp_path / "r")]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    assert "[2/2]" in first.stderr and "merged foundations_baseline" in first.stderr
    res = json.loads((tmp_path / "r" / "foundations_baseline.smoke.json").read_text())
    assert res["seeds"] == [0, 1] and len(res["arms"]["baseline"]["runs"]) == 2
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0 and "0 to train" in second.stderr
    fresh = cmd[:-4] + ["--store", str(tmp_path / "empty"), "--out-dir", str(tmp_path / "r2"), "--merge-only"]
    merge_only = subprocess.run(fresh, capture_output=True, text=True, timeout=600)  # nothing finished: nothing trains
    assert merge_only.returncode == 0 and "0 to train" in merge_only.stderr and not (tmp_path / "r2").exists()
    bad = subprocess.run(cmd[:4] + ["--only", "nope"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unknown experiment" in bad.stderr


def test_two_processes_never_train_the_same_job(tmp_path):
    import fcntl

    job = Job("foundations_baseline", "baseline", 0, TINY)
    folder = tmp_path / job.id
    folder.mkdir(parents=True)
    with open(folder / "lock", "w") as held:  # another process is training it
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(RuntimeError, match="another process"):
            run_job(job, tmp_path)
    assert run_job(job, tmp_path)["seed"] == 0  # free again: it trains


def test_a_store_without_weights_still_merges_when_the_checkpoint_holds_that_run(recorded, tmp_path):
    import shutil

    root, _, _ = recorded
    store = tmp_path / "store"  # only the run.json files: what a later session finds in results/runs
    for run in (root / "store").glob("*/run.json"):
        (store / run.parent.name).mkdir(parents=True)
        shutil.copy(run, store / run.parent.name / "run.json")
    out = tmp_path / "results"
    shutil.copytree(root / "results" / "checkpoints", out / "checkpoints")
    res = merge_experiment("senet_cluttered", TINY, [0], store=store, out_dir=out)
    assert res is not None and set(res["arms"]) == set(get_experiment("senet_cluttered").arms)
    # a checkpoint of another run is not silently kept
    ckpt = checkpoint_path(out, "senet_cluttered", "se", "smoke")
    data = torch.load(ckpt, weights_only=False)
    data["provenance"]["job"] = "another-run"
    torch.save(data, ckpt)
    with pytest.warns(UserWarning, match="holds another run"):  # the results merge; the checkpoint is not replaced
        assert merge_experiment("senet_cluttered", TINY, [0], store=store, out_dir=out) is not None
    assert torch.load(ckpt, weights_only=False)["provenance"]["job"] == "another-run"


def _children(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.add(int(entry))
    return found


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc to find the workers")
def test_sigterm_stops_run_all_and_its_workers(tmp_path):
    """`kill` / `pkill` of a parallel run-all must not leave its spawn workers training as orphans."""
    import signal
    import subprocess
    import sys
    import time

    # full-profile jobs take minutes: the run can only end within the timeout below if its workers are stopped
    code = ("from attncourse.experiments import run_all\n"
            "run_all(['nonlocal_pairs'], 'full', 1, jobs=2, store=%r, out_dir=%r)\n" % (str(tmp_path / "s"), str(tmp_path / "o")))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: set[int] = set()
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        workers = {c for c in _children(proc.pid) if "spawn_main" in open(f"/proc/{c}/cmdline").read()}
        if len(workers) >= 2:
            break
        time.sleep(0.2)
    if proc.poll() is not None or len(workers) < 2:
        proc.kill()
        pytest.skip("run-all finished or never started two workers in time on this machine")
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        for w in workers:
            os.kill(w, signal.SIGKILL)
        pytest.fail("run-all did not stop within 60 s of SIGTERM: it waited for its workers' jobs")
    time.sleep(1)
    alive = {w for w in workers if os.path.exists(f"/proc/{w}") and open(f"/proc/{w}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"}
    assert not alive, f"workers still running after SIGTERM: {alive}"
