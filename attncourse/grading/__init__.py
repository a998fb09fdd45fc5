"""The instructor's batch grader: ``python -m attncourse grade [options] -- SUBMISSION.ipynb|FOLDER ...``.

Learner code runs only in a sandboxed worker per submission (:mod:`.sandbox`, :mod:`.worker`); the
checks run here, in the grader's own process, on proxies that call into the worker and get plain data
back (:mod:`.peer`, :mod:`.remote`, :mod:`.wire`). Files are read defensively (:mod:`.files`), the
notebook's source is parsed, never run, here (:mod:`.source`), and the class is orchestrated by
:mod:`.batch`. Predict-first and interpret questions are graded from their plain answers and reported
in columns and a total of their own (:mod:`.questions`). Around grading: student copies (:mod:`.release`),
one feedback file per submission (:mod:`.feedback`) and LMS imports (:mod:`.export`). The threat model and what was tested are in ``book/grading.md``.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from . import export, feedback, files
from .batch import _status, columns_for as _columns_for, grade_notebooks
from .source import find_check_calls, scan_source

__all__ = ["add_grade_parser", "grade_notebooks", "find_check_calls", "scan_source", "write_csv", "write_json"]

_PREFIX = re.compile(r"(all|\d\d\.?|\d\d\.[0-9A-Za-z_]+)")


def _columns(registry: dict, calls: list[dict[str, str]], prefixes: list[str] | None) -> list[str]:
    return _columns_for(registry, calls, prefixes)


def add_grade_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``grade`` on the ``python -m attncourse`` command line."""
    p = subparsers.add_parser(
        "grade", help="grade learner notebooks: their code in a sandbox, the checks in the grader",
        description="Run each notebook's cells in a sandboxed worker and grade every exercise it checks with the "
                    "checks running in the grader's own process. Writes a CSV and a JSON report. Put the "
                    "submissions after `--` so no file name is read as an option.", allow_abbrev=False)
    p.add_argument("submissions", nargs="*", help="notebooks (.ipynb) and/or folders of notebooks")
    p.add_argument("--out", default="grades.csv", help="CSV to write (default: grades.csv)")
    p.add_argument("--json", default=None, help="JSON report to write (default: the CSV path with .json)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to run one notebook's cells (default 600)")
    p.add_argument("--cell-timeout", type=float, default=120.0,
                   help="seconds for one cell; a cell over it is interrupted and the next one runs (default 120)")
    p.add_argument("--grade-timeout", type=float, default=60.0, help="seconds to grade one exercise (default 60)")
    p.add_argument("--memory-mb", type=int, default=8192, help="address-space limit of each worker in MiB (default 8192)")
    p.add_argument("--jobs", type=int, default=1, help="submissions graded in parallel (default 1; 1 in sequential mode)")
    p.add_argument("--exercises", action="append", default=None, metavar="PREFIX",
                   help="grade the exercises and questions whose key starts with PREFIX (e.g. 00.); repeat for "
                        "several; 'all' for every registered one (default: every exercise and question of the "
                        "assignment's module: the one the student copies record, else the modules most submissions "
                        "check; a call outside it is noted, never scored)")
    p.add_argument("--profile", default="smoke", help="ATTNCOURSE_PROFILE for the workers (default smoke)")
    p.add_argument("--gpu", action="store_true", help="let workers see GPUs (default: hidden)")
    p.add_argument("--feedback", default=None, metavar="DIR",
                   help="write one Markdown feedback file per submission into DIR (cases, hints, points, notes)")
    p.add_argument("--export", choices=export.FORMATS, default=None,
                   help="also write a CSV an LMS imports: canvas (gradebook import), moodle (grade import) or plain "
                        "(id, points, max)")
    p.add_argument("--export-out", default=None, metavar="CSV",
                   help="where to write the export (default: the --out path with -<format>.csv)")
    p.add_argument("--id-pattern", default=None, metavar="REGEX",
                   help="regular expression searched in each file name for the student id: its group 'id', else its "
                        "first group, else the match (default: the name without .ipynb)")
    p.add_argument("--export-name", default=None, metavar="NAME",
                   help="the assignment's column name in the export (default: attncourse <modules>)")
    p.set_defaults(func=_run_grade_command)
    return p


