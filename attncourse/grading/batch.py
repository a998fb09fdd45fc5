"""Grading a class: one sandboxed worker per submission, the checks in the grader's own process.

For each submission (a *slot*):

1. Here: read the notebook safely (:mod:`.files`), find its ``check`` calls and scan its source
   (:mod:`.source`).
2. Worker (:mod:`.sandbox`, :mod:`.worker`): run the code cells one by one, each with ``cell_timeout``
   (SIGALRM, then a hard kill); a cell that hangs or kills the worker is noted, the worker is
   restarted, the cells that had succeeded are re-run, and the next cell runs. The whole notebook has
   ``timeout`` seconds.
3. Here: for each exercise, the worker evaluates the answer expression and hands back a proxy
   (:mod:`.remote`); the exercise's checker from :mod:`attncourse.exercises` runs **here** on that
   proxy, with ``grade_timeout`` seconds for everything the worker does for it. Nothing of the
   checker, the reference or the comparison is ever in the worker. For each question the worker
   hands back the answer's value as plain data only, graded here by the grader's own registry and
   counted apart (:mod:`.questions`).
4. The worker is killed and the slot checked empty; the row is built from the grader's memory. The
   reports are written once, atomically, after every slot is done.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import files, questions, sandbox, source

_GRADE_LOCK = threading.Lock()  # checkers seed the global RNGs: one exercise is graded at a time
_SEVERITY = ["failed", "review", "kernel died", "timeout", "memory", "errors"]
_STUB = '''"""Stub of attncourse.exercises inside the grading sandbox: checks happen in the grader, not here."""
EXERCISES = {}
NOT_IMPLEMENTED_HINT = ""


def _nothing(*args, **kwargs):
    return 0.0


check = score_summary = grade = list_exercises = reset_scores = _nothing


def register_exercise(*args, **kwargs):
    return lambda fn: fn


def __getattr__(name):
    return _nothing
'''


def _status(flags: list[str]) -> str:
    present = [f for f in _SEVERITY if f in flags]
    return "+".join(present) if present else "ok"


def registry() -> dict:
    from ..exercises import EXERCISES  # the grader's own copy: keys, titles and points

    return {k: {"title": ex.title, "points": float(ex.points)} for k, ex in sorted(EXERCISES.items())}


def assignment_modules(calls: list[dict[str, str]], known, declared: list | None = None) -> list[str]:
    """The modules an assignment covers, when no ``--exercises`` prefix says so.

    Each submission names its module: the one its student copy records (``declared[i]``, written by
    ``release``), else the modules of the keys (of ``known``) it checks. A module is in the assignment when
    more than half of the submissions that name one name it; when none is, the modules named most often.
    So one submission that also checks another module's exercises (e.g. with the package's reference
    solutions) neither adds columns to every row nor raises every row's maximum."""
    votes: dict[str, int] = {}
    voters = 0
    for i, found in enumerate(calls):
        mine = {declared[i]} if declared and i < len(declared) and declared[i] else {
            k.split(".")[0] for k in found if k in known}
        if mine:
            voters += 1
            for m in mine:
                votes[m] = votes.get(m, 0) + 1
    if not votes:
        return []
    chosen = [m for m, n in votes.items() if 2 * n > voters]
    if not chosen:
        top = max(votes.values())
        chosen = [m for m, n in votes.items() if n == top]
    return sorted(chosen)


def columns_for(reg: dict, calls: list[dict[str, str]], prefixes: list[str] | None, known=None,
                modules: list[str] | None = None) -> list[str]:
    """The keys of ``reg`` to report: those with a prefix, or those of the assignment's ``modules`` (by default
    :func:`assignment_modules` of the calls, over the keys of ``known``: by default ``reg``; exercises and
    questions together when grading)."""
    if prefixes and any(p == "all" for p in prefixes):
        return list(reg)
    if prefixes:
        return [k for k in reg if any(k.startswith(p) for p in prefixes)]
    known = reg if known is None else known
    if modules is None:
        modules = assignment_modules(calls, known)
    return [k for k in reg if k.split(".")[0] in set(modules)]


def declared_module(nb: dict | None) -> str | None:
    """The module a student copy records (``release`` writes it into the notebook metadata), if any."""
    meta = nb.get("metadata") if isinstance(nb, dict) else None
    info = meta.get("attncourse") if isinstance(meta, dict) else None
    info = info.get("assignment") if isinstance(info, dict) else None
    module = info.get("module") if isinstance(info, dict) else None
    return module if isinstance(module, str) and len(module) == 2 and module.isdigit() else None


