"""The notebooks read the same in Jupyter, Colab and on the website.

Jupyter and Colab render markdown cells as CommonMark + HTML: MyST directives and roles show there as raw
text. So:

- exercise solutions sit in HTML ``<details><summary>Solution</summary>`` blocks (collapsed everywhere),
  never in MyST ``{dropdown}`` fences, and no solution code is visible outside such a block;
- every notebook ends with a plain-Markdown "## References" cell naming each work its ``{cite}`` roles cite;
- nbval markers are cell tags, not comments at the top of learner-facing cells;
- the Colab badge image is embedded in the notebook (a ``data:`` URI in inline HTML): it renders in Colab, where a
  relative path does not, and nothing is fetched from colab.research.google.com at page view;
- committed outputs are clean: no progress-bar residue, no empty output boxes, no widget that needs a CDN or a
  live kernel, no markdown table in an output (the site renders ``text/markdown`` outputs as CommonMark, which has
  no tables: they showed as a paragraph of pipes);
- exercises and questions are marked by headings the site draws a box around (``book/_static/course.css``).

What counts as a *solution*: the notebooks give every exercise a stub code cell whose body raises
``NotImplementedError`` (followed by a ``check("...")`` cell); its solution is markdown code that defines the
same function or class. Any fenced code block in a markdown cell that defines a stub's name is solution code.
"""
import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
ids = lambda p: p.name  # noqa: E731

DROPDOWN = re.compile(r"^\s*(?::{3,}|`{3,}|~{3,})\s*\{dropdown\}", re.M)
DETAILS = re.compile(r"<details\b[^>]*>(?P<body>.*?)</details>", re.S)
SUMMARY = re.compile(r"\A\s*<summary>\s*Solution\s*</summary>")
FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})[^\n]*\n(?P<code>.*?)^(?P=fence)[ \t]*$", re.S | re.M)
DEFINES = re.compile(r"^(?:def|class)\s+(\w+)", re.M)
CITE = re.compile(r"\{cite(?::[\w-]+)*\}`([^`]*)`")


def src(cell):
    return "".join(cell["source"])


def cells(path, kind):
    return [c for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == kind]


def stub_names(path):
    """Names defined by exercise stubs: code cells whose body raises NotImplementedError."""
    return {name for c in cells(path, "code") if "raise NotImplementedError" in src(c)
            for name in DEFINES.findall(src(c))}


def without_details(text):
    return DETAILS.sub("", text)


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_no_myst_dropdown_fences(path):
    bad = [i for i, c in enumerate(cells(path, "markdown")) if DROPDOWN.search(src(c))]
    assert not bad, f"{path.name}: MyST dropdown fences in markdown cells {bad}; use <details><summary>Solution</summary>"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_solution_code_is_only_inside_collapsed_details(path):
    names = stub_names(path)
    assert names, f"{path.name}: no exercise stubs found"
    md = [src(c) for c in cells(path, "markdown")]
    for i, text in enumerate(md):
        assert text.count("<details") == text.count("</details>"), f"{path.name} markdown cell {i}: unbalanced <details>"
        # solution code outside any <details> block
        for m in FENCE.finditer(without_details(text)):
            shown = set(DEFINES.findall(m.group("code"))) & names
            assert not shown, f"{path.name} markdown cell {i}: solution code for {sorted(shown)} outside <details>"
        assert not re.search(r"^\s*(?:\*\*|#+\s*)?Solutions?\b", without_details(text), re.M | re.I), \
            f"{path.name} markdown cell {i}: a 'Solution' label outside <details>"
    # solution code in a code cell (visible, and run) that is not the stub itself
    for c in cells(path, "code"):
        if "raise NotImplementedError" not in src(c):
            shown = set(DEFINES.findall(src(c))) & names
            assert not shown, f"{path.name}: a code cell defines the exercise names {sorted(shown)}"
    # every exercise has its solution, collapsed, and the code in it renders as code
    solved = set()
    for i, text in enumerate(md):
        for m in DETAILS.finditer(text):
            body = m.group("body")
            assert SUMMARY.match(body), f"{path.name} markdown cell {i}: <details> without <summary>Solution</summary>"
            assert re.match(r"\A\s*<summary>[^<]*</summary>[ \t]*\n[ \t]*\n", body), \
                f"{path.name} markdown cell {i}: no blank line after </summary> (the markdown inside would not render)"
            assert re.search(r"\n[ \t]*\n[ \t]*\Z", body), \
                f"{path.name} markdown cell {i}: no blank line before </details>"
            assert not re.search(r"^(?: {4}|\t)\S", body.split("```")[0], re.M), \
                f"{path.name} markdown cell {i}: indented text in <details> renders as a code block"
            for f in FENCE.finditer(body):
                solved |= set(DEFINES.findall(f.group("code")))
    assert names <= solved, f"{path.name}: exercises without a collapsed solution: {sorted(names - solved)}"


