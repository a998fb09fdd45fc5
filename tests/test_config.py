import pytest
import torch

from attncourse.config import PROFILES, get_profile, pick_device, seed_everything


def test_profile_from_environment(monkeypatch):
    monkeypatch.setenv("ATTNCOURSE_PROFILE", "smoke")
    assert get_profile().name == "smoke"
    monkeypatch.setenv("ATTNCOURSE_PROFILE", "FULL")
    assert get_profile().name == "full"
    monkeypatch.delenv("ATTNCOURSE_PROFILE")
    assert get_profile().name == "demo"  # a notebook with nothing set trains a demonstration, not the full run


def test_unknown_profile_lists_valid_names(monkeypatch):
    monkeypatch.setenv("ATTNCOURSE_PROFILE", "huge")
    with pytest.raises(ValueError, match=r"unknown profile 'huge'.*cpu, demo, full, smoke"):
        get_profile()
    with pytest.raises(ValueError, match="valid profiles"):
        get_profile("tiny")


def test_smoke_is_smaller_than_full():
    s, c, f = PROFILES["smoke"], PROFILES["cpu"], PROFILES["full"]
    assert s.n_train < c.n_train < f.n_train and s.epochs <= c.epochs <= f.epochs and s.seeds <= c.seeds <= f.seeds
    assert s.with_(epochs=3).epochs == 3 and s.epochs == 1
    d = PROFILES["demo"]  # a notebook's live demonstration: between CI's smoke and the reduced cpu run
    assert s.n_train < d.n_train <= c.n_train and s.epochs < d.epochs < f.epochs and d.seeds == 1


def test_the_command_line_runs_experiments_at_the_full_profile_unless_told(monkeypatch, capsys):
    from attncourse.__main__ import main

    seen = []

    def fake_run_all(names, profile, *args, **kwargs):
        seen.append(profile)
        return {"failed": [], "results": {}, "wall_s": 0}

    monkeypatch.delenv("ATTNCOURSE_PROFILE", raising=False)
    monkeypatch.setattr("attncourse.experiments.run_all", fake_run_all)
    assert main(["run-all", "--only", "senet_cluttered", "--merge-only"]) == 0
    monkeypatch.setenv("ATTNCOURSE_PROFILE", "smoke")
    assert main(["run-all", "--only", "senet_cluttered", "--merge-only"]) == 0
    assert seen == ["full", "smoke"]


def test_seeding_reproduces_and_rejects_negative():
    seed_everything(3)
    a = torch.randn(5)
    seed_everything(3)
    assert torch.equal(a, torch.randn(5))
    with pytest.raises(ValueError):
        seed_everything(-1)


def test_pick_device_override():
    assert pick_device("cpu").type == "cpu"
    assert pick_device().type in {"cpu", "cuda", "mps"}


def test_demo_note_states_the_budget_the_measured_time_and_that_it_is_no_result():
    from attncourse.config import demo_note
    from attncourse.train import History

    a, b = History(seconds=[1.5, 2.0]), History(seconds=[3.0])
    note = demo_note(PROFILES["demo"], {"a": a, "b": b}, 2000, "cpu", unit="training scenes")
    assert "`demo` budget" in note and "2 network(s)" in note and "2,000 training scenes" in note
    assert "trained in 6 s" in note and "not results" in note  # 1.5 + 2.0 + 3.0, the histories' own times
    assert "`full` profile" in demo_note(PROFILES["full"], a, 8000, "cpu")
    with pytest.raises(ValueError, match="demo_note"):
        demo_note(PROFILES["demo"], {}, 10)
