"""The website builds with warnings as errors, and every notebook page has its Colab launch button."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def toc_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [ch["file"] for ch in part["chapters"]]
    return files


def test_every_notebook_is_in_the_table_of_contents():
    listed = set(toc_files())
    notebooks = {f"notebooks/{p.stem}" for p in (ROOT / "notebooks").glob("*.ipynb")}
    assert notebooks <= listed, f"notebooks missing from _toc.yml: {sorted(notebooks - listed)}"
    for f in listed:
        assert any((ROOT / f).with_suffix(s).exists() for s in (".md", ".ipynb")), f


@pytest.mark.slow
def test_book_builds_without_warnings(tmp_path):
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb) if jb.exists() else shutil.which("jupyter-book"), "build", "-W", "-n", "--keep-going",
           "--path-output", str(tmp_path), str(ROOT)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    log = proc.stdout + proc.stderr
    warnings = [line for line in log.splitlines() if "WARNING" in line]
    assert proc.returncode == 0 and not warnings, "\n".join(warnings) or log[-3000:]
    html = tmp_path / "_build" / "html"
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
    assert (html / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2" / "MathJax_Main-Regular.woff").exists()
