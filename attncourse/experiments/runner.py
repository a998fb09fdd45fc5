"""Running experiments: every arm × seed is a *job* that trains resumably; finished jobs merge into results.

A job is identified by what it trains — task and its keywords, profile sizes, epochs, the arm's
:func:`~attncourse.experiments.core.arm_spec`, the fit keywords and the seed — not by the experiment that
asks for it. Two experiments with the same baseline on the same task share one job.

Jobs live in a run store (:func:`runs_dir`: ``results/runs`` in a checkout, else ``~/.cache/attncourse/runs``)::

    <store>/<job id>/train.pt    resumable training state (model, optimiser, schedule, history), every epoch
    <store>/<job id>/run.json    the finished run: accuracy, history, wall time, device, speed settings
    <store>/<job id>/model.pt    the finished model's weights

so a stopped ``run-all`` continues where it stopped (finished jobs are skipped, a half-trained job resumes
after its last epoch). When every job of an experiment has finished, :func:`merge_experiment` writes its
results JSON and the seed-0 checkpoint of each arm (:mod:`.recorded`).

``run_all(jobs=N)`` spreads the jobs over N worker processes with ``cores // N`` threads each (two
single-thread processes train faster than one two-thread process on a small CPU).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from ..config import Profile, device_name, get_profile, pick_device, seed_everything
from .core import arm_spec, get_experiment, list_experiments
from .recorded import checkpoint_path, results_dir, results_path, save_trained

__all__ = ["Job", "plan_jobs", "run_job", "record_checkpoint", "merge_experiment", "run_all", "run_experiment", "runs_dir"]


def runs_dir() -> Path:
    """The run store: ``$ATTNCOURSE_RUNS``; else ``results/runs`` of the repository when the package is used from a
    checkout (finished runs' ``run.json`` are committed there, so a run continues in a later session on another
    machine); else ``~/.cache/attncourse/runs``."""
    env = os.environ.get("ATTNCOURSE_RUNS")
    if env:
        return Path(env)
    root = Path(__file__).resolve().parents[2]
    if (root / ".git").exists() and (root / "results").is_dir():
        return root / "results" / "runs"
    return Path.home() / ".cache" / "attncourse" / "runs"


def _git_commit() -> str:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
        sha = out.stdout.strip()
        return (sha + ("-dirty" if dirty.stdout.strip() else "")) if out.returncode == 0 and sha else "unknown"
    except Exception:
        return "unknown"


@dataclass(frozen=True)
class Job:
    """One arm × seed of one experiment under one profile."""

    experiment: str
    arm: str
    seed: int
    profile: Profile

    @property
    def epochs(self) -> int:
        return max(1, round(self.profile.epochs * get_experiment(self.experiment).epochs_scale))

    def spec(self) -> dict:
        """Everything that defines what this job trains (and nothing else)."""
        exp = get_experiment(self.experiment)
        p = self.profile
        return {"task": exp.task, "task_kwargs": exp.task_kwargs, "n_train": p.n_train, "n_test": p.n_test,
                "batch_size": p.batch_size, "epochs": self.epochs, "arm": arm_spec(exp.arms[self.arm]),
                "fit_kwargs": exp.fit_kwargs, "seed": self.seed}

    @property
    def id(self) -> str:
        digest = hashlib.sha1(json.dumps(self.spec(), sort_keys=True, default=str).encode()).hexdigest()[:12]
        return f"{get_experiment(self.experiment).task}-s{self.seed}-{digest}"  # not the arm's name: what it trains

    @property
    def label(self) -> str:
        return f"{self.experiment}:{self.arm}:seed{self.seed}"


def plan_jobs(names: list[str], profile: Profile, seeds: list[int], arms: list[str] | None = None) -> list[Job]:
    """Every (experiment, arm, seed) job of ``names``, in the order a stopped run loses least:

    first the first seed of every experiment (its checkpoints are the ones the notebooks picture), then the
    other seeds experiment by experiment, in the order of ``names``, so that experiments complete one by one.
    """
    first, rest = [], []
    for name in names:
        exp = get_experiment(name)
        chosen = list(exp.arms) if arms is None else arms
        if unknown := [a for a in chosen if a not in exp.arms]:
            raise ValueError(f"experiment {name!r}: unknown arms {unknown}; available: {list(exp.arms)}")
        for i, seed in enumerate(seeds):
            (first if i == 0 else rest).extend(Job(name, arm, seed, profile) for arm in chosen)
    return first + rest


_TASKS: dict = {}


def _task_for(job: Job):
    from ..data import make_task

    exp = get_experiment(job.experiment)
    key = (exp.task, json.dumps(exp.task_kwargs, sort_keys=True, default=str), job.profile)
    if key not in _TASKS:
        _TASKS.clear()  # one task at a time per process: they are large
        _TASKS[key] = make_task(exp.task, job.profile, seed=0, **exp.task_kwargs)
    return _TASKS[key]


def run_job(job: Job, store: str | os.PathLike | None = None, device=None, progress: bool | None = False,
            threads: int | None = None) -> dict:
    """Train ``job`` (resuming a half-finished one) unless it has finished; return its run record."""
    folder = Path(store) if store is not None else runs_dir()
    folder = folder / job.id
    done = folder / "run.json"
    if done.exists():
        return json.loads(done.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    with _exclusive(folder / "lock", job):
        if done.exists():  # finished by another process while this one waited to start
            return json.loads(done.read_text())
        return _train_job(job, folder, device, progress, threads)


@contextmanager
def _exclusive(path: Path, job: Job):
    """Hold an exclusive lock on ``path`` (POSIX ``flock``): two processes never train the same job."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock, as before
        yield
        return
    with open(path, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"{job.label} is being trained by another process (lock {path})") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _train_job(job: Job, folder: Path, device, progress, threads) -> dict:
    from ..train import fit

    done = folder / "run.json"
    if threads:
        torch.set_num_threads(threads)
    device = pick_device(device)
    exp = get_experiment(job.experiment)
    task = _task_for(job)
    seed_everything(job.seed)
    model = exp.arms[job.arm](task)
    t0 = time.perf_counter()
    hist = fit(model, task, epochs=job.epochs, batch_size=job.profile.batch_size, seed=job.seed, device=device,
               progress=progress, checkpoint=folder / "train.pt", desc=job.label, **exp.fit_kwargs)
    record = {"job": job.id, "spec": job.spec(), "seed": job.seed, "metric": hist.metric, "final_test_acc": hist.final_test_acc,
              "best_test_acc": hist.best_test_acc, "wall_s": time.perf_counter() - t0,
              "train_s": sum(hist.seconds), "device": device_name(device), "torch": torch.__version__,
              "git_commit": _git_commit(), "settings": hist.settings, "history": hist.as_dict(),
              "task_shape": {"in_channels": task.in_channels, "num_classes": task.num_classes,
                             "image_size": list(task.image_size)},
              "items": _item_outcomes(model, task, hist.settings),
              "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    save_trained(folder / "model.pt", model, {"arm_spec": record["spec"]["arm"]})
    tmp = done.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, done)
    (folder / "train.pt").unlink(missing_ok=True)  # the optimiser state is no longer needed
    return record


