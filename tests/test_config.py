import pytest
import torch

from attncourse.config import PROFILES, get_profile, pick_device, seed_everything


def test_profile_from_environment(monkeypatch):
    monkeypatch.setenv("ATTNCOURSE_PROFILE", "smoke")
    assert get_profile().name == "smoke"
    monkeypatch.setenv("ATTNCOURSE_PROFILE", "FULL")
    assert get_profile().name == "full"
    monkeypatch.delenv("ATTNCOURSE_PROFILE")
    assert get_profile().name == "full"


def test_unknown_profile_lists_valid_names(monkeypatch):
    monkeypatch.setenv("ATTNCOURSE_PROFILE", "huge")
    with pytest.raises(ValueError, match=r"unknown profile 'huge'.*cpu, full, smoke"):
        get_profile()
    with pytest.raises(ValueError, match="valid profiles"):
        get_profile("tiny")


def test_smoke_is_smaller_than_full():
    s, c, f = PROFILES["smoke"], PROFILES["cpu"], PROFILES["full"]
    assert s.n_train < c.n_train < f.n_train and s.epochs <= c.epochs <= f.epochs and s.seeds <= c.seeds <= f.seeds
    assert s.with_(epochs=3).epochs == 3 and s.epochs == 1


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
