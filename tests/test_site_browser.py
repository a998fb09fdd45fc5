"""The built website, loaded page by page in headless Chromium with the network blocked.

Every page of ``_build/html`` (the build ``tests/test_book.py`` makes once per run) is opened at phone width
(390 px) from ``file://``. The test fails on:

- any request that leaves the site (a CDN, a font service, an image on another host, a file outside the build);
- any console error or uncaught page error;
- raw LaTeX left in the text after MathJax ran, or a ``??`` citation;
- a horizontal overflow at 390 px (the page scrolls sideways);
- a markdown table rendered as a paragraph of pipes;
- a solution visible without a click (every ``<details>`` closed, its content not rendered);
- an exercise or question section without its box.

It drives Debian's ``chromium`` through playwright's Python package (``executable_path``; playwright's own
browser download is never used). Where ``CI=true`` it installs Chromium with apt-get when it is missing;
elsewhere, without Chromium or playwright, it is *skipped with a reason that says the site was not checked*.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from test_book import build_site

WIDTH, HEIGHT = 390, 844
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
RAW_TEX = re.compile(r"\\(frac|sum|sqrt|mathbf|mathrm|begin|end|left|right|cdot|alpha|theta|phi|sigma)\b"
                     r"|\\\(|\\\[|\$\$|\$[^$\s][^$\n]{0,80}\\[A-Za-z]")
PIPE_TABLE = re.compile(r"\|\s*:?-{3,}:?\s*\|")


def _find_chromium() -> str | None:
    env = os.environ.get("CHROMIUM")
    if env and Path(env).is_file():
        return env
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


def _install_chromium() -> None:
    """On CI: Debian's package, with sudo when not root."""
    sudo = [] if os.geteuid() == 0 else (["sudo"] if shutil.which("sudo") else [])
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(sudo + ["apt-get", "update", "-qq"], check=False, env=env, timeout=600)
    subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "chromium"], check=False, env=env, timeout=900)


def _chromium_or_skip() -> str:
    chromium = _find_chromium()
    if chromium is None and os.environ.get("CI") == "true":
        _install_chromium()
        chromium = _find_chromium()
        assert chromium, "CI=true but Chromium could not be installed (apt-get install -y chromium): site NOT checked"
    if chromium is None:
        pytest.skip("BROWSER TEST NOT RUN — no Chromium on this machine, so the built site was NOT checked in a browser. "
                    "Install Debian's package (apt-get install -y chromium) or set CHROMIUM=/path/to/chrome.")
    return chromium


def _playwright_or_skip():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("CI") == "true":
            raise AssertionError("CI=true but playwright is not installed (it is in the [dev] extra): site NOT checked")
        pytest.skip("BROWSER TEST NOT RUN — the playwright package is missing (pip install -e '.[dev]'), so the built "
                    "site was NOT checked in a browser.")
    return sync_playwright


# Runs in the page after it loaded (and MathJax finished): returns what the Python side judges.
_INSPECT = r"""() => {
  const doc = document.documentElement;
  const out = {scrollWidth: doc.scrollWidth, clientWidth: doc.clientWidth, wide: [], text: "", pipes: [],
               openDetails: 0, visibleSolutions: [], details: 0, boxes: [], unboxed: []};
  // what makes the page wider than the screen: elements reaching past the right edge, not inside a scroller
  const scrolls = el => { for (let e = el.parentElement; e; e = e.parentElement) {
      const o = getComputedStyle(e).overflowX; if (o === "auto" || o === "scroll" || o === "hidden") return true; }
    return false; };
  if (doc.scrollWidth > doc.clientWidth + 1) {
    for (const el of document.body.querySelectorAll("*")) {
      const r = el.getBoundingClientRect();
      if (r.width > 0 && r.right > doc.clientWidth + 1 && !scrolls(el)) {
        out.wide.push(el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
                      (el.className && typeof el.className === "string" ? "." + el.className.split(" ").join(".") : "") +
                      ": " + (el.textContent || "").trim().slice(0, 60));
        if (out.wide.length >= 5) break;
      }
    }
  }
  // the prose a reader sees, without code, maths and scripts
  const main = document.querySelector("main") || document.body;
  const clone = main.cloneNode(true);
  clone.querySelectorAll("pre, code, script, style, mjx-container, .highlight, .output, .cell_output, " +
                         "mjx-assistive-mml, .MathJax, textarea").forEach(e => e.remove());
  out.text = clone.textContent;
  for (const p of main.querySelectorAll("p")) {
    if (/\|\s*:?-{3,}:?\s*\|/.test(p.textContent)) out.pipes.push(p.textContent.trim().slice(0, 80));
  }
  for (const d of document.querySelectorAll("details")) {
    out.details += 1;
    if (d.open) out.openDetails += 1;
    for (const child of d.children) {
      if (child.tagName.toLowerCase() === "summary") continue;
      // a closed <details> hides its content with content-visibility: hidden, which checkVisibility() sees
      const seen = child.checkVisibility ? child.checkVisibility({contentVisibilityAuto: true, opacityProperty: true,
                                                                  visibilityProperty: true})
                                         : child.getClientRects().length > 0;
      if (seen) out.visibleSolutions.push((child.textContent || "").trim().slice(0, 60));
    }
  }
  // the visibility test must be able to see a solution: open one <details> (a click) and look again
  const first = document.querySelector("details");
  out.opensOnClick = null;
  if (first) {
    first.open = true;
    const inner = [...first.children].filter(c => c.tagName.toLowerCase() !== "summary");
    out.opensOnClick = inner.length > 0 && inner.every(c => c.checkVisibility ? c.checkVisibility() : c.getClientRects().length > 0);
    first.open = false;
  }
  for (const s of document.querySelectorAll('section[id^="exercise-"], section[id^="predict-first-"], section[id^="interpret-"]')) {
    const w = parseFloat(getComputedStyle(s).borderLeftWidth);
    (w >= 3 ? out.boxes : out.unboxed).push(s.id);
  }
  return out;
}"""


