import json
import subprocess
import sys

import pytest

from attncourse.experiments import EXPERIMENTS, get_experiment, list_experiments, load_results, run_experiment, summarize


def test_every_registered_experiment_names_a_task_and_arms():
    from attncourse.data import TASKS
    assert list_experiments()
    for name in list_experiments():
        exp = get_experiment(name)
        assert exp.task in TASKS and exp.arms, name


def test_unknown_experiment_lists_the_registered_ones():
    with pytest.raises(ValueError, match="foundations_baseline"):
        get_experiment("nope")


def test_cli_runs_an_experiment_and_writes_valid_json(tmp_path):
    import os
    env = {**os.environ, "ATTNCOURSE_RUNS": str(tmp_path / "runs")}  # never the user's run store
    proc = subprocess.run([sys.executable, "-m", "attncourse", "run", "foundations_baseline", "--profile", "smoke",
                           "--seeds", "2", "--device", "cpu", "--out-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    path = tmp_path / "foundations_baseline.smoke.json"
    res = json.loads(path.read_text())
    for key in ("device", "torch", "profile", "seeds", "git_commit", "arms", "wall_s", "created", "task_info", "settings"):
        assert key in res
    assert res["profile"] == "smoke" and res["seeds"] == [0, 1] and res["device"].startswith("cpu")
    runs = res["arms"]["baseline"]["runs"]
    assert len(runs) == 2 and all(0 <= r["final_test_acc"] <= 1 for r in runs)
    assert res["arms"]["baseline"]["params"] > 0 and res["arms"]["baseline"]["flops"] > 0
    assert load_results("foundations_baseline", "smoke", tmp_path) == res
    assert load_results("foundations_baseline", "full", tmp_path) is None
    assert summarize(res)[0]["arm"] == "baseline"
    assert "wrote" in proc.stdout
    assert (tmp_path / "checkpoints" / "foundations_baseline" / "baseline.smoke.pt").exists()


def test_cli_list_and_errors():
    out = subprocess.run([sys.executable, "-m", "attncourse", "list"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "foundations_baseline" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "attncourse", "run", "nope", "--profile", "smoke"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unknown experiment" in bad.stderr
    bad = subprocess.run([sys.executable, "-m", "attncourse", "run", "foundations_baseline", "--profile", "huge"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "valid profiles" in bad.stderr
