"""Every graded ``check(...)`` cell is preceded by the statement it grades.

A learner who opens a notebook in Colab, or a grader who reads one, must find the task written out before the cell
that grades it. The rule, for every notebook in ``notebooks/``:

- a *check cell* is a code cell that calls ``check("KEY", ...)`` (the notebooks import ``check`` from
  ``attncourse.exercises``); its *interval* is the cells after the previous check cell (or from the notebook's
  start) up to it;
- in that interval there is exactly one *statement*: a markdown level-3 heading ``### Exercise N — title`` when KEY
  is a registered exercise, ``### Predict first — …`` or ``### Interpret — …`` when it is a registered question;
- the statement's text — from its heading to the next heading of level 1–3 or the end of its cell, leaving out
  collapsed ``<details>`` blocks (a previous exercise's solution), fenced code and HTML tags — holds at least
  :data:`MIN_WORDS` words. A word is a whitespace-separated token with a letter or a digit in it, so a name in
  inline code or a shape's entry counts, but a displayed or inline formula counts as one word whatever its length:
  a heading with a bare shape and a formula is not a task;
- an exercise heading that states its points ``(N points)`` states the registry's points.
"""
import json
import re
from pathlib import Path

import pytest

from attncourse.exercises import EXERCISES, QUESTIONS

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
MIN_WORDS = 25

CHECK_CALL = re.compile(r"""\bcheck\(\s*["']([\w.]+)["']""")
HEADING = re.compile(r"^(#{1,3}) (.*)$", re.M)
EXERCISE_HEADING = re.compile(r"Exercise \d+ — .+")
QUESTION_HEADING = re.compile(r"(?:Predict first|Interpret) — .+")
POINTS = re.compile(r"\((\d+(?:\.\d+)?) points?\)\s*$")
DETAILS = re.compile(r"<details\b.*?</details>", re.S)
FENCE = re.compile(r"^(`{3,}|~{3,})[^\n]*\n.*?^\1[ \t]*$", re.S | re.M)
MATH = re.compile(r"\$\$.*?\$\$|\$[^$\n]+\$", re.S)