def build_worker_package(run_dir: str) -> str:
    """The worker's copy: the package without its checkers and reference solutions, plus the protocol files."""
    src = Path(__file__).resolve().parent.parent
    dest = Path(run_dir) / "pkg"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "grading", "exercises")
    shutil.copytree(src, dest / "attncourse", ignore=ignore)
    ex = dest / "attncourse" / "exercises"
    ex.mkdir()
    (ex / "__init__.py").write_text(_STUB)
    (ex / "core.py").write_text(_STUB)
    here = Path(__file__).resolve().parent
    for name in ("wire", "peer", "worker"):
        shutil.copyfile(here / f"{name}.py", dest / f"_acg_{name}.py")
    for root, dirs, fnames in os.walk(dest):
        os.chmod(root, 0o755)
        for f in fnames:
            os.chmod(os.path.join(root, f), 0o444)
    return str(dest)


class Slot:
    """One submission's worker, restarted when a cell or an answer kills or hangs it."""

    def __init__(self, ctx: dict, slot: int, notebook: Path):
        self.ctx, self.slot, self.notebook = ctx, slot, notebook
        self.worker = None
        self.peer = None
        self.good_cells: list[str] = []  # cells that ran without hanging or killing the worker
        self.survivors = 0

    def start(self) -> None:
        from .remote import GraderPeer

        ctx = self.ctx
        self.worker = sandbox.Worker(mode=ctx["mode"], slot=self.slot, run_dir=ctx["run_dir"], pkg_dir=ctx["pkg_dir"],
                                     notebook=self.notebook, hide=ctx["hide"], env=ctx["env"],
                                     memory_mb=ctx["memory_mb"])
        self.peer = GraderPeer(self.worker.rep_r, self.worker.req_w)
        from . import wire

        try:
            hello, _ = wire.recv(self.worker.rep_r, time.monotonic() + 120)
        except (wire.WireError, OSError) as err:
            self.stop()
            raise RuntimeError(f"the worker did not start ({err})") from None
        if hello.get("op") != "hello":
            self.stop()
            raise RuntimeError("the worker did not start")
        self.worker.note_namespace()

    def stop(self) -> None:
        if self.worker is not None:
            self.survivors += self.worker.stop()
        self.worker = self.peer = None

    def request(self, header: dict, limit: float, grace: float = 10.0, arrays: bool = False):
        """One top-level request with a time limit (in the worker) and a hard deadline (here): its reply
        (and the reply's raw arrays, with ``arrays=True``)."""
        self.peer.broken = ""
        self.peer.deadline = time.monotonic() + limit + grace
        reply, arrs = self.peer.request(dict(header, limit=max(0.5, limit)))
        return (reply, arrs) if arrays else reply

    def exec_cell(self, cell: str, limit: float) -> tuple[str, str]:
        """('ok' | 'error' | 'timeout' | 'dead', error text)."""
        from .peer import RemoteError

        if self.worker is None:
            self.start()
            for old in self.good_cells:  # replay what had run, so later cells and answers see it
                try:
                    self.request({"op": "exec", "cell": old}, limit)
                except RemoteError:
                    break
        try:
            reply = self.request({"op": "exec", "cell": cell}, limit)
        except RemoteError as err:
            self.stop()
            return ("timeout" if "time limit" in str(err) else "dead"), str(err)
        except Exception as err:  # noqa: BLE001 — e.g. an odd reply: the worker is not trusted
            self.stop()
            return "dead", f"{type(err).__name__}: {err}"
        if reply.get("status") == "ok":
            self.good_cells.append(cell)
            return "ok", ""
        ename, evalue = str(reply.get("ename", ""))[:80], str(reply.get("evalue", ""))[:300]
        if ename == "KeyboardInterrupt":
            return "timeout", "interrupted"
        self.good_cells.append(cell)  # it raised, but it ran: its definitions count
        return "error", f"{ename}: {evalue}"


def _label(cell_no: int, src: str) -> str:
    first = next((line.strip() for line in src.splitlines() if line.strip()), "")
    return f"cell {cell_no} (`{first[:40]}{'…' if len(first) > 40 else ''}`)"