def _item_outcomes(model: nn.Module, task, settings: dict) -> dict | None:
    """The finished model's per-item test outcomes (see :mod:`attncourse.metrics.effect`), evaluated with the
    speed settings it was trained with, so they reproduce its recorded final metric."""
    from ..objectives import objective_for

    return objective_for(task).item_outcomes(model, task, amp=settings.get("amp_bf16"),
                                             channels_last=settings.get("channels_last"))


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def run_model(job: Job, record: dict, folder: Path) -> nn.Module:
    """The model a finished run trained: ``job``'s arm rebuilt for the run's task shape (``record["task_shape"]``),
    with the weights of ``folder/model.pt``."""
    shape = record["task_shape"]
    model = get_experiment(job.experiment).arms[job.arm](
        SimpleNamespace(**{k: shape[k] for k in ("in_channels", "num_classes")}))
    model.load_state_dict(torch.load(folder / "model.pt", map_location="cpu", weights_only=False)["state_dict"],
                          strict=True)
    return model


def record_checkpoint(job: Job, record: dict, store=None, out_dir=None) -> Path:
    """Copy a finished seed-0 run's weights to the recorded checkpoint of ``job``'s experiment and arm.

    A store that kept only ``run.json`` (the weights are not committed) is fine when the recorded checkpoint
    already holds this very run's weights.
    """
    exp = get_experiment(job.experiment)
    store = Path(store) if store is not None else runs_dir()
    folder = Path(out_dir) if out_dir is not None else results_dir()
    target = checkpoint_path(folder, job.experiment, job.arm, job.profile.name)
    if not (store / record["job"] / "model.pt").exists() and target.exists():
        prov = torch.load(target, map_location="cpu", weights_only=False).get("provenance", {})
        if prov.get("job") == record["job"]:
            return target
        raise FileNotFoundError(f"{job.label}: the weights of run {record['job']} are not in the store "
                                f"{store}, and {target} holds another run ({prov.get('job')})")
    shape = record["task_shape"]
    model = run_model(job, record, store / record["job"])
    prov = {"experiment": job.experiment, "arm": job.arm, "seed": job.seed, "profile": job.profile.name,
            "arm_spec": record["spec"]["arm"], "task": exp.task, "task_shape": shape, "epochs": job.epochs,
            "device": record["device"], "torch": record["torch"], "git_commit": record["git_commit"],
            "settings": record["settings"], "metric": record.get("metric", "accuracy"),
            "final_test_acc": record["final_test_acc"], "finished": record["finished"],
            "job": record["job"]}
    return save_trained(target, model, prov)


