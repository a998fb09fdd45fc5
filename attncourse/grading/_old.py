"""The instructor's batch grader: ``python -m attncourse grade SUBMISSION.ipynb|FOLDER ... --out grades.csv``.

For each submission, in a worker process of its own (so nothing a notebook does can take the grader
down), with a time budget and a memory bound (``RLIMIT_AS``) on its kernel:

1. Here, in the grader: read the notebook and find its ``check("key", answer)`` calls (the answer
   expression of the last call per key); scan its source for code that tampers with the checks.
2. Worker: start a fresh ``python3`` kernel (nbclient) in the notebook's folder and run the code cells
   in order within ``--timeout`` seconds. A cell that raises is noted and the next cell runs; a
   timeout or a dead kernel (``os._exit``, a crash) ends execution: the cells after it do not run
   (after a crash, the cells before it are re-run in a new kernel so their work still counts).
3. Worker, same kernel: load a **fresh copy** of the package — from the grader's own snapshot of the
   sources, under a private module name — and grade each exercise's answer with it, one exercise at a
   time with ``--grade-timeout`` each. The notebook's own ``check``, its printed output and any change
   it made to the ``attncourse`` objects it imported are never used. The kernel is also scanned for
   library functions the notebook replaced (e.g. ``torch.allclose``); those submissions get ``review``.
4. Here: clamp each score to the registered points and write the CSV (one row per submission) and a
   JSON report (per-case results and hints, cell errors, notes, timings).

Only the standard library is imported at module level: the worker runs this file as a script
(``python -I grading.py``) without importing torch. The threat model is in ``book/grading.md``.
"""
from __future__ import annotations

import argparse
import ast
import csv
import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

__all__ = ["add_grade_parser", "grade_notebooks", "find_check_calls", "scan_source", "write_csv"]

_WORKER_FLAG = "--attncourse-grade-worker"
_THIS_FILE = os.path.abspath(__file__)
_GRADER_DEFINES = ("check", "grade", "score_summary")  # names a notebook should not define itself
_SUSPICIOUS_IMPORTS = {"ctypes": "imports ctypes", "gc": "imports gc", "builtins": "imports builtins",
                       "inspect": "imports inspect"}
_SUSPICIOUS_ATTRS = {"_getframe": "inspects interpreter frames (sys._getframe)", "settrace": "installs a trace hook",
                     "setprofile": "installs a profile hook", "modules": None, "__builtins__": "touches __builtins__",
                     "__code__": "touches function code objects", "f_globals": "reads frame globals"}


# ==================================================================================================
# CLI
# ==================================================================================================
def add_grade_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``grade`` on the ``python -m attncourse`` command line."""
    p = subparsers.add_parser(
        "grade", help="execute learner notebooks headless and grade their exercises",
        description="Execute each notebook in its own kernel (time and memory bounded) and grade every "
                    "registered exercise with a fresh copy of the checks. Writes a CSV and a JSON report.")
    p.add_argument("submissions", nargs="+", help="notebooks (.ipynb) and/or folders of notebooks")
    p.add_argument("--out", default="grades.csv", help="CSV to write (default: grades.csv)")
    p.add_argument("--json", default=None, help="JSON report to write (default: the CSV path with .json)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to execute one notebook's cells (default 600)")
    p.add_argument("--grade-timeout", type=float, default=60.0, help="seconds to grade one exercise (default 60)")
    p.add_argument("--memory-mb", type=int, default=8192,
                   help="address-space limit (RLIMIT_AS) of each kernel in MiB; importing torch alone maps "
                        "about 3.3 GiB of it (default 8192)")
    p.add_argument("--jobs", type=int, default=1, help="submissions graded in parallel (default 1)")
    p.add_argument("--exercises", nargs="*", default=None, metavar="PREFIX",
                   help="grade the exercises whose key starts with one of these (e.g. 00.); 'all' for every "
                        "registered one (default: every exercise of the modules the submissions check)")
    p.add_argument("--profile", default="smoke", help="ATTNCOURSE_PROFILE for the kernels (default smoke)")
    p.add_argument("--gpu", action="store_true", help="let kernels see GPUs (default: hidden; CUDA needs far "
                                                    "more address space than --memory-mb allows)")
    p.set_defaults(func=_run_grade_command)
    return p


def _run_grade_command(args: argparse.Namespace) -> int:
    try:
        paths = _collect(args.submissions)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not paths:
        print("error: no .ipynb files found in " + " ".join(args.submissions), file=sys.stderr)
        return 2
    json_path = args.json or str(Path(args.out).with_suffix(".json"))
    t0 = time.monotonic()
    report = grade_notebooks(paths, timeout=args.timeout, grade_timeout=args.grade_timeout, memory_mb=args.memory_mb,
                             jobs=args.jobs, prefixes=args.exercises, profile=args.profile, gpu=args.gpu,
                             progress=lambda s: print(_progress_line(s), flush=True))
    write_csv(report, args.out)
    _write_json(report, json_path)
    print(f"graded {len(paths)} notebook(s) in {time.monotonic() - t0:.1f}s -> {args.out}, {json_path}")
    return 0


def _progress_line(sub: dict) -> str:
    return (f"{sub['file']}: {sub['total']:g} / {sub['max']:g}  [{sub['status']}]  {sub['seconds']:.1f}s"
            + (f"  — {'; '.join(sub['notes'])}" if sub["notes"] else ""))


def _collect(items: list[str]) -> list[Path]:
    paths: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            paths.extend(sorted(q for q in p.glob("*.ipynb") if not q.name.startswith(".")))
        elif p.is_file():
            paths.append(p)
        else:
            raise FileNotFoundError(f"no such notebook or folder: {item}")
    return paths


# ==================================================================================================
# reading a submission (trusted side: plain parsing, no execution)
# ==================================================================================================
def _code_cells(nb: dict) -> list[tuple[int, str]]:
    """(1-based cell number, source) of the notebook's non-empty code cells."""
    out = []
    for i, cell in enumerate(nb.get("cells", []), start=1):
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            src = cell.get("source", "")
            src = "".join(map(str, src)) if isinstance(src, list) else str(src)
            if src.strip():
                out.append((i, src))
    return out


