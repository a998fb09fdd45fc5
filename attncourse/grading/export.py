"""Grades an LMS imports directly: ``grade … --export canvas|moodle|plain [--id-pattern REGEX]``.

The student id comes from each submission's file name: the named group ``id`` of ``--id-pattern`` (searched in
the base name), else its first group, else the whole match; by default the name without ``.ipynb``. The points
are the exercise total of the assignment (questions are counted apart and not exported).

Formats (one column of points, named by ``--export-name``, default ``attncourse <modules>``):

* ``canvas`` — a Canvas gradebook import CSV, laid out as Canvas's own gradebook export, which its import reads
  back (Canvas Instructor Guide, "How do I import grades in the Gradebook?"; the required columns as listed e.g.
  by Ohio State's "Import CSV File for Carmen Grades"): the header ``Student, ID, SIS User ID, SIS Login ID,
  Section, <assignment>``, where one of Student / ID / SIS User ID identifies the student and ``SIS Login ID`` and
  ``Section`` must be present (they may be empty); a second row ``Points Possible`` gives the assignment's
  maximum. The id goes into ``SIS User ID``. A new assignment name creates the assignment on import.
* ``moodle`` — a Moodle grade import CSV (MoodleDocs, "Grade import", CSV import): the first row is the header;
  on import the teacher maps the identifying column ("Map from" ``ID number`` → "Map to" ``useridnumber``) and
  the points column to a grade item (new or existing). Header: ``ID number, <assignment>``. Moodle refuses
  grades above the item's maximum unless unlimited grades are enabled: the item's maximum must be the
  assignment's (printed).
* ``plain`` — ``id, points, max``.

A row the grader flagged (status ``review`` or ``failed``) is exported with an empty points cell, which an
import leaves unchanged, and listed on the terminal: it is never imported before an instructor has looked at
it. Cells are neutralised like the report's (no spreadsheet formulas); files are written atomically.
"""
from __future__ import annotations

import re
from pathlib import Path

from . import files

FORMATS = ("canvas", "moodle", "plain")
CANVAS_HEADER = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
CANVAS_POINTS_ROW = "    Points Possible"
MOODLE_ID = "ID number"
PLAIN_HEADER = ["id", "points", "max"]
HELD_BACK = ("review", "failed")


def compile_pattern(pattern: str | None) -> re.Pattern:
    """The id pattern (``ValueError`` naming the flag when it is not a regular expression)."""
    try:
        return re.compile(pattern if pattern else r"^(?P<id>.+?)(\.ipynb)?$")
    except re.error as err:
        raise ValueError(f"--id-pattern {pattern!r} is not a regular expression: {err}") from None


def student_id(file: str, pattern: re.Pattern) -> str | None:
    """The id in ``file``'s base name, or ``None`` when the pattern does not match (or matches nothing)."""
    m = pattern.search(Path(str(file)).name)
    if m is None:
        return None
    if "id" in pattern.groupindex:
        value = m.group("id")
    elif pattern.groups:
        value = m.group(1)
    else:
        value = m.group(0)
    value = (value or "").strip()
    return value or None


def _points(sub: dict) -> str:
    return "" if any(f in HELD_BACK for f in sub.get("flags", [])) else f"{sub['total']:g}"


def export_rows(report: dict, fmt: str, pattern: re.Pattern, name: str) -> tuple[list[str], list[list[str]], list[str]]:
    """(header, rows, problems): problems say which submissions were left out or held back, and why."""
    if fmt not in FORMATS:
        raise ValueError(f"--export {fmt!r}: choose one of {', '.join(FORMATS)}")
    max_total = f"{report['max_total']:g}"
    ids: dict[str, list[dict]] = {}
    problems = []
    for sub in report["submissions"]:
        sid = student_id(sub["file"], pattern)
        if sid is None:
            problems.append(f"left out (no id in the file name): {sub['file']}")
            continue
        ids.setdefault(sid, []).append(sub)
    rows = []
    for sid, subs in ids.items():
        if len(subs) > 1:
            problems.append(f"left out (one id, {len(subs)} submissions): {sid}: " + ", ".join(s["file"] for s in subs))
            continue
        sub = subs[0]
        points = _points(sub)
        if points == "":
            problems.append(f"held back for review (empty points, status {sub['status']}): {sid}")
        if fmt == "canvas":
            rows.append(["", "", sid, "", "", points])
        elif fmt == "moodle":
            rows.append([sid, points])
        else:
            rows.append([sid, points, max_total])
    if fmt == "canvas":
        header = [*CANVAS_HEADER, name]
        rows.insert(0, [CANVAS_POINTS_ROW, "", "", "", "", max_total])
    elif fmt == "moodle":
        header = [MOODLE_ID, name]
    else:
        header = PLAIN_HEADER
    return header, rows, problems


def default_name(report: dict) -> str:
    modules = (report.get("assignment") or {}).get("modules") or sorted({k.split(".")[0] for k in report["exercises"]})
    return "attncourse " + " ".join(modules) if modules else "attncourse"


def write_export(report: dict, fmt: str, path, pattern: re.Pattern, name: str | None = None) -> list[str]:
    """Write the export; return the problems (rows left out or held back)."""
    header, rows, problems = export_rows(report, fmt, pattern, name or default_name(report))
    files.write_atomic(path, files.csv_text(header, rows))
    return problems