def _usage_problem(args: argparse.Namespace, json_path: str) -> str:
    for flag, value in (("--out", args.out), ("--json", json_path)):
        if str(value).endswith(".ipynb"):
            return (f"{flag} {value!r} is a notebook name: was a submission's file name read as an option? "
                    "Put the submissions after `--`")
    for prefix in args.exercises or []:
        if not _PREFIX.fullmatch(prefix):
            return f"--exercises {prefix!r} is not an exercise prefix like 00. or 02.excitation (or all)"
    if getattr(args, "export", None) or getattr(args, "id_pattern", None):
        try:
            export.compile_pattern(args.id_pattern)
        except ValueError as err:
            return str(err)
    if getattr(args, "export_out", None) and str(args.export_out).endswith(".ipynb"):
        return f"--export-out {args.export_out!r} is a notebook name: put the submissions after `--`"
    return ""


def _run_grade_command(args: argparse.Namespace) -> int:
    json_path = args.json or str(Path(args.out).with_suffix(".json"))
    problem = _usage_problem(args, json_path)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        paths, refused = files.collect(args.submissions)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not paths and not refused:
        print("error: no .ipynb files found in " + " ".join(args.submissions), file=sys.stderr)
        return 2
    t0 = time.monotonic()
    export_path = args.export_out or str(Path(args.out).with_name(f"{Path(args.out).stem}-{args.export}.csv"))
    outputs = {Path(args.out).resolve().parent, Path(json_path).resolve().parent}
    if args.feedback:
        Path(args.feedback).mkdir(parents=True, exist_ok=True)  # exists now, so a bwrap worker sees it hidden
        outputs.add(Path(args.feedback).resolve())
    if args.export:
        outputs.add(Path(export_path).resolve().parent)
    report = grade_notebooks(paths, timeout=args.timeout, cell_timeout=args.cell_timeout,
                             grade_timeout=args.grade_timeout, memory_mb=args.memory_mb, jobs=args.jobs,
                             prefixes=args.exercises, profile=args.profile, gpu=args.gpu, refused=refused,
                             hide=sorted(outputs), progress=lambda s: print(_progress_line(s), flush=True))
    write_csv(report, args.out)
    write_json(report, json_path)
    print(f"sandbox: {report['grader']['sandbox_detail']}")
    print(f"graded {len(report['submissions'])} notebook(s) in {time.monotonic() - t0:.1f}s -> {args.out}, {json_path}")
    if args.feedback:
        written = feedback.write_feedback(report, args.feedback)
        print(f"feedback: {len(written)} file(s) in {args.feedback}")
    if args.export:
        problems = export.write_export(report, args.export, export_path, export.compile_pattern(args.id_pattern),
                                       args.export_name)
        print(f"export ({args.export}, max {report['max_total']:g}): {export_path}")
        for line in problems:
            print(f"  {line.encode('ascii', 'backslashreplace').decode('ascii')}")
    return 0


def _progress_line(sub: dict) -> str:
    name = sub["file"].encode("ascii", "backslashreplace").decode("ascii")
    questions = (f"  questions {sub.get('questions_total', 0):g} / {sub['questions_max']:g}"
                 if sub.get("questions_max") else "")
    return (f"{name}: {sub['total']:g} / {sub['max']:g}{questions}  [{sub['status']}]  {sub['seconds']:.1f}s"
            + (f"  — {'; '.join(sub['notes'])}" if sub["notes"] else ""))


def write_csv(report: dict, path) -> None:
    """One row per submission: the file, each exercise's points, total, max, then each question's points
    (columns ``Q:<key>``), questions_total, questions_max — apart from the exercise total — and status,
    seconds, notes. Cells a spreadsheet could read as formulas are neutralised; the file is replaced
    atomically."""
    keys = list(report["exercises"])
    qkeys = list(report.get("questions", {}))
    rows = [[s["file"], *(f"{s['exercises'][k]['earned']:g}" for k in keys), f"{s['total']:g}", f"{s['max']:g}",
             *(f"{s['questions'][k]['earned']:g}" for k in qkeys),
             *((f"{s['questions_total']:g}", f"{s['questions_max']:g}") if qkeys else ()),
             s["status"], f"{s['seconds']:.1f}", "; ".join(s["notes"])] for s in report["submissions"]]
    header = ["file", *keys, "total", "max", *(f"Q:{k}" for k in qkeys),
              *(("questions_total", "questions_max") if qkeys else ()), "status", "seconds", "notes"]
    files.write_atomic(path, files.csv_text(header, rows))


def write_json(report: dict, path) -> None:
    files.write_atomic(path, json.dumps(report, indent=1, ensure_ascii=False) + "\n")


_write_json = write_json