class _Tree(HTMLParser):
    """Records, for every <pre> element, whether it lies inside a <details> element."""

    def __init__(self):
        super().__init__()
        self.stack, self.pre_in_details = [], []

    def handle_starttag(self, tag, attrs):
        if tag == "pre":
            self.pre_in_details.append("details" in self.stack)
        self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in self.stack:
            while self.stack.pop() != tag:
                pass


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_solutions_render_collapsed_as_commonmark(path):
    """Render the solution cells as Jupyter/Colab do (CommonMark + raw HTML): the code is a <pre> inside <details>."""
    markdown_it = pytest.importorskip("markdown_it")
    md = markdown_it.MarkdownIt("commonmark")
    names = stub_names(path)
    for i, c in enumerate(cells(path, "markdown")):
        text = src(c)
        if "<details" not in text:
            continue
        tree = _Tree()
        tree.feed(md.render(text))
        assert tree.pre_in_details and all(tree.pre_in_details), \
            f"{path.name} markdown cell {i}: a code block renders outside <details> in Jupyter/Colab"
        assert '<code class="language-python">' in md.render(text)
    assert names


def cited_keys(path):
    keys = set()
    for c in cells(path, "markdown"):
        for group in CITE.findall(src(c)):
            keys |= {k.strip() for k in group.split(",") if k.strip()}
    return keys


def bib_keys():
    return set(re.findall(r"^@\w+\{([^,\s]+),", (ROOT / "book" / "references.bib").read_text(), re.M))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_notebook_ends_with_references_naming_every_cited_work(path):
    last = json.loads(path.read_text(encoding="utf-8"))["cells"][-1]
    text = src(last)
    assert last["cell_type"] == "markdown" and text.startswith("## References"), \
        f"{path.name}: the last cell is not a '## References' markdown cell"
    # plain Markdown, readable in Colab: no MyST roles or directives
    assert not re.search(r"\{[\w:-]+\}`|^\s*(?:`{3,}|:{3,})\s*\{", text, re.M), f"{path.name}: MyST syntax in References"
    listed = set(re.findall(r"^- `([^`]+)`", text, re.M))
    cited = cited_keys(path)
    assert cited <= bib_keys(), f"{path.name}: cited keys missing from book/references.bib: {sorted(cited - bib_keys())}"
    assert cited <= listed, f"{path.name}: cited but not in References: {sorted(cited - listed)}"
    assert listed <= cited, f"{path.name}: in References but not cited: {sorted(listed - cited)}"
    assert all(re.search(rf"^- `{re.escape(k)}`: .+\*.+\*.*\b(19|20)\d\d\b", text, re.M) for k in listed), \
        f"{path.name}: each reference needs authors, an italic title and a year"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_nbval_markers_are_tags_not_comments(path):
    code = cells(path, "code")
    commented = [i for i, c in enumerate(code) if re.search(r"^\s*#\s*(NBVAL_|PYTEST_VALIDATE_)", src(c), re.M)]
    assert not commented, f"{path.name}: nbval comment markers in code cells {commented}; use cell tags"
    assert any("nbval-check-output" in c["metadata"].get("tags", []) for c in code)


BADGE_SVG = ROOT / "book" / "_static" / "colab-badge.svg"
BADGE_LINK = re.compile(r'<a href="(?P<href>https://colab\.research\.google\.com/github/[^"]+)">'
                        r'<img src="(?P<src>[^"]+)" alt="Open In Colab"/></a>')