def _to_python(source: str) -> str:
    """Cell source with IPython syntax (``%magic``, ``!cmd``) turned into Python, for ``ast``."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(source)
    except Exception:
        return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def _parse(source: str) -> ast.AST | None:
    try:
        return ast.parse(_to_python(source))
    except (SyntaxError, ValueError):
        return None


def find_check_calls(nb: dict) -> dict[str, str]:
    """``{key: answer expression}`` from the notebook's ``check("key", answer)`` calls (the last one wins)."""
    found: dict[str, str] = {}
    for _, src in _code_cells(nb):
        tree = _parse(src)
        if tree is None:
            continue
        calls = []
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            fn = node.func
            name = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else None
            if name != "check" or not node.args or not isinstance(node.args[0], ast.Constant):
                continue
            key = node.args[0].value
            answer = node.args[1] if len(node.args) > 1 else next(
                (kw.value for kw in node.keywords if kw.arg == "learner"), None)
            if isinstance(key, str) and answer is not None:
                calls.append((node.lineno, node.col_offset, key, ast.unparse(answer)))
        for _, _, key, expr in sorted(calls):
            found[key] = expr
    return found


def _is_alias_of(value: ast.AST | None, name: str) -> bool:
    """``check = ac.exercises.check`` is an ordinary alias, not a redefinition."""
    return (isinstance(value, ast.Attribute) and value.attr == name) or (isinstance(value, ast.Name) and value.id == name)


def scan_source(nb: dict) -> list[str]:
    """Reasons an instructor should look at this notebook's code (it may try to tamper with grading)."""
    reasons: list[str] = []
    aliases: set[str] = set()  # names bound to attncourse modules or objects
    for cell_no, src in _code_cells(nb):
        tree = _parse(src)
        if tree is None:
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mod = (node.module or "") if isinstance(node, ast.ImportFrom) else ""
                for a in node.names:
                    full = a.name if isinstance(node, ast.Import) else f"{mod}.{a.name}"
                    if full.split(".")[0] == "attncourse" or mod.split(".")[0] == "attncourse":
                        aliases.add((a.asname or a.name).split(".")[0])
                    top = (a.name if isinstance(node, ast.Import) else mod).split(".")[0]
                    if top in _SUSPICIOUS_IMPORTS:
                        reasons.append(f"cell {cell_no} {_SUSPICIOUS_IMPORTS[top]}")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name in _GRADER_DEFINES:
                reasons.append(f"cell {cell_no} defines its own {node.name}()")
            elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
                targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
                value = getattr(node, "value", None)
                for t in targets:
                    if isinstance(t, ast.Name) and t.id in _GRADER_DEFINES and not _is_alias_of(value, t.id):
                        reasons.append(f"cell {cell_no} rebinds {t.id}")
                    root = t
                    while isinstance(root, (ast.Attribute, ast.Subscript)):
                        root = root.value
                    if t is not root and isinstance(root, ast.Name) and root.id in aliases:
                        reasons.append(f"cell {cell_no} modifies the package: {ast.unparse(t)}")
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in (
                    "setattr", "delattr", "__import__", "exec"):
                reasons.append(f"cell {cell_no} calls {node.func.id}()")
            elif isinstance(node, ast.Attribute):
                why = _SUSPICIOUS_ATTRS.get(node.attr, "")
                if node.attr == "modules" and isinstance(node.value, ast.Name) and node.value.id == "sys":
                    why = "touches sys.modules"
                if why:
                    reasons.append(f"cell {cell_no} {why}")
            elif isinstance(node, ast.Name) and node.id == "__builtins__":
                reasons.append(f"cell {cell_no} touches __builtins__")
    return list(dict.fromkeys(reasons))  # unique, in order


