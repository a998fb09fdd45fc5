"""Recorded results and trained checkpoints: where they live, how they are written and loaded.

They ship *inside the package* (``attncourse/recorded/``), so a ``pip install`` of the course (Colab) has
every number and trained model the notebooks show::

    attncourse/recorded/<experiment>.json                  full-profile results (<experiment>.<profile>.json otherwise)
    attncourse/recorded/checkpoints/<experiment>/<arm>.pt  trained weights of seed 0 (…/<arm>.<profile>.pt otherwise)

``$ATTNCOURSE_RESULTS`` names another folder of the same layout; it is searched first and receives what
new runs write.

A checkpoint holds ``{"state_dict", "provenance"}``; the provenance names the experiment, arm, seed,
profile, what the arm builds (``arm_spec``), the task's shapes, device, torch, git commit and the final
test accuracy. :func:`load_trained` rebuilds the arm from today's code and refuses, with a message that
says what changed, a checkpoint that no longer fits it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from .core import METRIC_NAMES, arm_spec, get_experiment, verdict

__all__ = ["package_results_dir", "results_dir", "results_path", "checkpoint_path", "load_results", "save_trained",
           "load_trained", "load_or_train", "findings", "CheckpointMismatch"]

ENV_VAR = "ATTNCOURSE_RESULTS"


class CheckpointMismatch(ValueError):
    """A recorded checkpoint does not fit the code that builds its arm today."""


def package_results_dir() -> Path:
    """The folder of recorded results inside the installed package (``attncourse/recorded``)."""
    return Path(__file__).resolve().parents[1] / "recorded"


def results_dir() -> Path:
    """Where results are written: ``$ATTNCOURSE_RESULTS`` when set, else the package's recorded folder."""
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else package_results_dir()


def _search_dirs(folder) -> list[Path]:
    if folder is not None:
        return [Path(folder)]
    env = os.environ.get(ENV_VAR)
    return ([Path(env)] if env else []) + [package_results_dir()]


def results_path(folder, name: str, profile: str = "full") -> Path:
    return Path(folder) / (f"{name}.json" if profile == "full" else f"{name}.{profile}.json")


def checkpoint_path(folder, experiment: str, arm: str, profile: str = "full") -> Path:
    return Path(folder) / "checkpoints" / experiment / (f"{arm}.pt" if profile == "full" else f"{arm}.{profile}.pt")


def load_results(name: str, profile: str = "full", folder: str | os.PathLike | None = None) -> dict | None:
    """The results dict of experiment ``name`` for ``profile``, or ``None`` when none was recorded.

    Searched in ``folder`` when given, else in ``$ATTNCOURSE_RESULTS`` and then the package's recorded folder.
    """
    for d in _search_dirs(folder):
        path = results_path(d, name, profile)
        if path.exists():
            return json.loads(path.read_text())
    return None


def findings(name: str, arms=None, baseline: str | None = None, profile: str = "full") -> list[str]:
    """What the recorded run of experiment ``name`` found: one computed sentence per arm (see :func:`verdict`).

    ``arms`` picks and orders the arms to state (default: every arm but the baseline); ``baseline`` is the arm they
    are measured against (default: the experiment's first arm). Arms the recorded run does not cover get a sentence
    saying so. With no recorded run the list holds one sentence that says how to record it. A notebook's summary
    prints these, so it states what was found rather than pointing elsewhere::

        for line in ac.findings("danet_scenes", ["danet", "cam"]):
            print("•", line)
    """
    res = load_results(name, profile)
    if res is None:
        return [f"{name}: no {profile}-profile run is recorded yet; record one with "
                f"`python -m attncourse run-all --only {name} --profile {profile}`."]
    ran = list(res["arms"])
    base = baseline if baseline is not None else ran[0]
    if base not in ran:
        raise ValueError(f"findings: no baseline arm {base!r} in the recorded {name!r}; arms: {ran}")
    wanted = [a for a in ran if a != base] if arms is None else list(arms)
    planned = set(get_experiment(name).arms) | set(ran)
    unknown = [a for a in wanted if a not in planned]
    if unknown:
        raise ValueError(f"findings: {name!r} has no arm(s) {unknown}; arms: {sorted(planned)}")
    return [verdict(res, arm, baseline=base) if arm in ran else
            f"{arm}: not in the recorded {name} run, so nothing here says whether it helps." for arm in wanted]


def save_trained(path, model: nn.Module, provenance: dict) -> Path:
    """Write ``model``'s float32 CPU weights and their provenance atomically to ``path``."""
    from ..train import save_checkpoint

    state = {k: v.detach().float().cpu().clone() if v.is_floating_point() else v.detach().cpu().clone()
             for k, v in model.state_dict().items()}
    return save_checkpoint(path, {"state_dict": state, "provenance": dict(provenance)})