def _settings_only(info: dict) -> dict:
    """A task's ``info`` without per-sample lists (e.g. each digit's size), which describe the 16-image shape task."""
    return {k: v for k, v in info.items() if not (isinstance(v, (list, tuple)) and len(v) > 8)
            and not hasattr(v, "shape")}


MIN_MERGE_SEEDS = 3  # an experiment is merged once every arm has its first (up to) 3 seeds; later seeds join as they finish


def merge_experiment(name: str, profile: Profile, seeds: list[int], arms: list[str] | None = None, store=None,
                     out_dir=None) -> dict | None:
    """Write ``<experiment>.json`` and each arm's seed-0 checkpoint from finished runs.

    Every arm of ``arms`` (default: all) needs its first ``MIN_MERGE_SEEDS`` seeds of ``seeds`` finished (else ``None``: nothing is written);
    any later seed of ``seeds`` that has finished joins its arm, so an arm may hold more seeds than another (an
    interval uses the seeds both arms share). Each run keeps its per-item test outcomes (``items``) when it has
    them. Arms outside ``arms`` join when their first seeds have finished too (so training more seeds of some arms
    never drops the others from the results)."""
    from ..cost import count_flops, count_params
    from ..data import make_task

    exp = get_experiment(name)
    store = Path(store) if store is not None else runs_dir()
    required = set(exp.arms if arms is None else arms)
    records = {}
    for arm in exp.arms:
        found = {}
        for job in plan_jobs([name], profile, seeds, [arm]):
            path = store / job.id / "run.json"
            if path.exists():
                found[job] = json.loads(path.read_text())
        if all(any(j.seed == s for j in found) for s in seeds[:MIN_MERGE_SEEDS]):
            records.update(found)
        elif arm in required:  # an asked-for arm's first seeds must all be there
            return None
    if not records:
        return None
    jobs = list(records)
    task = make_task(exp.task, profile.with_(n_train=16, n_test=16), seed=0, **exp.task_kwargs)  # for shapes only
    first = next(iter(records.values()))
    out = {"experiment": name, "description": exp.description, "module": exp.module, "task": exp.task,
           "metric": first.get("metric", "accuracy"),
           "task_info": _settings_only(task.info), "profile": profile.name, "epochs": jobs[0].epochs,
           "n_train": profile.n_train, "n_test": profile.n_test, "batch_size": profile.batch_size,
           "seeds": sorted({j.seed for j in jobs}),
           "device": first["device"], "torch": first["torch"], "python": platform.python_version(),
           "git_commit": first["git_commit"], "settings": first["settings"],
           "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "arms": {}}
    folder = Path(out_dir) if out_dir is not None else results_dir()
    sample = task.float_images(task.x_test[:1])
    shape = first["task_shape"]
    shape_of_runs = SimpleNamespace(in_channels=shape["in_channels"], num_classes=shape["num_classes"])
    for arm in dict.fromkeys(j.arm for j in jobs):
        runs = [{**{k: r[k] for k in ("seed", "final_test_acc", "best_test_acc", "wall_s", "history", "job")},
                 **({"items": r["items"]} if r.get("items") else {})}
                for j, r in records.items() if j.arm == arm]
        mean, std = _mean_std([r["final_test_acc"] for r in runs])
        model = exp.arms[arm](shape_of_runs).eval()  # the trained task's classes, not the tiny shape task's
        out["arms"][arm] = {"mean_test_acc": mean, "std_test_acc": std, "params": count_params(model),
                            "flops": count_flops(model, sample), "runs": runs}
        seed0 = next((r for j, r in records.items() if j.arm == arm and j.seed == 0), None)
        if seed0 is not None:
            try:
                record_checkpoint(Job(name, arm, 0, profile), seed0, store, folder)
            except FileNotFoundError as err:  # the results stand; the picture model must be re-trained elsewhere
                import warnings
                warnings.warn(f"merge {name}: no checkpoint recorded for {arm}: {err}", stacklevel=2)
    out["wall_s"] = sum(r["wall_s"] for r in records.values())  # this session's share of each run (resumed runs: less)
    out["train_s"] = sum(sum(r["history"]["seconds"]) for r in records.values())  # every epoch's training time
    folder.mkdir(parents=True, exist_ok=True)
    path = results_path(folder, name, profile.name)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=1))
    os.replace(tmp, path)
    out["path"] = str(path)
    return out