def _src(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def statements(markdown: str) -> list[tuple[str, str]]:
    """``(heading, text)`` of every level-3 heading in a markdown cell; the text runs to the next level 1–3 heading."""
    found = []
    heads = list(HEADING.finditer(markdown))
    for n, h in enumerate(heads):
        if len(h.group(1)) == 3:
            end = heads[n + 1].start() if n + 1 < len(heads) else len(markdown)
            found.append((h.group(2).strip(), markdown[h.end():end]))
    return found


def statement_words(text: str) -> int:
    """Words of a statement (see the module's docstring): no solutions, no fenced code, one word per formula."""
    for pattern in (DETAILS, FENCE):
        text = pattern.sub(" ", text)
    text = MATH.sub(" formula ", re.sub(r"<[^>]+>", " ", text))
    return sum(bool(re.search(r"[^\W_]", token)) for token in text.split())


def statement_problems(nb: dict) -> list[str]:
    """Every check cell without its statement, as ``'cell N (KEY): what'``."""
    problems, start = [], 0
    cells = nb["cells"]
    for i, cell in enumerate(cells):
        if cell["cell_type"] != "code":
            continue
        keys = CHECK_CALL.findall(_src(cell))
        if not keys:
            continue
        interval, start = cells[start:i], i + 1
        if len(keys) != 1:
            problems.append(f"cell {i}: {len(keys)} checks in one cell {keys}; one check per cell")
            continue
        key = keys[0]
        if key in EXERCISES:
            kind, pattern = "an '### Exercise N — …'", EXERCISE_HEADING
        elif key in QUESTIONS:
            kind, pattern = "a '### Predict first — …' or '### Interpret — …'", QUESTION_HEADING
        else:
            problems.append(f"cell {i} ({key}): not a registered exercise or question")
            continue
        found = [(h, t) for c in interval if c["cell_type"] == "markdown"
                 for h, t in statements(_src(c)) if pattern.fullmatch(h)]
        if len(found) != 1:
            problems.append(f"cell {i} ({key}): {len(found)} statements with {kind} heading since the previous check")
            continue
        heading, text = found[0]
        words = statement_words(text)
        if words < MIN_WORDS:
            problems.append(f"cell {i} ({key}): the statement under '{heading}' has {words} words, "
                            f"fewer than {MIN_WORDS}")
        points = POINTS.search(heading)
        if key in EXERCISES and points and float(points.group(1)) != EXERCISES[key].points:
            problems.append(f"cell {i} ({key}): the heading says {points.group(1)} points, the registry "
                            f"{EXERCISES[key].points:g}")
    return problems


def test_there_are_check_cells():
    keys = [k for p in NOTEBOOKS for c in json.loads(p.read_text(encoding="utf-8"))["cells"]
            if c["cell_type"] == "code" for k in CHECK_CALL.findall(_src(c))]
    assert len(keys) >= 2 * len(NOTEBOOKS) and set(keys) & set(EXERCISES) and set(keys) & set(QUESTIONS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_check_cell_is_preceded_by_its_statement(path):
    problems = statement_problems(json.loads(path.read_text(encoding="utf-8")))
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


def _notebook(*cells):
    return {"cells": [{"cell_type": kind, "metadata": {}, "source": text} for kind, text in cells],
            "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


STATEMENT = ("Write `channel_stat(x)`: the mean of each channel over all of its positions. It receives a batch of "
             "feature maps and returns one number per image and channel, keeping the pooled dimensions so that "
             "the result broadcasts against the input when you multiply them.")


def test_the_rule_fails_on_a_notebook_missing_a_statement(tmp_path):
    key = "00.channel_stat"
    points = f"{EXERCISES[key].points:g}"
    stub = ("code", "def channel_stat(x):\n    raise NotImplementedError")
    call = ("code", f'check("{key}", channel_stat)')
    good = _notebook(("markdown", f"### Exercise 1 — the statistic ({points} points)\n\n{STATEMENT}"), stub, call)
    path = tmp_path / "good.ipynb"
    path.write_text(json.dumps(good))
    assert statement_problems(json.loads(path.read_text())) == []
    solution = "<details><summary>Solution</summary>\n\n```python\ndef channel_stat(x): ...\n```\n\n</details>"
    bad = {
        "no statement": _notebook(stub, call),
        "a heading only": _notebook(("markdown", f"### Exercise 1 — the statistic ({points} points)"), stub, call),
        "a bare shape": _notebook(("markdown", "### Exercise 1 — the statistic\n\n`[N, C, H, W] → [N, C, 1, 1]`, "
                                               "$\\frac{1}{HW}\\sum x$"), stub, call),
        "a plain heading, not an exercise's": _notebook(("markdown", f"### The statistic\n\n{STATEMENT}"), stub, call),
        "a question's heading": _notebook(("markdown", f"### Predict first — the statistic\n\n{STATEMENT}"), stub, call),
        "the statement belongs to the previous check": _notebook(
            ("markdown", f"### Exercise 1 — the statistic\n\n{STATEMENT}"), stub, call, stub, call),
        "only the previous exercise's solution": _notebook(
            ("markdown", f"### Exercise 1 — the statistic\n\n{solution}\n" + "word " * 3), stub, call),
        "wrong points": _notebook(("markdown", f"### Exercise 1 — the statistic (9 points)\n\n{STATEMENT}"), stub, call),
        "an unknown key": _notebook(("markdown", f"### Exercise 1 — x\n\n{STATEMENT}"), ("code", 'check("00.nope", f)')),
    }
    for what, nb in bad.items():
        path = tmp_path / "bad.ipynb"
        path.write_text(json.dumps(nb))
        assert statement_problems(json.loads(path.read_text())), what
