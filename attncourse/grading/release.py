"""Student copies of the course notebooks: ``python -m attncourse release NOTEBOOK… --out DIR``.

A module notebook carries its solutions for self-study (collapsed in ``<details>`` on the website). A
student copy for graded work has them removed, not collapsed:

* every ``<details>`` block whose ``<summary>`` names a solution (or an answer) is cut out of its
  markdown cell; the rest of the cell (often the next exercise's statement) stays;
* every cell tagged ``solution`` is dropped;
* in a code cell, the lines between ``# BEGIN SOLUTION`` and ``# END SOLUTION`` are replaced by
  ``raise NotImplementedError`` (the convention nbgrader uses, for reference code kept in code cells);
* outputs, execution counts and execution timings are cleared;
* everything else stays: each exercise's statement, its stub and its ``check`` cell, the questions.

The copy records where it came from in the notebook metadata (``attncourse.assignment``: module, the
exercise and question keys it checks), which the grader uses to fix an assignment's columns. Release
refuses (``ValueError``) a notebook whose solution block is not closed, or whose copy would lose a
``check`` call, rather than hand out a leaking or broken copy. Notebooks are read and written as plain
JSON (nbformat 4), so nothing beyond the package is needed.
"""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

from . import files, source

SOLUTION_TAG = "solution"
_SOLUTION_SUMMARY = re.compile(r"solution|answer", re.IGNORECASE)
_DETAILS_OPEN = re.compile(r"<details\b[^>]*>", re.IGNORECASE)
_DETAILS_CLOSE = re.compile(r"</details\s*>", re.IGNORECASE)
_SUMMARY = re.compile(r"\s*<summary\b[^>]*>(.*?)</summary\s*>", re.IGNORECASE | re.DOTALL)
_BEGIN = re.compile(r"^(\s*)#+\s*BEGIN SOLUTION\b.*$", re.IGNORECASE)
_END = re.compile(r"^\s*#+\s*END SOLUTION\b.*$", re.IGNORECASE)
_MODULE = re.compile(r"^(\d\d)_")


def _text(src) -> str:
    return "".join(map(str, src)) if isinstance(src, list) else str(src or "")


def strip_solution_details(markdown: str, where: str = "a markdown cell") -> str:
    """``markdown`` without its solution ``<details>`` blocks (a details block with another summary, e.g. a
    hint, stays). Nested details inside a solution go with it. Raises ``ValueError`` for an unclosed block."""
    out, pos = [], 0
    while True:
        m = _DETAILS_OPEN.search(markdown, pos)
        if m is None:
            out.append(markdown[pos:])
            break
        depth, scan, end = 1, m.end(), None
        while depth:
            o, c = _DETAILS_OPEN.search(markdown, scan), _DETAILS_CLOSE.search(markdown, scan)
            if c is None:
                raise ValueError(f"release: {where} has a <details> block that is never closed (opened at "
                                 f"character {m.start()}): refusing to release a copy that could leak a solution")
            if o is not None and o.start() < c.start():
                depth, scan = depth + 1, o.end()
            else:
                depth, scan = depth - 1, c.end()
        end = scan
        summary = _SUMMARY.match(markdown, m.end())
        if summary is not None and _SOLUTION_SUMMARY.search(summary.group(1)):
            out.append(markdown[pos:m.start()])
        else:
            out.append(markdown[pos:end])
        pos = end
    text = "".join(out)
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


def strip_solution_lines(code: str, where: str = "a code cell") -> str:
    """``code`` with each ``# BEGIN SOLUTION`` … ``# END SOLUTION`` region replaced by ``raise NotImplementedError``
    at the marker's indentation. Raises ``ValueError`` for a region that is not closed."""
    lines, out, indent = code.splitlines(), [], None
    if not any(_BEGIN.match(line) for line in lines):
        return code
    for line in lines:
        if indent is None:
            m = _BEGIN.match(line)
            if m:
                indent = m.group(1)
                out.append(f"{indent}raise NotImplementedError")
            else:
                out.append(line)
        elif _END.match(line):
            indent = None
    if indent is not None:
        raise ValueError(f"release: {where} has a BEGIN SOLUTION marker without END SOLUTION")
    return "\n".join(out)