@pytest.mark.slow
def test_built_site_in_headless_chromium():
    chromium = _chromium_or_skip()
    sync_playwright = _playwright_or_skip()
    html, returncode, log = build_site()
    assert returncode == 0 and (html / "index.html").exists(), "the book did not build:\n" + log[-2000:]
    html = html.resolve()
    pages = sorted(p for p in html.rglob("*.html") if not {"_static", "_sources", "_images"} & set(p.relative_to(html).parts))
    assert len(pages) >= 5, pages
    site = html.as_uri() + "/"
    problems: list[str] = []

    with sync_playwright() as pw:
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=args)
        try:
            context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT}, service_workers="block")
            left_site: list[str] = []

            def route(r):
                url = r.request.url
                if url.startswith(site) or url.startswith(("data:", "blob:", "about:")):
                    return r.continue_()
                left_site.append(url)
                return r.abort()

            context.route("**/*", route)
            for path in pages:
                name = str(path.relative_to(html))
                errors: list[str] = []
                left_site.clear()
                page = context.new_page()
                page.on("console", lambda m, errors=errors: errors.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
                page.goto(path.as_uri(), wait_until="load", timeout=30_000)
                if re.search(r'<meta http-equiv="Refresh"', path.read_text(encoding="utf-8")[:500], re.I):
                    page.wait_for_url(lambda url: url != path.as_uri(), timeout=10_000)  # a redirect page (index.html)
                    page.wait_for_load_state("load")
                page.evaluate("() => (window.MathJax && MathJax.startup && MathJax.startup.promise) "
                              "? MathJax.startup.promise.then(() => true) : true")
                info = page.evaluate(_INSPECT)
                page.close()
                for url in sorted(set(left_site)):
                    problems.append(f"{name}: a request leaves the site: {url}")
                for e in errors:
                    problems.append(f"{name}: console error: {e[:200]}")
                if info["scrollWidth"] > info["clientWidth"] + 1:
                    problems.append(f"{name}: scrolls sideways at {WIDTH} px ({info['scrollWidth']} px wide): "
                                    + "; ".join(info["wide"]))
                tex = RAW_TEX.search(info["text"])
                if tex:
                    at = info["text"][max(0, tex.start() - 40): tex.end() + 40].replace("\n", " ")
                    problems.append(f"{name}: raw LaTeX in the text: …{at}…")
                if "??" in info["text"]:
                    i = info["text"].index("??")
                    problems.append(f"{name}: an unresolved reference '??': …{info['text'][max(0, i - 50): i + 10]}…")
                for p in info["pipes"]:
                    problems.append(f"{name}: a markdown table rendered as text: {p}")
                if info["openDetails"] or info["visibleSolutions"]:
                    problems.append(f"{name}: {info['openDetails']} open <details>; visible without a click: "
                                    f"{info['visibleSolutions'][:3]}")
                if info["opensOnClick"] is False:
                    problems.append(f"{name}: an opened <details> shows nothing (a solution outside its block?)")
                for sid in info["unboxed"]:
                    problems.append(f"{name}: section #{sid} has no exercise box")
                if name.startswith("notebooks/") and not info["boxes"]:
                    problems.append(f"{name}: no boxed exercise or question section")
                if name.startswith("notebooks/") and not info["details"]:
                    problems.append(f"{name}: no collapsed solution at all (the check would be vacuous)")
        finally:
            browser.close()
    assert not problems, f"{len(problems)} problem(s) on {len(pages)} pages:\n" + "\n".join(problems)


@pytest.mark.parametrize("text, raw", [
    (r"the weights $\frac{1}{N}$ sum to one", True), (r"as \(x^2\) shows", True), (r"$$a = b$$", True),
    (r"\begin{align} a \end{align}", True), (r"a $x \cdot y$ product", True),
    ("it costs 5 $ per hour and 3 $ more", False), ("plain prose with σ(x) and θᵀφ", False),
])
def test_raw_tex_pattern(text, raw):
    """The pattern the browser test applies to a page's prose (with code and MathJax output removed)."""
    assert bool(RAW_TEX.search(text)) is raw
