"""Shift evaluations: finished runs of recorded experiments, tested on harder variants of their task.

No training happens here. A :class:`ShiftEvaluation` names, per arm, the experiment run whose trained weights it
reads (any seed the run store holds), one task argument to vary at test time (``n_clutter``: how many clutter
fragments), the values to test, and how many fresh test images to draw at each value. The test images come from the
task's generator with a test seed of their own, so they are new images of the *test* source digits — never seen in
training — and every arm and seed is measured on the very same images.

The result is a small JSON beside the experiments' results (``<results>/shifts/<name>.json``; ships with the
package, so notebooks read it in Colab)::

    {"evaluation", "description", "module", "vary", "trained_at", "levels", "n_test", "test_seed", "test_split",
     "metric", "profile", "seeds", "device", "torch", "git_commit",
     "arms": {arm: {"source": [experiment, arm], "jobs": [job id per seed],
                    "values": {level: [the task's metric per seed]},
                    "items": {level: [per-item outcomes per seed]}}}}     # for the paired intervals

``test_split``: ``"fresh"`` draws new test images (``test_seed``, ``n_test``) at every level; ``"experiment"`` keeps
the experiment's own test split (the same generator draws, only ``vary`` changed), for a question such as "how much
of the difference comes from the occluded frames?".

Record one with ``python -m attncourse shift clutter_shift`` after the source runs have finished in the run store.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import torch

from .core import get_experiment

__all__ = ["ShiftEvaluation", "register_shift", "get_shift", "list_shifts", "record_shift", "load_shift",
           "shift_path", "shift_results", "metric_from_items"]

SHIFTS: dict[str, "ShiftEvaluation"] = {}


@dataclass(frozen=True)
class ShiftEvaluation:
    """Trained arms of recorded experiments, tested with one task argument (``vary``) set to each of ``levels``."""

    name: str
    description: str
    module: str
    sources: dict            # arm -> (experiment, arm) whose finished runs are tested
    vary: str                # the task argument changed at test time
    levels: tuple            # its values at test time
    n_test: int = 2000       # fresh test images per level
    test_seed: int = 1       # the generator seed of the test images (the same for every arm and seed)
    task_kwargs: dict = field(default_factory=dict)   # the other task arguments, as the sources trained with
    test_split: str = "fresh"  # "fresh": new test images per level; "experiment": the experiment's own test split

    def __post_init__(self):
        tasks = {get_experiment(exp).task for exp, _ in self.sources.values()}
        kwargs = {json.dumps(get_experiment(exp).task_kwargs, sort_keys=True) for exp, _ in self.sources.values()}
        if len(tasks) != 1 or len(kwargs) != 1:
            raise ValueError(f"shift {self.name!r}: every source must train on the same task with the same arguments; "
                             f"got tasks {sorted(tasks)} and arguments {sorted(kwargs)}")
        if self.test_split not in ("fresh", "experiment"):
            raise ValueError(f"shift {self.name!r}: test_split must be 'fresh' or 'experiment', got {self.test_split!r}")
        for arm, (exp, src_arm) in self.sources.items():
            if src_arm not in get_experiment(exp).arms:
                raise ValueError(f"shift {self.name!r}: arm {arm!r} reads {exp}/{src_arm}, which {exp!r} does not have")

    @property
    def task(self) -> str:
        return get_experiment(next(iter(self.sources.values()))[0]).task


def register_shift(ev: ShiftEvaluation) -> ShiftEvaluation:
    if ev.name in SHIFTS:
        raise ValueError(f"shift evaluation {ev.name!r} is registered twice")
    SHIFTS[ev.name] = ev
    return ev


def get_shift(name: str) -> ShiftEvaluation:
    if name not in SHIFTS:
        raise ValueError(f"unknown shift evaluation {name!r}; registered: {', '.join(sorted(SHIFTS)) or '(none)'}")
    return SHIFTS[name]


def list_shifts() -> list[str]:
    return sorted(SHIFTS)


def shift_path(folder, name: str, profile: str = "full") -> Path:
    return Path(folder) / "shifts" / (f"{name}.json" if profile == "full" else f"{name}.{profile}.json")


def load_shift(name: str, profile: str = "full", folder=None) -> dict | None:
    """The recorded shift evaluation ``name`` (see the module docstring), or ``None`` when none was recorded."""
    from .recorded import _search_dirs

    for d in _search_dirs(folder):
        path = shift_path(d, name, profile)
        if path.exists():
            return json.loads(path.read_text())
    return None


def _trained_model(job, stores: list[Path]):
    """The finished model of ``job``, in eval mode: from the first run store that holds its weights, else (seed 0)
    from the recorded checkpoint when that holds this very run. Raises ``FileNotFoundError`` otherwise."""
    from .recorded import CheckpointMismatch, load_trained
    from .runner import run_model

    for store in stores:
        folder = store / job.id
        if (folder / "run.json").exists() and (folder / "model.pt").exists():
            record = json.loads((folder / "run.json").read_text())
            return run_model(job, record, folder).eval(), record["job"], record.get("settings", {})
    if job.seed == 0:
        try:
            model = load_trained(job.experiment, job.arm, profile=job.profile.name)
            if model.provenance.get("job") == job.id:
                return model.eval(), job.id, model.provenance.get("settings", {})
        except (FileNotFoundError, CheckpointMismatch):
            pass
    raise FileNotFoundError(f"{job.label}: no finished run {job.id} with weights in the store(s) "
                            f"{', '.join(map(str, stores))}")


def record_shift(name: str, seeds=(0, 1, 2), profile: str = "full", store=None, out_dir=None,
                 device=None, arms=None) -> dict:
    """Test every source arm's finished runs (``seeds``) at every level; write and return the JSON dict.

    ``arms``: only these arms (default: all). ``store``: one run store or a list of them, searched in order
    (default: :func:`runs_dir`). Every chosen arm needs the weights of a finished run of every seed.
    """
    from ..config import device_name, get_profile, pick_device
    from ..data import make_task
    from ..objectives import objective_for
    from .recorded import results_dir
    from .runner import Job, _git_commit, runs_dir

    ev = get_shift(name)
    chosen = list(ev.sources) if arms is None else list(arms)
    if unknown := [a for a in chosen if a not in ev.sources]:
        raise ValueError(f"shift {name!r}: unknown arms {unknown}; available: {list(ev.sources)}")
    if not seeds:
        raise ValueError(f"shift {name!r}: no seeds given")
    prof = get_profile(profile)
    stores = ([runs_dir()] if store is None else [Path(store)] if isinstance(store, (str, os.PathLike))
              else [Path(p) for p in store])
    device = pick_device(device)
    base_kwargs = {**get_experiment(next(iter(ev.sources.values()))[0]).task_kwargs, **ev.task_kwargs}
    if ev.test_split == "experiment":  # the experiment's own test split; it does not depend on n_train
        size, test_seed = prof.with_(n_train=16), 0
    else:                              # new images of the test source digits, the same for every arm and seed
        size, test_seed = SimpleNamespace(n_train=1, n_test=ev.n_test), ev.test_seed
    tests = {level: make_task(ev.task, size, seed=test_seed, **{**base_kwargs, ev.vary: level}) for level in ev.levels}
    trained_at = make_task(ev.task, SimpleNamespace(n_train=16, n_test=16), seed=0, **base_kwargs).info.get(ev.vary)
    if trained_at is None:
        trained_at = base_kwargs.get(ev.vary)
    objective = objective_for(next(iter(tests.values())))
    from ..cost import count_params

    results = {}
    for arm in chosen:
        exp, src_arm = ev.sources[arm]
        jobs, params = [], None
        values = {str(level): [] for level in ev.levels}
        items = {str(level): [] for level in ev.levels}
        for seed in seeds:
            job = Job(exp, src_arm, seed, prof)
            model, job_id, settings = _trained_model(job, stores)
            jobs.append(job_id)
            params = count_params(model)
            for level, t in tests.items():   # evaluated with the speed settings the run trained with
                got = objective.item_outcomes(model.to(device), t, amp=settings.get("amp_bf16"),
                                              channels_last=settings.get("channels_last"))
                items[str(level)].append(got)
                values[str(level)].append(metric_from_items(got))
        results[arm] = {"source": [exp, src_arm], "jobs": jobs, "params": params, "values": values, "items": items}
    n_test = len(next(iter(tests.values())).y_test)
    out = {"evaluation": name, "description": ev.description, "module": ev.module, "task": ev.task,
           "vary": ev.vary, "trained_at": trained_at, "levels": list(ev.levels), "n_test": n_test,
           "test_seed": test_seed, "test_split": ev.test_split, "metric": objective.metric, "profile": prof.name, "seeds": list(seeds), "device": device_name(device),
           "torch": torch.__version__, "git_commit": _git_commit(), "arms": results}
    path = shift_path(Path(out_dir) if out_dir is not None else results_dir(), name, prof.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=1) + "\n")
    os.replace(tmp, path)
    return out


def metric_from_items(items: dict | None) -> float:
    """The task's metric from a run's per-item outcomes: accuracy (right or wrong per image), mAP (AP per query)
    or mIoU (intersections and unions per image, summed over the images before the ratio)."""
    import numpy as np

    from ..metrics.effect import item_values

    if items is None:
        raise ValueError("metric_from_items: this task kind records no per-item outcomes")
    got = item_values(items)
    if isinstance(got, tuple):
        inter, union = (x.sum(0) for x in got)
        seen = union > 0
        return float((inter[seen] / union[seen]).mean())
    return float(np.mean(got))


def shift_results(shift: dict, level) -> dict:
    """One level of a recorded shift evaluation as an experiment-style results dict, for :func:`effects` and
    :func:`verdict` (mean and sample standard deviation over the seeds; no FLOPs are measured, so ``flops`` is 0)."""
    from .runner import _mean_std

    key = str(level)
    if key not in {str(v) for v in shift["levels"]}:
        raise ValueError(f"shift {shift['evaluation']!r}: no level {level!r}; levels: {shift['levels']}")
    arms = {}
    for arm, a in shift["arms"].items():
        values = a["values"][key]
        items = (a.get("items") or {}).get(key) or [None] * len(values)
        mean, std = _mean_std(values)
        arms[arm] = {"mean_test_acc": mean, "std_test_acc": std, "params": a["params"], "flops": 0,
                     "runs": [{"seed": s, "final_test_acc": v, "items": it}
                              for s, v, it in zip(shift["seeds"], values, items)]}
    return {"experiment": f"{shift['evaluation']} at {shift['vary']}={level}", "profile": shift["profile"],
            "device": shift["device"], "metric": shift["metric"], "n_test": shift.get("n_test"), "arms": arms}