# ==================================================================================================
# orchestration (trusted side)
# ==================================================================================================
class _PackageSnapshot:
    """The package's files, read once when grading starts: every kernel loads its fresh copy from a
    private copy of these bytes, so a submission that edits files on disk cannot change later grades."""

    def __init__(self, pkg_dir: str):
        self.pkg_dir = pkg_dir
        self.files: dict[str, bytes] = {}
        for root, dirs, files in os.walk(pkg_dir):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for f in sorted(files):
                if f.endswith((".pyc", ".pyo")):
                    continue
                path = os.path.join(root, f)
                with open(path, "rb") as fh:
                    self.files[os.path.relpath(path, pkg_dir)] = fh.read()
        self.digest = self._digest(self.files)

    @staticmethod
    def _digest(files: dict[str, bytes]) -> str:
        h = hashlib.sha256()
        for rel in sorted(files):
            h.update(rel.encode() + b"\0" + hashlib.sha256(files[rel]).digest())
        return h.hexdigest()

    def write(self, dest: str) -> str:
        for rel, data in self.files.items():
            path = os.path.join(dest, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as fh:
                fh.write(data)
        return dest

    def changed(self, where: str) -> list[str]:
        """Files under ``where`` that differ from the snapshot (added, removed or edited .py files)."""
        now: dict[str, bytes] = {}
        for root, dirs, files in os.walk(where):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for f in files:
                if f.endswith((".pyc", ".pyo")):
                    continue
                path = os.path.join(root, f)
                try:
                    with open(path, "rb") as fh:
                        now[os.path.relpath(path, where)] = fh.read()
                except OSError:
                    now[os.path.relpath(path, where)] = b"<unreadable>"
        return sorted(k for k in set(now) | set(self.files) if now.get(k) != self.files.get(k))


def _registry():
    from .exercises import EXERCISES  # the grader's own copy: keys, titles and points

    return {k: {"title": ex.title, "points": float(ex.points)} for k, ex in sorted(EXERCISES.items())}


def _columns(registry: dict, calls: list[dict[str, str]], prefixes: list[str] | None) -> list[str]:
    if prefixes and any(p == "all" for p in prefixes):
        return list(registry)
    if prefixes:
        return [k for k in registry if any(k.startswith(p) for p in prefixes)]
    modules = {k.split(".")[0] for c in calls for k in c if k in registry}
    return [k for k in registry if k.split(".")[0] in modules]


def grade_notebooks(paths: list[str | Path], *, timeout: float = 600.0, grade_timeout: float = 60.0,
                    memory_mb: int = 8192, jobs: int = 1, prefixes: list[str] | None = None, profile: str = "smoke",
                    gpu: bool = False, progress=None) -> dict:
    """Grade notebooks; return the report (what the JSON holds). Never raises for a bad submission."""
    pkg_dir = os.path.dirname(_THIS_FILE)
    snapshot = _PackageSnapshot(pkg_dir)
    registry = _registry()
    notebooks, calls = [], []
    for p in paths:
        nb, err = _read_notebook(Path(p))
        try:
            found = find_check_calls(nb) if nb is not None else {}
        except Exception as exc:  # a malformed notebook must not stop the others
            nb, err, found = None, f"could not read the notebook's cells: {type(exc).__name__}: {exc}", {}
        notebooks.append((Path(p), nb, err))
        calls.append(found)
    columns = _columns(registry, calls, prefixes)
    settings = {"timeout_s": timeout, "grade_timeout_s": grade_timeout, "memory_mb": memory_mb, "jobs": jobs,
                "profile": profile, "gpu": gpu, "python": sys.version.split()[0], "package_sha256": snapshot.digest}
    lock = threading.Lock()

    def one(i: int) -> dict:
        path, nb, err = notebooks[i]
        try:
            sub = _grade_one(path, nb, err, calls[i], columns, registry, snapshot, settings)
        except Exception as exc:  # a bug or an odd notebook: a failed row, never a crashed grader
            sub = _grade_one(path, None, f"grader error: {type(exc).__name__}: {exc}", {}, columns, registry,
                             snapshot, settings)
        if progress is not None:
            with lock:
                progress(sub)
        return sub

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        submissions = list(pool.map(one, range(len(notebooks))))
    return {
        "grader": {**settings, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
        "exercises": {k: registry[k] for k in columns},
        "max_total": round(sum(registry[k]["points"] for k in columns), 2),
        "submissions": submissions,
    }


def _read_notebook(path: Path) -> tuple[dict | None, str]:
    try:
        with open(path, encoding="utf-8") as fh:
            nb = json.load(fh)
        if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
            return None, "not a notebook (no cells)"
        return nb, ""
    except (OSError, ValueError, UnicodeDecodeError) as err:
        return None, f"unreadable notebook: {type(err).__name__}: {err}"


_SEVERITY = ["failed", "review", "kernel died", "timeout", "memory", "errors"]


def _status(flags: list[str]) -> str:
    present = [f for f in _SEVERITY if f in flags]
    return "+".join(present) if present else "ok"


def _grade_one(path: Path, nb: dict | None, read_error: str, calls: dict[str, str], columns: list[str],
               registry: dict, snapshot: _PackageSnapshot, settings: dict) -> dict:
    t0 = time.monotonic()
    sub = {"file": str(path), "status": "ok", "flags": [], "notes": [], "total": 0.0,
           "max": round(sum(registry[k]["points"] for k in columns), 2), "seconds": 0.0,
           "exercises": {k: {"points": registry[k]["points"], "earned": 0.0, "answer": calls.get(k), "cases": [],
                             "note": ""} for k in columns},
           "cells": {"code": 0, "ran": 0, "errors": []}, "review": [], "phases": {}}
    for k in calls:
        if k not in registry:
            sub["notes"].append(f"check({k!r}, …) is not a registered exercise (ignored)")
    if nb is None:
        sub["flags"].append("failed")
        sub["notes"].append(read_error)
        return _finish(sub, t0)
    sub["review"] = scan_source(nb)
    sub["cells"]["code"] = len(_code_cells(nb))
    graded = {k: calls[k] for k in columns if k in calls}
    for k in columns:
        if k not in calls:
            sub["exercises"][k]["note"] = f"no check({k!r}, …) call in the notebook"
    tmp = tempfile.mkdtemp(prefix="attncourse-grade-")
    try:
        pkg_copy = snapshot.write(os.path.join(tmp, "pkg", "attncourse"))
        spec = {"notebook": str(path.resolve()), "cwd": str(path.resolve().parent), "tmp": tmp,
                "pkg_dir": pkg_copy, "installed_pkg": snapshot.pkg_dir, "alias": f"_attncourse_grader_{uuid.uuid4().hex[:12]}", "exercises": graded,
                "timeout": settings["timeout_s"], "grade_timeout": settings["grade_timeout_s"],
                "memory_mb": settings["memory_mb"], "result": os.path.join(tmp, "result.json"),
                "kernel_pid_file": os.path.join(tmp, "kernel.pid"), "env": _kernel_env(settings, tmp)}
        spec_path = os.path.join(tmp, "spec.json")
        with open(spec_path, "w") as fh:
            json.dump(spec, fh)
        hard = settings["timeout_s"] * 2 + settings["grade_timeout_s"] * (len(graded) + 2) + 120
        result, worker_note = _run_worker(spec_path, spec, hard)
        if worker_note:
            sub["flags"].append("failed")
            sub["notes"].append(worker_note)
        changed = snapshot.changed(pkg_copy)
        if changed:
            sub["flags"].append("review")
            sub["notes"].append(f"the grader's copy of the checks was modified on disk ({', '.join(changed[:3])})")
        _merge(sub, result, registry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _finish(sub, t0)


def _finish(sub: dict, t0: float) -> dict:
    if sub["review"]:
        sub["flags"].append("review")
        sub["notes"].append("review: " + "; ".join(sub["review"][:6]) + (" …" if len(sub["review"]) > 6 else ""))
    sub["flags"] = list(dict.fromkeys(sub["flags"]))
    sub["status"] = _status(sub["flags"])
    sub["total"] = round(sum(e["earned"] for e in sub["exercises"].values()), 2)
    sub["seconds"] = round(time.monotonic() - t0, 2)
    return sub


def _merge(sub: dict, result: dict, registry: dict) -> None:
    """Fold the worker's result into the row; scores are clamped to the registered points."""
    sub["flags"].extend(f for f in result.get("flags", []) if isinstance(f, str))
    sub["notes"].extend(str(n) for n in result.get("notes", []))
    sub["phases"] = {k: v for k, v in (result.get("seconds") or {}).items() if isinstance(v, (int, float))}
    cells = result.get("cells") or {}
    sub["cells"]["ran"] = int(cells.get("ran", 0))
    sub["cells"]["errors"] = list(cells.get("errors", []))
    tampered = result.get("tampered") or []
    if tampered:
        sub["flags"].append("review")
        sub["notes"].append("review: library objects replaced by notebook code: " + ", ".join(map(str, tampered[:5]))
                            + (" …" if len(tampered) > 5 else ""))
    for key, row in sub["exercises"].items():
        if row["answer"] is not None and key not in (result.get("exercises") or {}):
            row["note"] = "not graded (see the notes)"
    for key, rec in (result.get("exercises") or {}).items():
        if key not in sub["exercises"] or not isinstance(rec, dict):
            continue
        row = sub["exercises"][key]
        try:
            earned = float(rec.get("earned", 0.0))
        except (TypeError, ValueError):
            earned = 0.0
        row["earned"] = round(min(max(earned if math.isfinite(earned) else 0.0, 0.0), registry[key]["points"]), 2)
        row["cases"] = [c for c in rec.get("cases", []) if isinstance(c, dict)][:100]
        row["note"] = str(rec.get("note", ""))[:500]


def _kernel_env(settings: dict, tmp: str) -> dict[str, str]:
    env = {"ATTNCOURSE_PROFILE": settings["profile"], "MPLBACKEND": "Agg", "PYTHONHASHSEED": "0",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2",
           "IPYTHONDIR": os.path.join(tmp, "ipython"), "JUPYTER_RUNTIME_DIR": os.path.join(tmp, "runtime"),
           "JUPYTER_PLATFORM_DIRS": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1", "TQDM_DISABLE": "1"}
    if not settings["gpu"]:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def _kill_group(pid: int | None) -> None:
    if not pid:
        return
    for kill in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            kill()
        except (ProcessLookupError, PermissionError, OSError):
            pass


def _run_worker(spec_path: str, spec: dict, hard_limit: float) -> tuple[dict, str]:
    """Run the worker process; return (its result, a note when it failed or had to be killed)."""
    log_path = os.path.join(spec["tmp"], "worker.log")
    note = ""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-I", _THIS_FILE, _WORKER_FLAG, spec_path], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=spec["tmp"],
                                start_new_session=True)
        try:
            proc.wait(timeout=hard_limit)
        except subprocess.TimeoutExpired:
            note = f"grading worker killed after {hard_limit:.0f}s"
        finally:
            kernel_pid = None
            try:
                with open(spec["kernel_pid_file"]) as fh:
                    kernel_pid = int(fh.read().strip() or 0)
            except (OSError, ValueError):
                pass
            _kill_group(proc.pid)
            _kill_group(kernel_pid)
            proc.wait()
    try:
        with open(spec["result"]) as fh:
            return json.load(fh), note
    except (OSError, ValueError):
        tail = ""
        try:
            with open(log_path, "rb") as fh:
                fh.seek(max(0, os.path.getsize(log_path) - 600))
                tail = fh.read().decode("utf-8", "replace").strip().splitlines()[-1:]
                tail = tail[0] if tail else ""
        except OSError:
            pass
        return {}, note or f"grading worker failed (exit {proc.returncode}){': ' + tail if tail else ''}"


# ==================================================================================================
# output
# ==================================================================================================
def write_csv(report: dict, path: str | Path) -> None:
    """One row per submission: file, points per exercise, total, max, status, seconds, notes."""
    keys = list(report["exercises"])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["file", *keys, "total", "max", "status", "seconds", "notes"])
        for sub in report["submissions"]:
            w.writerow([sub["file"], *[f"{sub['exercises'][k]['earned']:g}" for k in keys], f"{sub['total']:g}",
                        f"{sub['max']:g}", sub["status"], f"{sub['seconds']:.1f}", "; ".join(sub["notes"])])
    os.replace(tmp, path)


def _write_json(report: dict, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


# ==================================================================================================
# inside the kernel: these run in the FRESH copy of the package (``<alias>.grading``)
# ==================================================================================================
def _kernel_tamper_scan(trusted_dirs: list[str]) -> list[str]:
    """Library attributes (torch, numpy, builtins, math, attncourse, …) that now hold notebook code."""
    import types

    trusted = tuple(os.path.realpath(d) for d in trusted_dirs if d)
    found: list[str] = []

    def foreign(value) -> bool:
        """Code written in the notebook: a function from a file outside the trusted folders, or an
        object or class defined in ``__main__``. Generated code (file ``<string>``) is not counted."""
        fn = value.__func__ if isinstance(value, (types.MethodType, staticmethod, classmethod)) else value
        if isinstance(fn, types.FunctionType):
            name = fn.__code__.co_filename
            if name.startswith("<"):
                return name.startswith("<ipython")
            return not os.path.realpath(name).startswith(trusted)
        if isinstance(value, type):
            return value.__module__ == "__main__"
        return getattr(type(value), "__module__", "") == "__main__"

    names = ["builtins", "math", "json", "random", "os", "importlib", "torch", "torch.nn.functional", "torch.testing",
             "numpy", "numpy.testing"]
    names += sorted(n for n in sys.modules if n == "attncourse" or n.startswith("attncourse."))
    for mod_name in names:
        mod = sys.modules.get(mod_name)
        if mod is None:
            continue
        spaces = [(mod_name, vars(mod))]
        if mod_name == "torch":
            spaces += [("torch.Tensor", vars(mod.Tensor)), ("torch.nn.Module", vars(mod.nn.Module))]
        for prefix, space in spaces:
            for attr, value in list(space.items()):
                try:
                    if foreign(value):
                        found.append(f"{prefix}.{attr}")
                except Exception:
                    continue
    core = sys.modules.get("attncourse.exercises.core")
    for key, ex in (getattr(core, "EXERCISES", None) or {}).items():
        for part in ("checker", "solution"):
            try:
                if foreign(getattr(ex, part, None)):
                    found.append(f"attncourse EXERCISES[{key!r}].{part}")
            except Exception:
                continue
    return found


def _kernel_setup(report_path: str, trusted_dirs: list[str]) -> None:
    """Called once in the kernel after the notebook ran: load the exercises, scan for tampering."""
    from . import exercises  # noqa: F401  (the fresh copy registers its exercises)

    try:
        tampered = _kernel_tamper_scan(trusted_dirs)
    except Exception as err:
        tampered = [f"scan failed: {type(err).__name__}"]
    with open(report_path, "w") as fh:
        json.dump({"tampered": tampered, "registered": sorted(exercises.EXERCISES)}, fh)


def _kernel_grade(key: str, expr: str, namespace: dict, out_path: str) -> None:
    """Called in the kernel for one exercise: evaluate the answer expression, grade it, write JSON."""
    from .exercises import core

    rec: dict = {"key": key, "earned": 0.0, "cases": [], "note": ""}
    try:
        learner = eval(compile(expr, "<answer>", "eval"), namespace)  # noqa: S307 (the learner's own expression)
    except Exception as err:
        rec["note"] = f"could not evaluate the answer `{expr}` at the end of the notebook: {type(err).__name__}: {err}"
    else:
        earned, total, results = core.grade(key, learner)
        rec.update(earned=earned, total=total, cases=[{"name": r.name, "passed": bool(r.passed), "hint": r.hint}
                                                      for r in results])
    with open(out_path, "w") as fh:
        json.dump(rec, fh)


# ==================================================================================================
# the worker process (runs this file as a script: standard library + nbclient only)
# ==================================================================================================
def _set_limits(spec: dict) -> None:
    import resource

    limit = int(spec["memory_mb"]) * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))  # inherited by the kernel
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    cpu = int(4 * (spec["timeout"] + spec["grade_timeout"] * (len(spec["exercises"]) + 2)) + 120)
    try:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 30))  # a backstop should the kernel outlive us
    except (ValueError, OSError):
        pass


