"""Named experiments (arms × seeds) that write ``results/<name>.json``.

An :class:`Experiment` names a diagnostic task and several *arms* (model builders). ``run_experiment``
trains every arm with every seed under a profile and writes one JSON file with the device, torch
version, profile, seeds, git commit, per-run histories and per-arm mean ± std — so a GPU run needs no
notebook, and a notebook can show the numbers with :func:`load_results`.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..config import Profile, device_name, get_profile, pick_device, seed_everything
from ..cost import count_flops, count_params
from ..data import DigitTask, make_task
from ..train import fit

__all__ = ["Experiment", "BackboneArm", "register_experiment", "list_experiments", "get_experiment", "run_experiment",
           "load_results", "results_dir", "summarize", "EXPERIMENTS"]

EXPERIMENTS: dict[str, "Experiment"] = {}


@dataclass
class Experiment:
    """A named comparison: one task, several arms, trained with the same recipe.

    ``arms`` maps an arm name to ``builder(task) -> nn.Module``. ``fit_kwargs`` go to :func:`attncourse.train.fit`
    (``epochs`` there multiplies the profile's epochs: ``epochs_scale``).
    """

    name: str
    description: str
    task: str
    arms: dict[str, Callable[[DigitTask], nn.Module]]
    task_kwargs: dict = field(default_factory=dict)
    fit_kwargs: dict = field(default_factory=dict)
    epochs_scale: float = 1.0
    module: str = ""  # the notebook that shows it, e.g. "02_senet"


@dataclass(frozen=True)
class BackboneArm:
    """An arm builder: the course backbone ``AttnResNet`` sized for the task, with one attention block.

    ``BackboneArm("se", {"reduction": 4})(task)`` → ``AttnResNet(task.in_channels, task.num_classes,
    attention="se", attention_kwargs={"reduction": 4})``.
    """

    attention: str
    attention_kwargs: dict = field(default_factory=dict)

    def __call__(self, task: DigitTask) -> nn.Module:
        from ..models import AttnResNet

        return AttnResNet(task.in_channels, task.num_classes, attention=self.attention,
                          attention_kwargs=dict(self.attention_kwargs))


def register_experiment(exp: Experiment) -> Experiment:
    if exp.name in EXPERIMENTS:
        raise ValueError(f"experiment {exp.name!r} is already registered")
    EXPERIMENTS[exp.name] = exp
    return exp


def list_experiments() -> list[str]:
    return sorted(EXPERIMENTS)


def get_experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; registered experiments: {', '.join(list_experiments()) or '(none)'}")
    return EXPERIMENTS[name]


def results_dir() -> Path:
    """``$ATTNCOURSE_RESULTS`` or the repository's ``results/`` folder (next to the package)."""
    env = os.environ.get("ATTNCOURSE_RESULTS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "results"


def _git_commit() -> str:
    try:
        root = Path(__file__).resolve().parents[2]
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, timeout=10)
        sha = out.stdout.strip()
        return (sha + ("-dirty" if dirty.stdout.strip() else "")) if out.returncode == 0 and sha else "unknown"
    except Exception:
        return "unknown"


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize(results: dict) -> list[dict]:
    """One row per arm: ``arm, mean_acc, std_acc, n, params, flops`` (for tables in notebooks)."""
    return [{"arm": arm, "mean_acc": a["mean_test_acc"], "std_acc": a["std_test_acc"], "n": len(a["runs"]),
             "params": a["params"], "flops": a["flops"]} for arm, a in results["arms"].items()]


def run_experiment(name: str, profile: str | Profile | None = None, seeds: int | list[int] | None = None, *,
                   arms: list[str] | None = None, device=None, out_dir: str | os.PathLike | None = None,
                   write: bool = True, progress: bool | None = None) -> dict:
    """Train every arm × seed of experiment ``name``; return (and write) the results dict.

    ``seeds`` is a count (seeds 0..n-1) or an explicit list; default: the profile's ``seeds``.
    """
    exp = get_experiment(name)
    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    seed_list = list(range(prof.seeds if seeds is None else seeds)) if not isinstance(seeds, list) else seeds
    if not seed_list:
        raise ValueError(f"run_experiment({name!r}): need at least one seed")
    chosen = list(exp.arms) if arms is None else arms
    if unknown := [a for a in chosen if a not in exp.arms]:
        raise ValueError(f"run_experiment({name!r}): unknown arms {unknown}; available: {list(exp.arms)}")
    device = pick_device(device)
    task = make_task(exp.task, prof, seed=0, **exp.task_kwargs)
    epochs = max(1, round(prof.epochs * exp.epochs_scale))
    t_start = time.perf_counter()
    out = {"experiment": name, "description": exp.description, "module": exp.module, "task": task.name,
           "task_info": {k: v for k, v in task.info.items()}, "profile": prof.name, "epochs": epochs,
           "n_train": len(task.x_train), "n_test": len(task.x_test), "batch_size": prof.batch_size,
           "seeds": seed_list, "device": device_name(device), "torch": torch.__version__,
           "python": platform.python_version(), "git_commit": _git_commit(),
           "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "arms": {}}
    for arm in chosen:
        runs = []
        for seed in seed_list:
            seed_everything(seed)
            model = exp.arms[arm](task)
            t0 = time.perf_counter()
            hist = fit(model, task, epochs=epochs, batch_size=prof.batch_size, seed=seed, device=device,
                       progress=progress, desc=f"{name}:{arm}:seed{seed}", **exp.fit_kwargs)
            runs.append({"seed": seed, "final_test_acc": hist.final_test_acc, "best_test_acc": hist.best_test_acc,
                         "wall_s": time.perf_counter() - t0, "history": hist.as_dict()})
        model_cpu = exp.arms[arm](task).eval()
        sample = task.float_images(task.x_test[:1].cpu())
        mean, std = _mean_std([r["final_test_acc"] for r in runs])
        out["arms"][arm] = {"mean_test_acc": mean, "std_test_acc": std, "params": count_params(model_cpu),
                            "flops": count_flops(model_cpu, sample), "runs": runs}
    out["wall_s"] = time.perf_counter() - t_start
    if write:
        folder = Path(out_dir) if out_dir is not None else results_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.json" if prof.name == "full" else folder / f"{name}.{prof.name}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(out, indent=1))
        os.replace(tmp, path)
        out["path"] = str(path)
    return out


def load_results(name: str, profile: str = "full", folder: str | os.PathLike | None = None) -> dict | None:
    """The results JSON of experiment ``name`` for ``profile``, or ``None`` when it has not been run."""
    folder = Path(folder) if folder is not None else results_dir()
    path = folder / (f"{name}.json" if profile == "full" else f"{name}.{profile}.json")
    return json.loads(path.read_text()) if path.exists() else None
