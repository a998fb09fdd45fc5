"""How long a notebook takes: reading minutes plus exercise minutes, estimated from its content.

Run ``python tests/reading_time.py`` to print the estimates, ``python tests/reading_time.py --write`` to rewrite
every notebook's header time line with them (``tests/test_reading_time.py`` fails when a header is stale).

What is counted (all from the notebook file; nothing is executed):

- *prose words*: whitespace-separated tokens of the markdown cells, leaving out HTML tags, collapsed
  ``<details>`` blocks (solutions: their reading is part of the exercise time), fenced code and maths;
- *formulas*: ``$…$`` and ``$$…$$`` spans in the markdown (outside solutions);
- *code lines*: non-blank lines of the code cells and of fenced code in the markdown (outside solutions) — reading
  a line and watching it run;
- *figures*: committed outputs that hold an image;
- *exercise points*: the ``(N points)`` of every ``### Exercise N — …`` heading;
- *questions*: the ``### Predict first — …`` and ``### Interpret — …`` headings.

Rates. A prior was set first — 100 words a minute for technical prose, 15 s a formula, 6 s a code line, 30 s a
figure; 2 minutes an exercise point and 1 minute a question — and then two factors, one for reading and one for
exercises, were fitted by least squares to four timed careful readings of whole notebooks, exercises included:
00 → 50, 01 → 80, 02 → 85 and 04 → 110 minutes (:data:`TIMED_READINGS`). The factors came out 0.948 (reading)
and 0.664 (exercises); rounded, they give the rates below: 105 words a minute, 14 s a formula, 5.7 s a code line,
28 s a figure, 1.3 minutes an exercise point, 0.66 minutes a question. When the rates were set, they estimated 54.2,
77.3, 80.1 and 112.3 minutes for the four notebooks: errors +4.2, −2.7, −4.9 and +2.3 minutes (root mean square
3.7 minutes). Four readings by one reader are a small sample, so the headers round to 5 minutes and say "about";
``tests/test_reading_time.py`` checks that the four estimates stay within 10 minutes of the timed readings.
"""
from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

WORDS_PER_MINUTE = 105.0
MINUTES_PER_FORMULA = 14 / 60
MINUTES_PER_CODE_LINE = 5.7 / 60
MINUTES_PER_FIGURE = 28 / 60
MINUTES_PER_EXERCISE_POINT = 1.3
MINUTES_PER_QUESTION = 0.66

TIMED_READINGS = {"00_foundations": 50, "01_inception": 80, "02_senet": 85, "04_nonlocal": 110}  # minutes, all of it

DETAILS = re.compile(r"<details\b.*?</details>", re.S)
FENCE = re.compile(r"^(`{3,}|~{3,})[^\n]*\n(.*?)^\1[ \t]*$", re.S | re.M)
MATH = re.compile(r"\$\$.*?\$\$|\$[^$\n]+\$", re.S)
TAG = re.compile(r"<[^>]+>")
EXERCISE = re.compile(r"^### Exercise \d+ — .*\((\d+(?:\.\d+)?) points?\)\s*$", re.M)
QUESTION = re.compile(r"^### (?:Predict first|Interpret) — ", re.M)
TIME_LINE = re.compile(r"^\*\*Time:\*\* about (\d+) minutes of reading and (\d+) minutes of exercises\b", re.M)
TIME_PARAGRAPH = re.compile(r"^\*\*Time:\*\*.*?(?=\n\s*\n|\Z)", re.S | re.M)

ROOT = Path(__file__).resolve().parents[1]


def _src(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def counts(nb: dict) -> dict[str, float]:
    """The quantities the estimate is made of (see the module's docstring)."""
    c = dict(words=0, formulas=0, code_lines=0, figures=0, exercise_points=0.0, questions=0)
    for cell in nb["cells"]:
        text = _src(cell)
        if cell["cell_type"] == "markdown":
            c["exercise_points"] += sum(float(p) for p in EXERCISE.findall(text))
            c["questions"] += len(QUESTION.findall(text))
            text = DETAILS.sub(" ", text)
            c["code_lines"] += sum(1 for m in FENCE.finditer(text) for line in m.group(2).splitlines() if line.strip())
            text = FENCE.sub(" ", text)
            c["formulas"] += len(MATH.findall(text))
            c["words"] += len(TAG.sub(" ", MATH.sub(" ", text)).split())
        elif cell["cell_type"] == "code":
            c["code_lines"] += sum(1 for line in text.splitlines() if line.strip())
            c["figures"] += sum(any(k.startswith("image/") for k in out.get("data", {}))
                                for out in cell.get("outputs", []))
    return c


def estimate(nb: dict) -> tuple[float, float]:
    """``(reading minutes, exercise minutes)``, unrounded."""
    c = counts(nb)
    reading = (c["words"] / WORDS_PER_MINUTE + c["formulas"] * MINUTES_PER_FORMULA
               + c["code_lines"] * MINUTES_PER_CODE_LINE + c["figures"] * MINUTES_PER_FIGURE)
    exercises = c["exercise_points"] * MINUTES_PER_EXERCISE_POINT + c["questions"] * MINUTES_PER_QUESTION
    return reading, exercises


def to_five(minutes: float) -> int:
    """Rounded to the nearest 5 minutes (halves up), at least 5."""
    return max(5, int(math.floor(minutes / 5 + 0.5)) * 5)


def header_minutes(nb: dict) -> tuple[int, int]:
    """``(R, E)`` the header should state."""
    reading, exercises = estimate(nb)
    return to_five(reading), to_five(exercises)


def time_paragraph(reading: int, exercises: int) -> str:
    return (f"**Time:** about {reading} minutes of reading and {exercises} minutes of exercises (estimated from the "
            "notebook's length,\ncalibrated on timed readings). Runs on a CPU. The live demonstration trains at the "
            "`demo` budget, a couple of\nminutes on one CPU thread; the course's results are the recorded full-profile "
            "runs.")


def stated_minutes(nb: dict) -> tuple[int, int] | None:
    """``(R, E)`` as the first cell's time line states them, or None."""
    m = TIME_LINE.search(_src(nb["cells"][0]))
    return (int(m.group(1)), int(m.group(2))) if m else None


def rewrite_header(path: Path) -> bool:
    """Replace the first cell's ``**Time:**`` paragraph with the current estimate; True when the file changed."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    cell = nb["cells"][0]
    text = _src(cell)
    if len(TIME_PARAGRAPH.findall(text)) != 1:
        raise ValueError(f"{path.name}: the first cell has no single '**Time:**' paragraph to rewrite")
    new = TIME_PARAGRAPH.sub(lambda _: time_paragraph(*header_minutes(nb)), text)
    if new == text:
        return False
    cell["source"] = new.splitlines(keepends=True)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return True


def main(argv: list[str]) -> None:
    for path in sorted((ROOT / "notebooks").glob("0*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        reading, exercises = estimate(nb)
        timed = TIMED_READINGS.get(path.stem)
        note = f"   timed: {timed} min (error {reading + exercises - timed:+.1f})" if timed else ""
        print(f"{path.stem:20s} reading {reading:5.1f} min, exercises {exercises:4.1f} min -> "
              f"{header_minutes(nb)}{note}")
        if "--write" in argv and rewrite_header(path):
            print(f"  rewrote the header of {path.name}")


if __name__ == "__main__":
    main(sys.argv[1:])
