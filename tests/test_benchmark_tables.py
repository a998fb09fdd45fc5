"""The recorded benchmark tables the package ships (``attncourse.benchmark_table``): each names where and how it
was measured, the verdict on the machine's load agrees with what was measured, the loader refuses a missing
table by naming the shipped ones, and every table a notebook shows is shipped. No timing is asserted."""
import importlib
import json
import re
import sys
from pathlib import Path

import pytest

import attncourse as ac
from attncourse import benchmark_tables as bt

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(bt.benchmark_tables_dir().glob("*.json"))
ENV_KEYS = {"device", "cpu", "threads", "torch", "python", "date", "command", "load_before", "load_after",
            "others_cpu_cores", "waited_for_cpu", "machine"}


@pytest.fixture(scope="module")
def harness():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        yield importlib.import_module("_harness")
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def test_tables_are_shipped():
    assert {"attention_blocks", "pam_memory", "train_throughput"} <= {n for n, _ in ac.list_benchmark_tables()}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_a_shipped_table_names_its_machine_and_run(path):
    data = json.loads(path.read_text())
    assert path.stem == f"{data['name']}_{data['device']}"
    table = ac.benchmark_table(data["name"], data["device"])
    assert ENV_KEYS <= set(table.env), f"{path.name} lacks {sorted(ENV_KEYS - set(table.env))}"
    env = table.env
    assert env["command"].startswith(f"python benchmarks/{data['name']}.py") and "--record" in env["command"]
    assert len(env["load_before"]) == len(env["load_after"]) == 3
    assert env["machine"] in {"quiet", "loaded"} and table.rows
    assert f"- machine: {env['machine']}" in table.markdown  # the printed table states the verdict
    text = str(table)
    assert env["device"] in text and env["torch"] in text and env["command"] in text and env["cpu"] in text
    assert f"{env['threads']} thread" in text and env["date"] in text
    assert ("quiet machine" in text) == table.quiet and ("LOADED" in text) == (not table.quiet)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_the_verdict_on_the_machine_follows_the_rule(path, harness):
    env = json.loads(path.read_text())["env"]
    assert env["machine"] == harness.machine_verdict(env)


def test_the_machine_verdict(harness):
    assert harness.machine_verdict({"others_cpu_cores": 0.02}) == "quiet"
    assert harness.machine_verdict({"others_cpu_cores": 0.8}) == "loaded"
    assert harness.machine_verdict({"others_cpu_cores": None}) == "loaded"  # unmeasured is never called quiet
    assert harness.machine_verdict({}) == "loaded"


@pytest.mark.parametrize("name, arms", [("attention_blocks", {"efficient", "sdpa_noncontig", "naive", "timm"}),
                                        ("pam_memory", {"efficient", "sdpa_unpadded", "naive"})])
def test_block_tables_have_every_arm_at_every_size(name, arms):
    rows = ac.benchmark_table(name).rows
    by_size = {}
    for r in rows:
        by_size.setdefault(r["size"], set()).add(r["arm"])
        assert r["median_ms"] > 0 and r["peak_mem_bytes"] > 0 and r["tokens"] == r["size"] ** 2
    assert by_size and all(found == arms for found in by_size.values())


def test_a_missing_table_names_the_shipped_ones():
    with pytest.raises(ValueError, match=r"no recorded table 'no_such_bench'.*attention_blocks \(cpu\)"):
        ac.benchmark_table("no_such_bench")
    with pytest.raises(ValueError, match=r"device 'tpu'.*pam_memory \(cpu\)"):
        ac.benchmark_table("pam_memory", device="tpu")
    with pytest.raises(ValueError, match="plain words"):
        ac.benchmark_table("../recorded/danet_scenes")


def test_a_recorded_table_round_trips(tmp_path, harness, monkeypatch):
    env = {"device": "cpu (x86_64, 1 threads)", "cpu": "Some CPU", "threads": 1, "torch": "2.x", "python": "3.x",
           "date": "2026-01-01T00:00:00+00:00", "command": "python benchmarks/toy.py --record",
           "load_before": [0.1, 0.1, 0.1], "load_after": [1.0, 0.3, 0.1], "others_cpu_cores": 0.01}
    env["machine"] = harness.machine_verdict(env)
    harness.record("toy", "cpu", "# Toy\n\n| a |\n|---|\n| 1 |\n", env, [{"a": 1}], folder=tmp_path)
    monkeypatch.setattr(bt, "benchmark_tables_dir", lambda: tmp_path)
    table = ac.benchmark_table("toy")
    assert table.rows == [{"a": 1}] and table.quiet and table.env == env
    assert str(table).startswith("Recorded benchmark 'toy' (cpu (x86_64, 1 threads)), measured on a quiet machine")
    assert "| 1 |" in str(table)
    assert ac.list_benchmark_tables() == [("toy", "cpu")]


def test_package_data_includes_the_tables():
    import tomllib

    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["attncourse"]
    pkg = ROOT / "attncourse"
    covered = {p for g in globs for p in pkg.glob(g)}
    assert SHIPPED and set(SHIPPED) <= covered


def _notebook_sources():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            yield path.name, "".join(cell["source"])


def test_every_table_a_notebook_shows_is_shipped():
    shown = [(nb, m.group(1), m.group(3) or "cpu") for nb, src in _notebook_sources()
             for m in re.finditer(r"benchmark_table\(\s*[\"'](\w+)[\"']\s*(,\s*(?:device\s*=\s*)?[\"'](\w+)[\"'])?", src)]
    assert {nb for nb, _, _ in shown} >= {"04_nonlocal.ipynb", "06_danet.ipynb"}
    shipped = set(ac.list_benchmark_tables())
    missing = [(nb, name, dev) for nb, name, dev in shown if (name, dev) not in shipped]
    assert not missing, f"notebooks show tables the package does not ship: {missing}"


def test_no_notebook_sends_the_learner_to_the_repository_for_a_table():
    stale = [nb for nb, src in _notebook_sources() if "No benchmark table here" in src or "../results/" in src]
    assert not stale, stale