def _skipped(cell: dict) -> bool:
    meta = cell.get("metadata") if isinstance(cell, dict) else None
    tags = meta.get("tags") if isinstance(meta, dict) else None
    return isinstance(tags, list) and "skip-execution" in tags


def grade_one(ctx: dict, slot: int, path: Path, nb: dict | None, read_error: str, calls: dict[str, str],
              columns: list[str], reg: dict, qcolumns: list[str] = (), qreg: dict | None = None) -> dict:
    t0 = time.monotonic()
    qreg = qreg or {}
    sub = {"file": str(path), "status": "ok", "flags": [], "notes": [], "total": 0.0,
           "max": round(sum(reg[k]["points"] for k in columns), 2), "seconds": 0.0,
           "exercises": {k: {"points": reg[k]["points"], "earned": 0.0, "answer": calls.get(k), "cases": [],
                             "note": "", "review": ""} for k in columns},
           "questions_total": 0.0, "questions_max": round(sum(qreg[k]["points"] for k in qcolumns), 2),
           "questions": questions.new_rows(list(qcolumns), qreg, calls),
           "cells": {"code": 0, "ran": 0, "errors": []}, "review": [], "phases": {}, "survivors": 0}
    for k in calls:
        if k not in reg and k not in qreg:
            sub["notes"].append(f"check({k!r}, …) is not a registered exercise or question (ignored)")
        elif k not in columns and k not in qcolumns:
            sub["notes"].append(f"check({k!r}, …) is outside this assignment's exercises: noted, not scored")
    if nb is None:
        sub["flags"].append("failed")
        sub["notes"].append(read_error)
        return _finish(sub, t0)
    sub["review"] = source.scan_source(nb)
    _flag_reference_answers(nb, calls, sub)
    cells = [(no, src) for no, src in source._code_cells(nb) if not _skipped(nb["cells"][no - 1])]
    sub["cells"]["code"] = len(cells)
    for k in columns:
        if k not in calls:
            sub["exercises"][k]["note"] = f"no check({k!r}, …) call in the notebook"
    run = Slot(ctx, slot, path)
    try:
        _execute(run, cells, sub)
        sub["phases"]["execute"] = round(time.monotonic() - t0, 2)
        t1 = time.monotonic()
        for key in columns:
            if key in calls:
                _grade_exercise(run, key, calls[key], sub, reg)
        for key in qcolumns:
            if key in calls:
                questions.grade_question(run, key, calls[key], sub, qreg, _GRADE_LOCK)
        sub["phases"]["grade"] = round(time.monotonic() - t1, 2)
    except Exception as err:  # noqa: BLE001 — a failed row, never a crashed grader
        sub["flags"].append("failed")
        sub["notes"].append(f"grader error: {type(err).__name__}: {str(err)[:200]}")
    finally:
        run.stop()
    sub["survivors"] = run.survivors
    if run.survivors:
        sub["flags"].append("review")
        sub["notes"].append(f"{run.survivors} process(es) survived the slot's kill")
    return _finish(sub, t0)


def _flag_reference_answers(nb: dict, calls: dict[str, str], sub: dict) -> None:
    """An answer built from the package's reference solutions or blocks is flagged for review on its row (and its
    exercise), never silently scored; so is a notebook that reaches the reference solutions at all. Static: see
    :func:`.source.reference_uses` and book/grading.md for what this cannot see."""
    found: list[str] = []
    try:
        uses = source.reference_uses(nb, calls)
        reach = source.reaches_reference_solutions(nb)
    except (RecursionError, ValueError, MemoryError):
        sub["review"].insert(0, "the notebook's code could not be read for uses of the package's reference solutions")
        return
    for key, paths in uses.items():
        why = f"the answer to {key} is built from the package's {', '.join(paths)}"
        if key in sub["exercises"]:
            sub["exercises"][key]["review"] = why
        elif key in sub.get("questions", {}):
            sub["questions"][key]["note"] = why
        found.append(why)
    cells = set()
    for reason in reach:
        cell = reason.split(" reaches")[0]
        if cell not in cells:  # one reason per cell is enough for a reviewer
            cells.add(cell)
            found.append(reason)
    sub["review"][:0] = found  # first: the note keeps the first six reasons


