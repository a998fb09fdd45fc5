"""The course speaks only of itself: no words from its making in what learners read.

Scans every notebook (sources and committed outputs), book page, benchmark result, recorded result and package source
for phrases that describe how the course was made rather than what it teaches: the course notes' file names ("seed
003", "000_c7657…"), and words about other jobs on the machine that measured something. The benchmark machine and its
measured load may be described; who else was using it may not.
"""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

LEAKS = [
    re.compile(r"\bseed\s+(notes|0\d\d)\b", re.I),          # the course notes named by their file
    re.compile(r"\b\d{3}_[0-9a-f]{16}\b"),                   # a course-notes file name
    re.compile(r"\bhelpers'? jobs\b|\bother helpers\b", re.I),
    re.compile(r"\bshared (cpu|machine)\b|\ba small, shared\b", re.I),
    re.compile(r"\b(loaded|used) by other processes\b", re.I),
    re.compile(r"\bbf16 bug\b", re.I),
]


def _files():
    yield from sorted((ROOT / "notebooks").glob("*.ipynb"))
    yield from sorted((ROOT / "book").glob("*.md"))
    yield from sorted((ROOT / "results").glob("*.json"))
    yield from sorted((ROOT / "results").glob("*.md"))
    yield from sorted((ROOT / "attncourse").rglob("*.py"))
    yield from sorted((ROOT / "attncourse" / "recorded").rglob("*.json"))   # results, shifts, benchmark tables
    yield ROOT / "README.md"


@pytest.mark.parametrize("path", list(_files()), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_words_from_the_making(path):
    text = path.read_text(encoding="utf-8")
    found = [m.group(0) for rx in LEAKS for m in rx.finditer(text)]
    assert not found, f"{path.relative_to(ROOT)}: {found[:5]}"


@pytest.mark.parametrize("phrase", ["Seed 003 ends with", "the course notes (seed 000)", "Seed notes on SE",
                                    "a small, shared CPU", "heavily loaded by other processes",
                                    "shared with other helpers' jobs", "a shared machine", "a CPU bf16 bug in torch",
                                    "see 001_5d858025f9be8d4e.txt"])
def test_the_leak_patterns_catch_the_known_phrases(phrase):
    assert any(rx.search(phrase) for rx in LEAKS)


@pytest.mark.parametrize("fine", ["the course notes", "other processes are invisible in the sandbox",
                                  "a helper function", "seed 0 of every arm", "seeds 0-4", "load average 7-12"])
def test_ordinary_words_pass(fine):
    assert not any(rx.search(fine) for rx in LEAKS)