def badge_problems(first_cell: str, name: str) -> list[str]:
    """What keeps a notebook's Colab badge from rendering everywhere with nothing fetched at page view.

    The badge is inline HTML, ``<a href="…colab…/NAME"><img src="data:image/svg+xml;base64,…"/></a>``, carrying
    book/_static/colab-badge.svg itself: a relative image path does not resolve in Colab, an http(s) image is a
    network load on the site, and a Markdown image with a ``data:`` URI is not an image for MyST (its URL schemes
    are http, https and mailto), so the site showed it as text.
    """
    found = []
    for uri in re.findall(r"!\[[^\]]*\]\(([^)\s]+)", first_cell):
        found.append(f"a Markdown image {uri[:40]}: the site and Colab cannot both render it")
    for uri in re.findall(r'<img\b[^>]*\bsrc="([^"]+)"', first_cell):
        if not uri.startswith("data:image/svg+xml;base64,"):
            found.append(f"the badge image {uri[:40]} is not embedded (a relative path or a network load)")
    links = list(BADGE_LINK.finditer(first_cell))
    if len(links) != 1:
        return found + [f"{len(links)} Colab badge links in the first cell, expected one"]
    href, uri = links[0]["href"], links[0]["src"]
    if not href.endswith(f"/notebooks/{name}"):
        found.append(f"the badge opens {href}, not notebooks/{name}")
    if uri.startswith("data:image/svg+xml;base64,") and \
            base64.b64decode(uri.split(",", 1)[1]) != BADGE_SVG.read_bytes():
        found.append("the embedded badge differs from book/_static/colab-badge.svg")
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_colab_badge_image_is_local(path):
    first = src(json.loads(path.read_text(encoding="utf-8"))["cells"][0])
    problems = badge_problems(first, path.name)
    assert not problems, f"{path.name}: " + "; ".join(problems)
    # as Jupyter and Colab render it (CommonMark + raw HTML): a link to Colab around the embedded image
    markdown_it = pytest.importorskip("markdown_it")
    html = markdown_it.MarkdownIt("commonmark").render(first)
    assert re.search(r'<a href="https://colab\.research\.google\.com/[^"]+"><img src="data:image/svg\+xml;base64,', html)


def test_badge_check_fails_on_each_form_that_does_not_render_everywhere():
    colab = "https://colab.research.google.com/github/attncourse/attncourse/blob/main/notebooks/00_x.ipynb"
    embedded = "data:image/svg+xml;base64," + base64.b64encode(BADGE_SVG.read_bytes()).decode()
    good = f'<a href="{colab}"><img src="{embedded}" alt="Open In Colab"/></a>'
    assert badge_problems(f"# 00\n\n{good}\n", "00_x.ipynb") == []
    bad = {
        "relative path (old form)": f"[![Open In Colab](../book/_static/colab-badge.svg)]({colab})",
        "external image": f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab})",
        "external image in HTML": good.replace(embedded, "https://colab.research.google.com/assets/colab-badge.svg"),
        "relative path in HTML": good.replace(embedded, "../book/_static/colab-badge.svg"),
        "Markdown data URI": f"[![Open In Colab]({embedded})]({colab})",
        "another image": good.replace(embedded, "data:image/svg+xml;base64," + base64.b64encode(b"<svg/>").decode()),
        "wrong notebook": good.replace("00_x", "01_y"),
        "no badge": "# 00",
    }
    for what, text in bad.items():
        assert badge_problems(f"# 00\n\n{text}\n", "00_x.ipynb"), what


def test_site_has_a_favicon_and_no_thebe():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    favicon = config["html"]["favicon"]
    assert (ROOT / favicon).is_file() and "://" not in favicon
    # sphinx_thebe wrote its inline `const THEBE_JS_URL` script twice per page (a console error); the site has no
    # live-code button, so the extension is left out of the explicit extension list.
    extensions = config["sphinx"]["config"]["extensions"]
    assert "sphinx_thebe" not in extensions and "myst_nb" in extensions and "sphinxcontrib.bibtex" in extensions


# ---- committed outputs ---------------------------------------------------------------------------
PROGRESS = re.compile(r"\d+%\|[^\n]*\||\d+/\d+ \[\d+:\d+|it/s\]|s/it\]")
WIDGET = "application/vnd.jupyter.widget-view+json"
MD_TABLE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)+\|?\s*$", re.M)


def _text(value):
    return "".join(value) if isinstance(value, list) else str(value)