def _execute(run: Slot, cells: list[tuple[int, str]], sub: dict) -> None:
    ctx = run.ctx
    deadline = time.monotonic() + ctx["timeout"]
    restarts = 0
    for n, (cell_no, src) in enumerate(cells):
        left = deadline - time.monotonic()
        if left <= 1:
            sub["flags"].append("timeout")
            sub["notes"].append(f"time limit of {ctx['timeout']:g}s for the notebook reached before "
                                f"{_label(cell_no, src)}; {len(cells) - n} cell(s) did not run")
            return
        if run.worker is None and restarts >= ctx["max_restarts"]:
            sub["flags"].append("failed")
            sub["notes"].append(f"{len(cells) - n} cell(s) did not run: the worker was lost {restarts} times")
            return
        if run.worker is None and n:
            restarts += 1
        status, err = run.exec_cell(src, min(ctx["cell_timeout"], left))
        sub["cells"]["ran"] = n + 1
        if status == "ok":
            continue
        if status == "error":
            sub["cells"]["errors"].append({"cell": cell_no, "error": err})
            memory = "MemoryError" in err or "can't allocate memory" in err
            sub["flags"].append("memory" if memory else "errors")
            sub["notes"].append(f"{_label(cell_no, src)} ran out of memory" if memory
                                else f"{_label(cell_no, src)} raised {err[:120]}")
        elif status == "timeout":
            sub["flags"].append("timeout")
            sub["notes"].append(f"{_label(cell_no, src)} hit the time limit of "
                                f"{min(ctx['cell_timeout'], left):g}s and was interrupted; the next cells ran")
        else:
            sub["flags"].append("kernel died")
            sub["notes"].append(f"the worker died in {_label(cell_no, src)} (os._exit, a crash or memory); "
                                "restarted with the cells before it")


def _grade_exercise(run: Slot, key: str, expr: str, sub: dict, reg: dict) -> None:
    from ..exercises import core
    from .peer import RemoteError

    ctx = run.ctx
    row = sub["exercises"][key]
    limit = ctx["grade_timeout"]
    try:
        if run.worker is None:
            run.exec_cell("pass", 60)  # restart and replay
        if run.worker is None:
            raise RemoteError("no working worker")
        run.request({"op": "reset"}, 30)
        run.request({"op": "seed", "seed": core.EXERCISES[key].seed}, 30)
        reply = run.request({"op": "resolve", "expr": expr}, limit)
    except RemoteError as err:
        row["note"] = f"could not evaluate the answer `{expr}` at the end of the notebook: {err}"
        run.stop() if run.peer is not None and run.peer.broken else None
        return
    peer = run.peer
    with _GRADE_LOCK:
        try:
            answer = peer.decode(reply.get("result"), [])
        except Exception as err:  # noqa: BLE001
            row["note"] = f"the worker's answer for `{expr}` was not readable ({type(err).__name__})"
            return
        peer.broken = ""
        peer.deadline = time.monotonic() + limit + 5
        t0 = time.monotonic()
        earned, total, results = core.grade(key, answer)
        took = time.monotonic() - t0
    if any(str(r.hint).startswith("KeyboardInterrupt") for r in results):
        sub["flags"].append("timeout")
        sub["notes"].append(f"grading {key}: the learner's code hit the time limit ({limit:g}s for the exercise)")
    if peer.broken:
        why = peer.broken
        row["note"] = f"grading {key} stopped: the learner's code {why} ({limit:g}s for the exercise)"
        sub["notes"].append(f"grading {key}: {why}")
        if "time limit" in why:
            sub["flags"].append("timeout")
        run.stop()
    try:
        earned = float(earned)
    except (TypeError, ValueError):
        earned = 0.0
    row["earned"] = round(min(max(earned if earned == earned else 0.0, 0.0), reg[key]["points"]), 2)
    row["cases"] = [{"name": str(r.name), "passed": bool(r.passed), "hint": str(r.hint),
                     "side": bool(getattr(r, "side", False))} for r in results][:100]
    row["seconds"] = round(took, 2)


def _finish(sub: dict, t0: float) -> dict:
    if sub["review"]:
        sub["flags"].append("review")
        sub["notes"].append("review: " + "; ".join(sub["review"][:6]) + (" …" if len(sub["review"]) > 6 else ""))
    sub["flags"] = list(dict.fromkeys(sub["flags"]))
    sub["status"] = _status(sub["flags"])
    sub["total"] = round(sum(e["earned"] for e in sub["exercises"].values()), 2)
    sub["questions_total"] = round(sum(q["earned"] for q in sub.get("questions", {}).values()), 2)
    sub["seconds"] = round(time.monotonic() - t0, 2)
    return sub