def _explain_mismatch(experiment: str, arm: str, model: nn.Module, state: dict) -> str | None:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: recorded {tuple(state[k].shape)}, code {tuple(own[k].shape)}"
              for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if not (missing or unexpected or shapes):
        return None
    parts = []
    if missing:
        parts.append(f"{len(missing)} tensor(s) the code has but the checkpoint lacks (e.g. {', '.join(missing[:3])})")
    if unexpected:
        parts.append(f"{len(unexpected)} tensor(s) in the checkpoint the code no longer has (e.g. {', '.join(unexpected[:3])})")
    if shapes:
        parts.append(f"{len(shapes)} shape change(s) (e.g. {'; '.join(shapes[:3])})")
    return f"{experiment}/{arm}: the checkpoint does not fit today's model: " + "; ".join(parts)


def load_trained(experiment: str, arm: str, seed: int = 0, profile: str = "full", folder=None,
                 device="cpu") -> nn.Module:
    """The recorded trained model of ``experiment``'s ``arm`` (seed 0 is recorded), in eval mode.

    The model is built by today's code for that arm and loaded strictly; ``model.provenance`` says where the
    weights come from. Raises ``FileNotFoundError`` when nothing was recorded and :class:`CheckpointMismatch`
    (a ``ValueError``) when the checkpoint no longer fits the arm's code, naming what changed.
    """
    exp = get_experiment(experiment)
    if arm not in exp.arms:
        raise ValueError(f"load_trained: experiment {experiment!r} has no arm {arm!r}; arms: {list(exp.arms)}")
    if seed != 0:
        raise ValueError(f"load_trained: only seed 0 is recorded for each arm, got seed={seed}")
    paths = [checkpoint_path(d, experiment, arm, profile) for d in _search_dirs(folder)]
    path = next((p for p in paths if p.exists()), None)
    if path is None:
        raise FileNotFoundError(f"no recorded checkpoint for {experiment}/{arm} ({profile} profile); looked in "
                                f"{', '.join(str(p) for p in paths)}. Make one with: "
                                f"python -m attncourse run-all --only {experiment} --profile {profile}")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    prov = ckpt.get("provenance", {})
    spec_now = arm_spec(exp.arms[arm])
    if prov.get("arm_spec") not in (None, spec_now):
        raise CheckpointMismatch(f"{experiment}/{arm}: the checkpoint was trained for {prov['arm_spec']}, but the "
                                 f"arm now builds {spec_now}. Re-run: python -m attncourse run-all --only "
                                 f"{experiment} --profile {profile}")
    shape = prov.get("task_shape", {})
    stand_in = SimpleNamespace(in_channels=shape.get("in_channels", 1), num_classes=shape.get("num_classes", 10))
    model = exp.arms[arm](stand_in)
    problem = _explain_mismatch(experiment, arm, model, ckpt["state_dict"])
    if problem:
        raise CheckpointMismatch(problem + f". Re-run: python -m attncourse run-all --only {experiment} --profile {profile}")
    model.load_state_dict(ckpt["state_dict"], strict=True)
    model.provenance = {**prov, "source": "recorded", "path": str(path)}
    return model.to(device).eval()


def load_or_train(experiment: str, arm: str, task=None, *, profile: str = "full", epochs: int | None = None,
                  folder=None, verbose: bool = True) -> nn.Module:
    """The trained model the notebooks picture: the recorded checkpoint, or else a model trained now.

    With no recorded checkpoint (or one that no longer fits), it says so and how to record one, then trains
    the arm live on ``task`` (default: the experiment's task at ``$ATTNCOURSE_PROFILE``) — a demonstration
    model, labelled ``model.provenance["source"] == "live"``. Returned in eval mode on the CPU.
    """
    try:
        model = load_trained(experiment, arm, profile=profile, folder=folder)
        if verbose:
            p = model.provenance
            print(f"Loaded the recorded {experiment}/{arm} model: {p.get('profile')} profile, seed {p.get('seed')}, "
                  f"test {METRIC_NAMES.get(p.get('metric', 'accuracy'), p.get('metric')) or 'accuracy'} "
                  f"{100 * p.get('final_test_acc', float('nan')):.1f} %, "
                  f"trained on {p.get('device')}.")
        return model
    except (FileNotFoundError, CheckpointMismatch) as err:
        reason = str(err)
    from ..config import get_profile, seed_everything
    from ..data import make_task
    from ..train import fit

    exp = get_experiment(experiment)
    prof = get_profile()
    task = task if task is not None else make_task(exp.task, prof, seed=0, **exp.task_kwargs)
    if verbose:
        print(f"{reason}\nTraining {experiment}/{arm} live instead ({prof.name} profile): a demonstration model, "
              "not the recorded result.")
    seed_everything(0)
    model = exp.arms[arm](task)
    hist = fit(model, task, epochs=epochs or max(1, round(prof.epochs * exp.epochs_scale)), batch_size=prof.batch_size,
               seed=0, device="cpu", progress=False, **exp.fit_kwargs)
    model.provenance = {"source": "live", "experiment": experiment, "arm": arm, "profile": prof.name, "seed": 0,
                        "final_test_acc": hist.final_test_acc}
    return model.cpu().eval()