def _fmt_s(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """While the pool runs, SIGTERM (``kill``, ``pkill``) stops it like Ctrl-C: the workers are terminated too,
    instead of training on as orphans."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _worker_init(threads: int) -> None:
    torch.set_num_threads(threads)
    os.environ["ATTNCOURSE_PROGRESS"] = "off"


def run_all(names: list[str] | None = None, profile: str | Profile | None = None, seeds: int | list[int] | None = None,
            *, arms: list[str] | None = None, jobs: int = 1, device=None, store=None, out_dir=None,
            train: bool = True, log=sys.stderr) -> dict:
    """Run every job of ``names`` (default: every registered experiment), resumably, on ``jobs`` processes.

    Prints one line per finished job with the elapsed time and an ETA, merges each experiment as soon as its
    last job finishes (``train=False``: only records and merges what has finished), and returns
    ``{"results": {name: results dict}, "failed": [(job label, error)], "wall_s"}``.
    """
    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    names = list_experiments() if not names else names
    for n in names:
        get_experiment(n)
    seed_list = list(range(prof.seeds if seeds is None else seeds)) if not isinstance(seeds, list) else seeds
    if not seed_list:
        raise ValueError("run_all: need at least one seed")
    if jobs < 1:
        raise ValueError(f"run_all: jobs must be >= 1, got {jobs}")
    store = Path(store) if store is not None else runs_dir()
    planned = plan_jobs(names, prof, seed_list, arms)
    unique: dict[str, Job] = {}
    for job in planned:
        unique.setdefault(job.id, job)
    todo = [j for j in unique.values() if train and not (store / j.id / "run.json").exists()]
    t0 = time.perf_counter()
    results, failed, merged = {}, [], {}

    def merge_ready():
        """(Re)merge every experiment that has a finished run it has not merged yet."""
        for n in names:
            finished = {j.id for j in planned if j.experiment == n and (store / j.id / "run.json").exists()}
            if merged.get(n) != finished:
                res = merge_experiment(n, prof, seed_list, arms, store, out_dir)
                if res is not None:
                    merged[n] = finished
                    results[n] = res
                    print(f"  merged {n} → {res['path']}", file=log, flush=True)

    print(f"run-all: {len(planned)} runs of {len(names)} experiment(s), {len(unique)} distinct, {len(todo)} to train "
          f"({prof.name} profile, {jobs} process(es), store {store})", file=log, flush=True)
    for job in planned:  # seed-0 runs that finished before a restart
        done = store / job.id / "run.json"
        folder = Path(out_dir) if out_dir is not None else results_dir()
        if job.seed == 0 and done.exists() and not checkpoint_path(folder, job.experiment, job.arm, prof.name).exists():
            try:
                record_checkpoint(job, json.loads(done.read_text()), store, out_dir)
            except FileNotFoundError as err:  # a committed run record whose weights stayed on another machine
                print(f"  warning: no checkpoint recorded for {job.label}: {err}", file=log, flush=True)
    merge_ready()
    done_s: list[float] = []
    cores = os.cpu_count() or 1
    threads = max(1, cores // jobs)

    def report(job, rec, err):
        if rec is not None and job.seed == 0:  # pictures need seed 0 long before every seed has finished
            for twin in planned:
                if twin.id == job.id:
                    record_checkpoint(twin, rec, store, out_dir)
        n_done = len(done_s)
        eta = (statistics.fmean(done_s) * (len(todo) - n_done) / min(jobs, max(1, len(todo) - n_done))
               if done_s and n_done < len(todo) else 0.0)
        what = f"FAILED: {err}" if err else f"{100 * rec['final_test_acc']:.1f} % in {_fmt_s(rec['wall_s'])}"
        print(f"[{n_done}/{len(todo)}] {job.label} {what} · elapsed {_fmt_s(time.perf_counter() - t0)} · "
              f"ETA {_fmt_s(eta)}", file=log, flush=True)

    if jobs == 1:
        _collect(_run_here(todo, store, device), failed, done_s, report, merge_ready)
    elif todo:
        import multiprocessing as mp

        with _sigterm_as_interrupt(), ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"),
                                                          initializer=_worker_init, initargs=(threads,)) as pool:
            pending = {pool.submit(run_job, job, store, device): job for job in todo}
            try:
                _collect(_as_finished(pending), failed, done_s, report, merge_ready)
            except KeyboardInterrupt:  # stop the workers too; finished epochs are kept for the next call
                workers = list((getattr(pool, "_processes", None) or {}).values())  # shutdown() forgets them
                for proc in workers:
                    proc.terminate()
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    merge_ready()
    wall = time.perf_counter() - t0
    print(f"run-all: {len(todo) - len(failed)} trained, {len(failed)} failed, {len(merged)}/{len(names)} experiments "
          f"merged in {_fmt_s(wall)}", file=log, flush=True)
    return {"results": results, "failed": failed, "wall_s": wall}


def _run_here(todo: list, store: Path, device):
    """Train ``todo`` one after another in this process: ``(job, run record, None)`` or ``(job, None, error)`` each."""
    for job in todo:
        try:
            rec = run_job(job, store, device, threads=None)
        except Exception as err:  # keep going: one broken arm must not lose the others
            yield job, None, err
        else:
            yield job, rec, None


def _as_finished(pending: dict):
    """The pool's jobs as they finish, in the same form as :func:`_run_here`."""
    while pending:
        finished, _ = wait(pending, return_when=FIRST_COMPLETED)
        for fut in finished:
            job = pending.pop(fut)
            try:
                rec = fut.result()
            except Exception as err:
                yield job, None, err
            else:
                yield job, rec, None


def _collect(outcomes, failed: list, done_s: list, report, merge_ready) -> None:
    """The one path for any ``jobs``: report each finished job (failures are kept, not raised), then merge
    what is complete. ``outcomes`` yields ``(job, run record, None)`` or ``(job, None, error)``."""
    for job, rec, err in outcomes:
        if err is None:
            done_s.append(rec["wall_s"])
            report(job, rec, None)
        else:
            failed.append((job.label, repr(err)))
            done_s.append(0.0)
            report(job, None, repr(err))
        merge_ready()


def run_experiment(name: str, profile: str | Profile | None = None, seeds: int | list[int] | None = None, *,
                   arms: list[str] | None = None, device=None, out_dir: str | os.PathLike | None = None,
                   write: bool = True, progress: bool | None = None, store=None) -> dict:
    """Train every arm × seed of experiment ``name`` in this process; return (and write) its results dict.

    ``seeds`` is a count (seeds 0..n-1) or an explicit list; default: the profile's ``seeds``. With
    ``write=False`` the runs go to a temporary store and nothing is written.
    """
    import tempfile

    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    seed_list = list(range(prof.seeds if seeds is None else seeds)) if not isinstance(seeds, list) else seeds
    if not seed_list:
        raise ValueError(f"run_experiment({name!r}): need at least one seed")
    jobs = plan_jobs([name], prof, seed_list, arms)
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(store) if store is not None else (runs_dir() if write else Path(tmp) / "runs")
        out = Path(out_dir) if out_dir is not None else (results_dir() if write else Path(tmp) / "results")
        for job in jobs:
            run_job(job, store, device, progress=progress)
        res = merge_experiment(name, prof, seed_list, arms, store, out)
        if not write:
            res.pop("path", None)
        return res