def grade_notebooks(paths: list, *, timeout: float = 600.0, grade_timeout: float = 60.0, cell_timeout: float = 120.0,
                    memory_mb: int = 8192, jobs: int = 1, prefixes: list[str] | None = None, profile: str = "smoke",
                    gpu: bool = False, progress=None, refused: list | None = None, hide: list | None = None) -> dict:
    """Grade notebooks; return the report (what the JSON holds). Never raises for a bad submission."""
    reg = registry()
    qreg = questions.registry()
    import torch._subclasses  # noqa: F401  (torch's lazy imports are not thread-safe: done here, once)

    from . import remote  # noqa: F401
    mode = sandbox.detect_mode()
    if mode == "sequential":
        jobs = 1
    notebooks, calls = [], []
    for p in paths:
        p = Path(p)
        nb, err = None, ""
        why = files.check_entry(p, None)
        if why:
            err = f"refused: {why}"
        else:
            try:
                nb = files.read_notebook(p)
            except files.Refused as exc:
                err = str(exc)
        try:
            found = source.find_check_calls(nb) if nb is not None else {}
        except Exception as exc:  # noqa: BLE001
            nb, err, found = None, f"could not read the notebook's cells: {type(exc).__name__}", {}
        notebooks.append((p, nb, err))
        calls.append(found)
    for p, why in refused or []:
        notebooks.append((Path(p), None, why))
        calls.append({})
    known = set(reg) | set(qreg)
    modules = None if prefixes else assignment_modules(calls, known, [declared_module(nb) for _, nb, _ in notebooks])
    columns = columns_for(reg, calls, prefixes, known, modules)
    qcolumns = columns_for(qreg, calls, prefixes, known, modules)
    run_dir = tempfile.mkdtemp(prefix="attncourse-grade-")
    os.chmod(run_dir, 0o711)
    hidden = {Path(os.path.realpath(Path(p).parent)) for p, _, _ in notebooks}
    hidden |= {Path(os.path.realpath(h)) for h in hide or []}
    hidden.add(Path(__file__).resolve().parent.parent)  # the real package: checkers and reference solutions
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "ATTNCOURSE_PROFILE": profile,
           "MPLBACKEND": "Agg", "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "TQDM_DISABLE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    if not gpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    settings = {"sandbox": mode, "sandbox_detail": sandbox.describe_mode(mode), "timeout_s": timeout,
                "cell_timeout_s": cell_timeout, "grade_timeout_s": grade_timeout, "memory_mb": memory_mb,
                "jobs": jobs, "profile": profile, "gpu": gpu}
    try:
        pkg_dir = build_worker_package(run_dir)
        ctx = {"mode": mode, "run_dir": run_dir, "pkg_dir": pkg_dir, "hide": sorted(hidden), "env": env,
               "memory_mb": memory_mb, "timeout": timeout, "cell_timeout": cell_timeout,
               "grade_timeout": grade_timeout, "max_restarts": 5}
        plock = threading.Lock()
        slots = list(range(max(1, jobs)))
        free = list(slots)
        flock = threading.Lock()

        def one(i: int) -> dict:
            with flock:
                slot = free.pop()
            try:
                path, nb, err = notebooks[i]
                try:
                    sub = grade_one(ctx, slot, path, nb, err, calls[i], columns, reg, qcolumns, qreg)
                except Exception as exc:  # noqa: BLE001
                    sub = grade_one(ctx, slot, path, None, f"grader error: {type(exc).__name__}: {exc}", {}, columns,
                                    reg, qcolumns, qreg)
            finally:
                with flock:
                    free.append(slot)
            if progress is not None:
                with plock:
                    progress(sub)
            return sub

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            submissions = list(pool.map(one, range(len(notebooks))))
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    return {
        "grader": {**settings, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
        "assignment": {"exercises": list(prefixes) if prefixes else None, "modules": modules},
        "exercises": {k: reg[k] for k in columns},
        "max_total": round(sum(reg[k]["points"] for k in columns), 2),
        "questions": {k: qreg[k] for k in qcolumns},  # counted apart: never part of an exercise total
        "max_questions": round(sum(qreg[k]["points"] for k in qcolumns), 2),
        "submissions": submissions,
    }