def _tags(cell: dict) -> list:
    tags = (cell.get("metadata") or {}).get("tags")
    return tags if isinstance(tags, list) else []


def release_notebook(nb: dict, name: str = "notebook") -> dict:
    """The student copy of ``nb`` (a notebook's JSON; not modified). See the module docstring."""
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise ValueError(f"release: {name} is not a notebook (no list of cells)")
    out = copy.deepcopy(nb)
    cells = []
    for i, cell in enumerate(out["cells"], start=1):
        if not isinstance(cell, dict) or SOLUTION_TAG in _tags(cell):
            continue
        kind, src = cell.get("cell_type"), _text(cell.get("source"))
        where = f"{name} cell {i}"
        if kind == "markdown":
            new = strip_solution_details(src, where)
        elif kind == "code":
            new = strip_solution_lines(src, where)
            cell["outputs"] = []
            cell["execution_count"] = None
        else:
            new = src
        if new.strip() == "" and src.strip() != "":
            continue  # the cell held only a solution
        cell["source"] = new
        meta = cell.get("metadata")
        if isinstance(meta, dict):
            meta.pop("execution", None)
        cells.append(cell)
    out["cells"] = cells
    before, after = source.find_check_calls(nb), source.find_check_calls(out)
    lost = sorted(set(before) - set(after))
    if lost:
        raise ValueError(f"release: the copy of {name} would lose the check call(s) {', '.join(lost)}: a cell that "
                         "holds a check is tagged or marked as a solution")
    m = _MODULE.match(Path(name).name)
    meta = out.setdefault("metadata", {})
    meta["attncourse"] = {**(meta.get("attncourse") if isinstance(meta.get("attncourse"), dict) else {}),
                          "assignment": {"source": Path(name).name, "module": m.group(1) if m else None,
                                         "checks": sorted(after)}}
    return out


def release(notebooks: list, out_dir) -> list[Path]:
    """Write the student copy of each notebook into ``out_dir`` (same file name); return the paths written.
    Refuses to write over a source notebook."""
    out_dir = Path(out_dir)
    sources = [Path(p) for p in notebooks]
    for p in sources:
        if (out_dir / p.name).resolve() == p.resolve():
            raise ValueError(f"release: --out {out_dir} would overwrite the source notebook {p}")
    copies = []  # every copy is made before any is written: one refused notebook writes nothing
    for p in sources:
        if not p.is_file():
            raise ValueError(f"release: {p} is not a notebook file")
        copies.append((out_dir / p.name, release_notebook(files.read_notebook(p), p.name)))
    if len({target.name for target, _ in copies}) < len(copies):
        raise ValueError("release: two notebooks share a file name; their copies would overwrite each other")
    for target, copy_ in copies:
        files.write_atomic(target, json.dumps(copy_, indent=1, ensure_ascii=False) + "\n")
    return [target for target, _ in copies]


def add_release_parser(subparsers):
    """Register ``release`` on the ``python -m attncourse`` command line."""
    p = subparsers.add_parser(
        "release", help="write student copies of module notebooks: solutions removed, outputs cleared",
        description="Write a student copy of each notebook into --out: solution <details> blocks, cells tagged "
                    "'solution' and BEGIN/END SOLUTION regions removed, outputs cleared; statements, stubs, "
                    "check cells and questions kept.")
    p.add_argument("notebooks", nargs="+", help="module notebooks (.ipynb)")
    p.add_argument("--out", required=True, help="folder for the student copies")
    p.set_defaults(func=_run_release)
    return p


def _run_release(args) -> int:
    import sys

    try:
        written = release(args.notebooks, args.out)
    except (ValueError, OSError, files.Refused) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0