def output_problems(path):
    """Every committed output that renders badly somewhere, as ``'cell N: what'``."""
    found = []
    for n, cell in enumerate(json.loads(path.read_text(encoding="utf-8"))["cells"]):
        for out in cell.get("outputs", []):
            kind = out.get("output_type")
            if kind == "stream":
                text = _text(out.get("text", ""))
                if not text.strip():
                    found.append(f"cell {n}: an empty {out.get('name')} output box")
                if PROGRESS.search(text) or "\r" in text:
                    found.append(f"cell {n}: progress-bar residue in {out.get('name')}: {text.strip()[:60]!r}")
            elif kind in ("display_data", "execute_result"):
                data = out.get("data", {})
                if not data or all(not _text(v).strip() for v in data.values()):
                    found.append(f"cell {n}: an empty {kind} output box")
                if WIDGET in data:
                    found.append(f"cell {n}: a widget (needs a live kernel and CDN scripts; use a static figure)")
                if MD_TABLE.search(_text(data.get("text/markdown", ""))):
                    found.append(f"cell {n}: a markdown table in an output (shows as pipes on the site; use "
                                 "ac.viz.table or HTML)")
                if list(data) == ["text/plain"] and re.fullmatch(r"<(Figure|IPython\.core\.display\.\w+) .*>",
                                                                   _text(data["text/plain"]).strip()):
                    found.append(f"cell {n}: an output showing only an object's repr")
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_committed_outputs_are_clean(path):
    problems = output_problems(path)
    assert not problems, f"{path.name}:\n" + "\n".join(problems)
    # a saved widget state makes the site load the widget manager from a CDN (no network there, nor offline)
    assert "widgets" not in json.loads(path.read_text(encoding="utf-8"))["metadata"], \
        f"{path.name}: widget state in the notebook's metadata (execute with ATTNCOURSE_PROGRESS=off)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_no_markdown_tables_or_widgets_in_code(path):
    """The two patterns behind pipes on the site and a blank slider offline are not used in the sources."""
    code = [(i, src(c)) for i, c in enumerate(cells(path, "code"))]
    bad = [i for i, s in code if re.search(r"display\(\s*Markdown\(|ipywidgets|\binteract\(", s)]
    assert not bad, f"{path.name}: code cells {bad} print a markdown table or use a widget"


def test_output_scan_catches_each_defect(tmp_path):
    """The scan fails on each defect it is meant to catch (so the test above cannot pass vacuously)."""
    outputs = [
        {"output_type": "stream", "name": "stderr", "text": "  40%|####      | 4/10 [00:01<00:02, 3.1it/s]"},
        {"output_type": "stream", "name": "stdout", "text": "\n"},
        {"output_type": "display_data", "metadata": {}, "data": {}},
        {"output_type": "display_data", "metadata": {}, "data": {WIDGET: {"model_id": "x"}, "text/plain": "IntSlider"}},
        {"output_type": "display_data", "metadata": {},
         "data": {"text/markdown": "| a | b |\n|---|---|\n| 1 | 2 |", "text/plain": "<IPython.core.display.Markdown object>"}},
    ]
    nb = {"cells": [{"cell_type": "code", "source": "", "metadata": {}, "outputs": [o]} for o in outputs],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "bad.ipynb"
    path.write_text(json.dumps(nb))
    problems = output_problems(path)
    for n, what in enumerate(["progress-bar", "empty stdout", "empty display_data", "a widget", "markdown table"]):
        assert any(p.startswith(f"cell {n}:") and what.split()[-1] in p for p in problems), (what, problems)


def test_exercise_and_question_headings_get_a_box_on_the_site():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    css_files = config["sphinx"]["config"].get("html_css_files", [])
    assert "course.css" in css_files
    css = (ROOT / "book" / "_static" / "course.css").read_text()
    for prefix in ("exercise-", "predict-first-", "interpret-"):
        assert f'section[id^="{prefix}"]' in css
    for path in NOTEBOOKS:
        headings = [h for c in cells(path, "markdown") for h in re.findall(r"^### (.+)$", src(c), re.M)]
        stubs = sum("raise NotImplementedError" in src(c) for c in cells(path, "code"))
        boxed = [h for h in headings if re.match(r"(Exercise \d+|Predict first|Interpret) — ", h)]
        assert sum(h.startswith("Exercise ") for h in boxed) >= min(stubs, 1), f"{path.name}: exercise headings {headings}"


def test_every_notebook_links_its_neighbours_in_the_course_order():
    """A learner in Colab has no sidebar: each notebook says which module comes before and after it (the order of
    _toc.yml) and links the course map, in a cell tagged ``navigation`` just before its References."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    order = [c["file"].split("/")[-1] for part in toc["parts"] for c in part["chapters"]
             if c["file"].startswith("notebooks/")]
    assert sorted(order) == sorted(p.stem for p in NOTEBOOKS), "every notebook is in _toc.yml, and only those"
    for i, name in enumerate(order):
        cells_ = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text(encoding="utf-8"))["cells"]
        nav = [c for c in cells_ if "navigation" in c["metadata"].get("tags", [])]
        assert len(nav) == 1 and cells_.index(nav[0]) == len(cells_) - 2, f"{name}: one navigation cell before References"
        links = re.findall(r"\]\(([^)]+)\)", src(nav[0]))
        expected = ([f"{order[i - 1]}.ipynb"] if i else []) + ([f"{order[i + 1]}.ipynb"] if i + 1 < len(order) else [])
        assert links == expected + ["../book/intro.md"], f"{name}: navigation links {links}, expected {expected}"
