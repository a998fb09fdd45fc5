"""Per-item test outcomes for runs recorded before runs kept them: re-evaluate the weights that exist.

New runs store their per-item outcomes in their record (``items``, see :mod:`attncourse.metrics.effect`). For
older runs the weights that still exist are re-evaluated on the same test set: the recorded seed-0 checkpoint of
every arm (shipped with the package), and any finished run whose ``model.pt`` is still in the run store. A
re-evaluation must reproduce the run's recorded final metric (same test images, same speed settings); one that
does not is reported and *not* used. Runs whose weights are gone keep no items, and the interval estimator falls
back to a conservative estimate for them (its row says which).

``python -m attncourse items [NAME …]`` runs :func:`record_items` and rewrites the results files in place.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..config import get_profile
from .core import get_experiment, list_experiments
from .recorded import load_trained, results_dir, results_path
from .runner import Job, run_model, runs_dir

__all__ = ["record_items"]


def _evaluate(model, task, settings: dict) -> tuple[dict | None, float]:
    from ..objectives import objective_for

    obj = objective_for(task)
    amp, cl = settings.get("amp_bf16"), settings.get("channels_last")
    if cl:  # as fit left it: the weights in channels_last too (other conv kernels can flip a near-tie)
        from ..speed import to_channels_last

        to_channels_last(model)
    items = obj.item_outcomes(model, task, amp=amp, channels_last=cl)
    metric = obj.evaluate(model, task, amp=amp, channels_last=cl)[obj.metric]
    return items, metric


def record_items(names: list[str] | None = None, profile: str = "full", store=None, folder=None,
                 tolerance: float = 1e-6, log=print, threads: int | None = 1) -> dict:
    """Fill in ``items`` for every recorded run of ``names`` whose weights exist; return a summary per experiment.

    Writes the results files (``folder``, default the package's recorded folder) and, where the run store holds
    the run's record, that ``run.json`` too, so a later merge keeps the items. ``threads``: the CPU threads to
    evaluate with (default 1, as the course's runs were trained: a different thread count can change the reduction
    order of bf16 convolutions and flip an image whose logits nearly tie).
    """
    if threads:
        torch.set_num_threads(threads)
    from ..data import make_task

    prof = get_profile(profile)
    store = Path(store) if store is not None else runs_dir()
    folder = Path(folder) if folder is not None else results_dir()
    summary = {}
    for name in names or list_experiments():
        path = results_path(folder, name, prof.name)
        if not path.exists():
            continue
        res = json.loads(path.read_text())
        exp = get_experiment(name)
        sizes = prof.with_(n_train=res.get("n_train", prof.n_train), n_test=res.get("n_test", prof.n_test))
        task = make_task(exp.task, sizes, seed=0, **exp.task_kwargs)  # the very test set the runs were scored on
        done = mismatched = 0
        for arm, a in res["arms"].items():
            if arm not in exp.arms:
                continue
            for run in a["runs"]:
                if run.get("items"):
                    continue
                run_dir = store / run["job"] if run.get("job") else None
                record = json.loads((run_dir / "run.json").read_text()) if run_dir and (run_dir / "run.json").exists() else None
                if record is not None and record.get("items"):  # the same run, already evaluated for another experiment
                    run["items"] = record["items"]
                    done += 1
                    continue
                model = None
                if run_dir is not None and (run_dir / "model.pt").exists() and record is not None:
                    model = run_model(Job(name, arm, run["seed"], prof), record, run_dir)
                elif run["seed"] == 0:
                    try:
                        model = load_trained(name, arm, profile=prof.name, folder=folder)
                    except (FileNotFoundError, ValueError):
                        model = None
                    if model is not None and model.provenance.get("job") not in (None, run.get("job")):
                        model = None  # the checkpoint is another run's
                if model is None:
                    continue
                torch.manual_seed(0)
                items, metric = _evaluate(model.eval(), task, res.get("settings", {}))
                if items is None:
                    continue
                if abs(metric - run["final_test_acc"]) > tolerance:
                    mismatched += 1
                    log(f"  {name}/{arm} seed {run['seed']}: re-evaluated {metric:.6f} ≠ recorded "
                        f"{run['final_test_acc']:.6f}; items not used")
                    continue
                run["items"] = items
                done += 1
                if record is not None:
                    record["items"] = items
                    tmp = run_dir / "run.json.tmp"
                    tmp.write_text(json.dumps(record))
                    os.replace(tmp, run_dir / "run.json")
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(res, indent=1))
        os.replace(tmp, path)
        summary[name] = {"filled": done, "mismatched": mismatched,
                         "with_items": sum(bool(r.get("items")) for a in res["arms"].values() for r in a["runs"]),
                         "runs": sum(len(a["runs"]) for a in res["arms"].values())}
        log(f"{name}: {summary[name]}")
    return summary