class _Kernel:
    """One kernel driven through nbclient, with the outputs discarded (only errors are kept)."""

    def __init__(self, spec: dict):
        import nbformat
        from nbclient import NotebookClient

        class QuietClient(NotebookClient):
            def output(self, outs, msg, display_id, cell_index):  # keep nothing a notebook prints
                return None

        self.spec = spec
        self.nbformat = nbformat
        self.book = nbformat.v4.new_notebook()
        self.last_error: dict | None = None
        self.client = QuietClient(
            self.book, timeout=60, kernel_name="python3", allow_errors=True, interrupt_on_timeout=True,
            error_on_timeout={"ename": "GraderTimeout", "evalue": "time limit reached", "traceback": []},
            shutdown_kernel="immediate", startup_timeout=120, iopub_timeout=2, raise_on_iopub_timeout=False,
            record_timing=False, skip_cells_with_tag="skip-execution",
            resources={"metadata": {"path": spec["cwd"]}})
        self.client.on_cell_error = self._on_error
        self.client.km = self.client.create_kernel_manager()
        self.client.start_new_kernel(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pid = getattr(getattr(self.client.km, "provisioner", None), "pid", None) or getattr(
            getattr(getattr(self.client.km, "provisioner", None), "process", None), "pid", None)
        if pid:
            with open(spec["kernel_pid_file"], "w") as fh:
                fh.write(str(pid))
        self.pid = pid
        self.client.start_new_kernel_client()

    def _on_error(self, cell, cell_index, execute_reply):
        content = execute_reply.get("content", {})
        self.last_error = {"ename": str(content.get("ename", "")), "evalue": str(content.get("evalue", ""))[:300]}

    def run(self, source: str, timeout: float, store_history: bool = True) -> tuple[str, dict | None]:
        """Execute ``source``: ('ok' | 'error' | 'timeout' | 'dead', error or None)."""
        from nbclient.exceptions import DeadKernelError

        cell = self.nbformat.v4.new_code_cell(source)
        self.book.cells.append(cell)
        self.last_error = None
        self.client.timeout = max(1, int(math.ceil(timeout)))
        try:
            self.client.execute_cell(cell, len(self.book.cells) - 1, store_history=store_history)
        except DeadKernelError:
            return "dead", None
        except Exception as err:  # nbclient gave up on the kernel (e.g. no reply at all)
            return "dead", {"ename": type(err).__name__, "evalue": str(err)[:300]}
        if self.last_error is None:
            return "ok", None
        if self.last_error["ename"] == "GraderTimeout":
            return "timeout", self.last_error
        return "error", self.last_error

    def responsive(self, wait: float = 10.0) -> bool:
        """After an interrupt: does the kernel answer again?"""
        status, _ = self.run("pass", wait, store_history=False)
        return status in ("ok", "error")

    def stop(self) -> None:
        try:
            self.client._cleanup_kernel()
        except Exception:
            pass
        _kill_group(self.pid)


def _cell_label(cell_no: int, source: str) -> str:
    first = next((line.strip() for line in source.splitlines() if line.strip()), "")
    return f"cell {cell_no} (`{first[:40]}{'…' if len(first) > 40 else ''}`)"


_NEUTRALISE_EXIT = """
try:
    get_ipython().ask_exit = lambda: None  # exit()/quit() would end the kernel a moment later: a no-op here
except Exception:
    pass
"""


def _start(spec: dict) -> _Kernel:
    kernel = _Kernel(spec)
    kernel.run(_NEUTRALISE_EXIT, 30, store_history=False)
    return kernel


def _execute_cells(spec: dict, cells: list[tuple[int, str]], out: dict) -> tuple[_Kernel | None, int]:
    """Run the cells within the budget; return (a live kernel or None, how many cells it has run)."""
    deadline = time.monotonic() + spec["timeout"]
    kernel = _start(spec)
    for n, (cell_no, src) in enumerate(cells):
        left = deadline - time.monotonic()
        if left <= 0:
            out["flags"].append("timeout")
            out["notes"].append(f"time limit of {spec['timeout']:g}s reached before {_cell_label(cell_no, src)}; "
                                f"{len(cells) - n} cell(s) did not run")
            return kernel, n
        status, err = kernel.run(src, left)
        out["cells"]["ran"] = n + 1
        if status == "error":
            out["cells"]["errors"].append({"cell": cell_no, "error": f"{err['ename']}: {err['evalue']}"})
            memory = "MemoryError" in err["ename"] or "can't allocate memory" in err["evalue"]
            out["flags"].append("memory" if memory else "errors")
            if memory:
                out["notes"].append(f"{_cell_label(cell_no, src)} ran out of memory (limit {spec['memory_mb']} MiB)")
            else:
                out["notes"].append(f"{_cell_label(cell_no, src)} raised {err['ename']}: {err['evalue'][:120]}")
            continue
        if status == "ok":
            continue
        rest = len(cells) - n - 1
        later = f"; {rest} later cell(s) did not run" if rest else ""
        if status == "timeout":
            out["flags"].append("timeout")
            out["notes"].append(f"time limit of {spec['timeout']:g}s reached in {_cell_label(cell_no, src)}{later}")
            if kernel.responsive():
                return kernel, n
            out["notes"].append("the kernel did not respond to the interrupt")
        else:
            out["flags"].append("kernel died")
            out["notes"].append(f"the kernel died in {_cell_label(cell_no, src)} (os._exit, a crash or memory){later}")
        kernel.stop()
        return _replay(spec, cells[:n], out), n
    return kernel, len(cells)


def _replay(spec: dict, cells: list[tuple[int, str]], out: dict) -> _Kernel | None:
    """The kernel was lost: re-run the cells that had run, in a new kernel, so their work can be graded."""
    kernel = _start(spec)
    if not cells:
        return kernel
    deadline = time.monotonic() + spec["timeout"]
    for cell_no, src in cells:
        status, _ = kernel.run(src, max(1.0, deadline - time.monotonic()))
        if status in ("timeout", "dead"):
            out["notes"].append(f"re-running the first {len(cells)} cell(s) failed at cell {cell_no} ({status})")
            kernel.stop()
            return None
    out["notes"].append(f"re-ran the first {len(cells)} cell(s) in a new kernel")
    return kernel


def _setup_checks(spec: dict, kernel: _Kernel, out: dict) -> bool:
    """Load the fresh copy of the package into the kernel under a private name; scan for tampering."""
    tmp, alias, pkg = spec["tmp"], spec["alias"], spec["pkg_dir"]
    setup_path = os.path.join(tmp, "setup.json")
    trusted = [sys.prefix, sys.base_prefix, sys.exec_prefix, pkg, spec["installed_pkg"]]
    setup = f"""
def __attncourse_grader_setup():
    import importlib, importlib.util, os, sys
    sys.dont_write_bytecode = True
    spec = importlib.util.spec_from_file_location({alias!r}, os.path.join({pkg!r}, "__init__.py"),
                                                  submodule_search_locations=[{pkg!r}])
    module = importlib.util.module_from_spec(spec)
    sys.modules[{alias!r}] = module
    spec.loader.exec_module(module)
    importlib.import_module({alias + ".grading"!r})._kernel_setup({setup_path!r}, {trusted!r})
__attncourse_grader_setup()
del __attncourse_grader_setup
"""
    status, err = kernel.run(setup, 120 + spec["grade_timeout"], store_history=False)
    try:
        with open(setup_path) as fh:
            info = json.load(fh)
    except (OSError, ValueError):
        info = None
    if status != "ok" or info is None:
        why = f"{err['ename']}: {err['evalue']}" if err else status
        out["notes"].append(f"could not load the checks in the notebook's kernel ({why})")
        return False
    out["tampered"] = list(dict.fromkeys(out["tampered"] + list(info.get("tampered", []))))
    return True


def _grade_exercises(spec: dict, kernel: _Kernel | None, cells: list[tuple[int, str]], out: dict) -> _Kernel | None:
    """Grade each exercise in the kernel. An answer that kills the kernel scores 0; the kernel is then
    rebuilt once (the cells re-run) to grade the remaining exercises."""
    keys = list(spec["exercises"].items())
    rebuilt, ready = False, False
    for i, (key, expr) in enumerate(keys):
        if kernel is not None and not ready:
            ready = _setup_checks(spec, kernel, out)
            if not ready:
                kernel.stop()
                kernel = None
        if kernel is None:
            for k, _ in keys[i:]:
                out["exercises"][k] = {"earned": 0.0, "cases": [], "note": "not graded: no working kernel"}
            out["flags"].append("failed")
            out["notes"].append(f"{len(keys) - i} exercise(s) could not be graded")
            return kernel
        path = os.path.join(spec["tmp"], f"grade_{i}.json")
        code = f"""
def __attncourse_grade_one():
    import sys
    sys.modules[{spec['alias'] + ".grading"!r}]._kernel_grade({key!r}, {expr!r}, globals(), {path!r})
__attncourse_grade_one()
del __attncourse_grade_one
"""
        status, err = kernel.run(code, spec["grade_timeout"], store_history=False)
        rec = None
        if status == "ok":
            try:
                with open(path) as fh:
                    rec = json.load(fh)
            except (OSError, ValueError):
                rec = None
        if rec is not None:
            out["exercises"][key] = rec
            continue
        what = {"timeout": f"took longer than {spec['grade_timeout']:g}s", "dead": "killed the kernel",
                "error": f"raised {err['ename']}: {err['evalue'][:120]}" if err else "failed"}.get(status, status)
        out["exercises"][key] = {"earned": 0.0, "cases": [], "note": f"grading {key} {what}"}
        out["notes"].append(f"grading {key} {what}")
        if status == "timeout" and kernel.responsive():
            continue
        if status in ("timeout", "dead"):
            kernel.stop()
            kernel, ready = None, False
            if not rebuilt and i + 1 < len(keys):
                rebuilt = True
                kernel = _replay(spec, cells, out)
    return kernel


def _skipped(cell: dict) -> bool:
    meta = cell.get("metadata")
    tags = meta.get("tags") if isinstance(meta, dict) else None
    return isinstance(tags, list) and "skip-execution" in tags


def _worker_main(spec_path: str) -> int:
    with open(spec_path) as fh:
        spec = json.load(fh)
    out: dict = {"flags": [], "notes": [], "exercises": {}, "cells": {"ran": 0, "errors": []}, "tampered": [],
                 "seconds": {}}
    kernel = None
    t0 = time.monotonic()
    try:
        os.environ.update(spec["env"])
        for d in ("IPYTHONDIR", "JUPYTER_RUNTIME_DIR"):
            os.makedirs(spec["env"][d], exist_ok=True)
        _set_limits(spec)
        with open(spec["notebook"], encoding="utf-8") as fh:
            nb = json.load(fh)
        cells = [(no, src) for no, src in _code_cells(nb) if not _skipped(nb["cells"][no - 1])]
        kernel, ran = _execute_cells(spec, cells, out)
        out["seconds"]["execute"] = round(time.monotonic() - t0, 2)
        t1 = time.monotonic()
        if kernel is None:
            out["flags"].append("failed")
        if spec["exercises"]:
            kernel = _grade_exercises(spec, kernel, cells[:ran], out)
        out["seconds"]["grade"] = round(time.monotonic() - t1, 2)
    except BaseException as err:  # never let the worker die without a result
        out["flags"].append("failed")
        out["notes"].append(f"grader error: {type(err).__name__}: {str(err)[:200]}")
    finally:
        if kernel is not None:
            kernel.stop()
        tmp = spec["result"] + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(out, fh)
        os.replace(tmp, spec["result"])
    return 0


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == _WORKER_FLAG:
    sys.exit(_worker_main(sys.argv[2]))
