"""Feedback for each student: ``grade … --feedback DIR`` writes one Markdown file per submission.

For every exercise of the assignment the file shows what ``check`` printed in the notebook: the title line,
one ✅/❌ line per case with its hint, and ``Points: x / y`` (:func:`check_lines` follows
:func:`attncourse.exercises.check` line for line; a test holds them equal). Then the questions, counted apart,
and the grader's notes (time limits, cells that failed, reviews).

A submission's text (its file name, the hints that quote its exceptions, the notes that quote its cells) never
becomes markup or a link target: it is only ever written inside a fenced code block whose fence is longer than
any run of backticks in it, with control characters (a carriage return starts a new line in Markdown) and
bidirectional-override characters shown as escapes. File names follow the reports' rules: a safe name made of
letters, digits, ``._-`` (plus a short hash of the full path so two submissions never share a file), written
atomically inside ``DIR`` and nowhere else.
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path

from . import files

NOT_IMPLEMENTED_HINT = "not implemented yet (the stub still raises NotImplementedError)"  # as attncourse.exercises
SIDE_NOTE = "counts once the values are right"  # as attncourse.exercises.side_properties
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_BIDI = {"\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069", "\u200e", "\u200f",
         "\u061c"}
MAX_TEXT = 4000  # characters of one block


def _fmt(x: float) -> str:
    return f"{x:g}"


def check_lines(key: str, title: str, earned: float, total: float, cases: list[dict]) -> list[str]:
    """The lines :func:`attncourse.exercises.check` prints for these results (the same rules: a single hint shared
    by every failed case of an all-failed exercise is said once)."""
    lines = [f"{key} — {title}"]
    hints = {c["hint"] for c in cases if not c["passed"]}
    if len(cases) > 1 and not any(c["passed"] for c in cases) and len(hints) == 1:
        hint = hints.pop()
        if hint == NOT_IMPLEMENTED_HINT:
            hint += ": replace the `raise NotImplementedError` line with your code"
        lines.append(f"  ❌ all {len(cases)} cases: {hint}")
    else:
        values_right = all(c["passed"] for c in cases if not c.get("side"))
        for c in cases:
            note = f" ({SIDE_NOTE})" if c["passed"] and c.get("side") and not values_right else ""
            lines.append(f"  ✅ {c['name']}{note}" if c["passed"] else f"  ❌ {c['name']}: {c['hint'] or 'failed'}")
    lines.append(f"Points: {_fmt(earned)} / {_fmt(total)}")
    return lines


def _visible(text: str) -> str:
    """Control and bidirectional-override characters (other than newline and tab) shown as ``\\uXXXX`` escapes."""
    out = []
    for ch in str(text):
        if ch in "\n\t":
            out.append(ch)
        elif ch in _BIDI or unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co"):
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def literal_block(text: str) -> str:
    """``text`` as a fenced code block nothing in it can close: never markup, never a link."""
    body = _visible(text)
    if len(body) > MAX_TEXT:
        body = body[:MAX_TEXT] + "\n… (cut)"
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{body}\n{fence}"


def safe_name(file: str) -> str:
    """A feedback file name for a submission: its base name with every character outside ``A-Za-z0-9._-`` replaced,
    no leading dot, at most 80 characters, plus 8 hex digits of a hash of the full path (unique per submission)."""
    base = Path(str(file)).name
    stem = base[:-6] if base.endswith(".ipynb") else base
    stem = _UNSAFE_NAME.sub("_", stem).strip("._-")[:80] or "submission"
    digest = hashlib.sha256(str(file).encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{stem}-{digest}.md"


def render(sub: dict, report: dict) -> str:
    """The Markdown feedback for one submission of ``report``."""
    exercises, questions = report.get("exercises", {}), report.get("questions", {})
    out = ["# Feedback", "", "Submission:", "", literal_block(Path(sub["file"]).name), "",
           f"Exercises: **{_fmt(sub['total'])} / {_fmt(sub['max'])}** points"
           + (f" · questions (counted apart): **{_fmt(sub.get('questions_total', 0))} / "
              f"{_fmt(sub.get('questions_max', 0))}**" if questions else ""), "",
           f"Status: **{sub['status']}**", ""]
    if exercises:
        out += ["## Exercises", ""]
    for key, meta in exercises.items():
        row = sub["exercises"].get(key, {})
        out += [f"### {key} — {meta['title']} ({_fmt(meta['points'])} points)", ""]
        if row.get("cases"):
            lines = check_lines(key, meta["title"], row["earned"], meta["points"], row["cases"])
        else:
            lines = [f"{key} — {meta['title']}", f"  ❌ {row.get('note') or 'not graded'}",
                     f"Points: {_fmt(row.get('earned', 0))} / {_fmt(meta['points'])}"]
        out += [literal_block("\n".join(lines)), ""]
        if row.get("cases") and row.get("note"):
            out += ["Grader's note:", "", literal_block(row["note"]), ""]
        if row.get("review"):
            out += ["Flagged for review by the instructor (these points are not final):", "",
                    literal_block(row["review"]), ""]
    if questions:
        out += ["## Questions (counted apart from the exercises)", ""]
    for key, meta in questions.items():
        row = sub.get("questions", {}).get(key, {})
        mark = "✅" if row.get("result") == "right" else "❌"
        result, note = row.get("result", "not graded"), row.get("note", "")
        if row.get("value") is None and result in ("no check call", "not evaluated", "invalid") and note:
            said = f"  ❌ {note}"
        else:
            value = row.get("value") if row.get("value") is not None else "None"
            said = f"  {mark} answer {value}: {result}" + (f" — {note}" if note else "")
        lines = [f"{key} — {meta['title']} (question: counted apart from the exercises)", said,
                 f"Question points: {_fmt(row.get('earned', 0))} / {_fmt(meta['points'])}"]
        out += [literal_block("\n".join(lines)), ""]
    out += ["## Notes from the grader", ""]
    out += [literal_block("\n".join(f"- {n}" for n in sub["notes"])) if sub["notes"] else "None.", ""]
    return "\n".join(out)


def write_feedback(report: dict, folder) -> list[Path]:
    """One Markdown file per submission in ``folder`` (created); returns the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    root = folder.resolve()
    written = []
    for sub in report["submissions"]:
        target = folder / safe_name(sub["file"])
        if target.resolve().parent != root:  # cannot happen with safe_name; kept as the last line of defence
            raise ValueError(f"feedback: {target} would leave {folder}")
        files.write_atomic(target, render(sub, report))
        written.append(target)
    return written
