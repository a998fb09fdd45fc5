"""Every notebook's header states its time as the estimator computes it (tests/reading_time.py), so it cannot go
stale: after editing a notebook, ``python tests/reading_time.py --write`` rewrites the headers."""
import json
import re
from pathlib import Path

import pytest

from reading_time import TIMED_READINGS, counts, estimate, header_minutes, rewrite_header, stated_minutes

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("0*.ipynb"))


def load(path):
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_header_states_the_estimated_reading_and_exercise_minutes(path):
    nb = load(path)
    stated = stated_minutes(nb)
    assert stated, f"{path.name}: no '**Time:** about R minutes of reading and E minutes of exercises' line"
    assert stated == header_minutes(nb), (f"{path.name}: the header says {stated} (reading, exercises) minutes, the "
                                          f"estimate is {header_minutes(nb)}: run python tests/reading_time.py --write")
    header = "".join(nb["cells"][0]["source"])
    assert "smoke" not in header, f"{path.name}: the header speaks of the smoke profile"
    assert "the live demonstration trains at the `demo` budget" in " ".join(header.split()).lower()


def test_estimates_stay_close_to_the_timed_readings():
    for name, minutes in TIMED_READINGS.items():
        reading, exercises = estimate(load(ROOT / "notebooks" / f"{name}.ipynb"))
        assert abs(reading + exercises - minutes) <= 10, (name, reading, exercises, minutes)


def _nb(*cells):
    return {"cells": [{"cell_type": k, "metadata": {}, "source": s, **({"outputs": o} if k == "code" else {})}
                      for k, s, o in cells], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def test_counts_follow_the_content():
    header = ("markdown", "# 00 · x\n\n**Time:** about 5 minutes of reading and 5 minutes of exercises.\n", None)
    prose = ("markdown", "word " * 300 + "$x$ and $$y$$", None)
    solution = ("markdown", "<details><summary>Solution</summary>\n\n```python\ndef f():\n    pass\n```\n\n"
                            + "hidden " * 500 + "\n\n</details>", None)
    exercise = ("markdown", "### Exercise 1 — a task (3 points)\n\nWrite it.", None)
    question = ("markdown", "### Predict first — a guess\n\nGuess.", None)
    figure = ("code", "plot()\n\nshow()", [{"output_type": "display_data", "metadata": {},
                                           "data": {"image/png": "iVBOR", "text/plain": "<Figure>"}}])
    c = counts(_nb(header, prose, solution, exercise, question, figure))
    assert (c["formulas"], c["code_lines"], c["figures"], c["exercise_points"], c["questions"]) == (2, 2, 1, 3.0, 1)
    assert 300 < c["words"] < 350  # the 500 words of the solution's words are exercise time, not reading
    base = estimate(_nb(header))
    more_reading, more_exercises = estimate(_nb(header, prose, figure)), estimate(_nb(header, exercise, question))
    assert more_reading[0] > base[0] and more_reading[1] == base[1]
    assert more_exercises[1] > base[1]


def test_rewrite_makes_a_stale_header_pass(tmp_path):
    path = tmp_path / "00_x.ipynb"
    nb = _nb(("markdown", "# 00 · x\n\n**Time:** about 40 minutes. Runs on a CPU in the `smoke` profile.\n\n"
                          "**Prerequisites**: none.", None), ("markdown", "word " * 3000, None))
    path.write_text(json.dumps(nb))
    assert stated_minutes(load(path)) is None
    assert rewrite_header(path) and not rewrite_header(path)
    nb = load(path)
    assert stated_minutes(nb) == header_minutes(nb) and header_minutes(nb)[0] >= 25
    assert "smoke" not in "".join(nb["cells"][0]["source"]) and "**Prerequisites**: none." in nb["cells"][0]["source"][-1]
    # a hand-edited number is caught
    text = "".join(nb["cells"][0]["source"])
    nb["cells"][0]["source"] = re.sub(r"about \d+ minutes of reading", "about 5 minutes of reading", text)
    assert stated_minutes(nb) != header_minutes(nb)
