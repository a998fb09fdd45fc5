"""The website builds with warnings as errors, and every notebook page has its Colab launch button.

The book is built once per test run — :func:`build_site` shares the build with ``tests/test_site_browser.py``,
also across pytest-xdist workers (a lock file and the run's id), so CI never builds it twice.
"""
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SITE_DIR = ROOT / "build" / "test-site"  # build/ is git-ignored
_RUN_ID = os.environ.get("PYTEST_XDIST_TESTRUNUID") or uuid.uuid4().hex  # the same in every worker of one run


def toc_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [ch["file"] for ch in part["chapters"]]
    return files


def build_site() -> tuple[Path, int, str]:
    """Build the book once per test run; return ``(html folder, jupyter-book's return code, its log)``."""
    SITE_DIR.parent.mkdir(parents=True, exist_ok=True)
    with open(SITE_DIR.parent / "test-site.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second worker waits here for the first one's build
        stamp = SITE_DIR / "build-run.json"
        if stamp.exists():
            info = json.loads(stamp.read_text())
            if info.get("run") == _RUN_ID:
                return SITE_DIR / "_build" / "html", info["returncode"], info["log"]
        shutil.rmtree(SITE_DIR, ignore_errors=True)
        SITE_DIR.mkdir(parents=True)
        jb = Path(sys.executable).with_name("jupyter-book")
        cmd = [str(jb) if jb.exists() else shutil.which("jupyter-book"), "build", "-W", "-n", "--keep-going",
               "--path-output", str(SITE_DIR), str(ROOT)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            returncode, log = proc.returncode, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as err:
            returncode, log = -1, f"jupyter-book build timed out after {err.timeout} s"
        stamp.write_text(json.dumps({"run": _RUN_ID, "returncode": returncode, "log": log}))
        return SITE_DIR / "_build" / "html", returncode, log


def test_every_notebook_is_in_the_table_of_contents():
    listed = set(toc_files())
    notebooks = {f"notebooks/{p.stem}" for p in (ROOT / "notebooks").glob("*.ipynb")}
    assert notebooks <= listed, f"notebooks missing from _toc.yml: {sorted(notebooks - listed)}"
    for f in listed:
        assert any((ROOT / f).with_suffix(s).exists() for s in (".md", ".ipynb")), f


@pytest.mark.slow
def test_book_builds_without_warnings():
    html, returncode, log = build_site()
    warnings = [line for line in log.splitlines() if "WARNING" in line]
    assert returncode == 0 and not warnings, "\n".join(warnings) or log[-3000:]
    assert (html / "index.html").exists()
    for f in toc_files():
        if f.startswith("notebooks/"):
            page = (html / f).with_suffix(".html").read_text()
            name = Path(f).name
            launch = re.search(r'dropdown-launch-buttons.*?href="https://colab\.research\.google\.com/github/'
                               rf'attncourse/attncourse/blob/main/notebooks/{name}\.ipynb"', page, re.S)
            assert launch, f"no Colab launch button on {f}"
            # maths is rendered by the MathJax copy served with the site, not a CDN
            assert "_static/mathjax/tex-chtml.js" in page and "cdn.jsdelivr.net/npm/mathjax" not in page
            # the exercise and question boxes are styled by the site's own stylesheet
            assert "_static/course.css" in page
    assert (html / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2" / "MathJax_Main-Regular.woff").exists()
