"""The course website, built and read as a reader would: every page, figure, link, launch button and search.

The site is built once per run (``tools/build_site.py --smoke`` into a temporary folder: every notebook executed
in smoke mode through the cache, a few minutes the first time), then checked twice:

- from its files: a page per lesson, a run banner on each (smoke mode, torch, run time), the solutions folded
  as in the notebooks, the launch links pointing at the lesson's notebook, nothing loaded from another host;
- in headless Chromium, served on 127.0.0.1: every page loads without console errors or failed requests and
  asks no other host for anything; every image has loaded; every internal link and anchor leads somewhere;
  the launch buttons (the page's own and the theme's) open this lesson's notebook; the navigation and the
  search work; a solution opens on a click. Screenshots of the home page and the first lesson, wide (1280 px)
  and narrow (390 px), go to ``artifacts/site/`` (``$COURSE_ARTIFACTS/site/`` where set).

Skipped, with the reason, where Sphinx and MyST-NB are not installed; the browser half also where Playwright or
Chromium is absent (its ``browser`` fixture comes from tests/test_browser.py, which says how to install them).
"""

from __future__ import annotations

import functools
import html.parser
import http.server
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from support import error_says, shown_error

pytest.importorskip("sphinx", reason="Sphinx is not installed (pip install -e '.[dev]' installs it)")
pytest.importorskip("myst_nb", reason="MyST-NB is not installed (pip install -e '.[dev]' installs it)")
pytest.importorskip("sphinx_book_theme", reason="sphinx-book-theme is not installed")

import test_browser  # noqa: E402
from test_browser import _report  # noqa: E402

# Chromium as the JupyterLab browser test launches it (skipped, with the reason, where it is absent).
chromium_path = test_browser.chromium_path
browser = test_browser.browser

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import build_site  # noqa: E402
import notebook_cache  # noqa: E402

NOTEBOOKS = notebook_cache.notebooks()
# Seconds for the build: every notebook in smoke mode (about 5 minutes on an idle 2-core CPU), then Sphinx.
BUILD_TIMEOUT = 2400
FOLDED = re.compile(r'<details class="[^"]*\babove-input\b')  # MyST-NB's folded cell source (tag hide-input)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> tuple[Path, Path]:
    """The site built in smoke mode: its ``html`` folder and the cache of executed notebooks it used."""
    out = tmp_path_factory.mktemp("site")
    start = time.monotonic()
    # A session of its own, so that a build that runs out of time goes with Sphinx and its kernels.
    process = subprocess.Popen(
        [sys.executable, "tools/build_site.py", "--smoke", "--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=BUILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"the site build took over {BUILD_TIMEOUT} s:\n{(stdout + stderr)[-3000:]}")
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    log = (result.stdout + result.stderr)[-6000:]
    assert result.returncode == 0, f"the site build failed:\n{log}"
    _report(request.config, f"site built in smoke mode in {time.monotonic() - start:.0f} s: {out / 'html'}")
    cache = re.search(r", cache (\S+)", result.stdout)  # not "removed the cache of another environment: ..."
    assert cache, f"the build did not say which cache it used:\n{log}"
    return out / "html", Path(cache[1])


@pytest.fixture(scope="module")
def site(built: tuple[Path, Path]) -> Path:
    return built[0]


def _page(site: Path, notebook: Path) -> Path:
    return site / "notebooks" / f"{notebook.stem}.html"


def test_links_in_copied_pages_are_rewritten():
    staged = {"notebooks/01_a.ipynb", "docs/teaching.md", "README.md"}
    text = "[a](../notebooks/01_a.ipynb#x) [b](../course_utils/data.py) [c](https://x.org/y) [d](README.md)"
    assert build_site.rewrite_links(text, "docs/teaching.md", staged, "v1", "o/r") == (
        "[a](notebooks/01_a.ipynb#x) [b](https://github.com/o/r/blob/v1/course_utils/data.py) "
        "[c](https://x.org/y) [d](https://github.com/o/r/blob/v1/docs/README.md)"
    )
    line = "[![C](https://colab/badge.svg)](https://colab/x.ipynb) [![B](https://b/badge_logo.svg)](https://b/y) <!--"
    assert build_site.launch_links(line) == (
        '<p class="course-launch"><a class="course-launch-colab" href="https://colab/x.ipynb">Open in Colab</a> '
        '<a class="course-launch-binder" href="https://b/y">Launch on Binder</a></p>'
    )


def test_every_lesson_has_a_page_and_its_run_is_cached(built):
    site, cache = built
    for notebook in NOTEBOOKS:
        assert _page(site, notebook).is_file(), f"no page for {notebook.name}"
        # The next build finds this notebook's run and does not execute it again.
        assert notebook_cache.cached(notebook, cache), f"{notebook.name} is not in {cache} after the build"
    for page in ("index.html", "teaching.html", "speed.html", "search.html"):
        assert (site / page).is_file(), page


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_lesson_page_says_how_it_ran_and_keeps_solutions_folded(site, notebook):
    text = _page(site, notebook).read_text()
    banner = re.search(
        r'<div class="(?=[^"]*\bwarning\b)[^"]*\bcourse-run\b[^"]*">(.*?)</div>', text, re.DOTALL
    )
    assert banner, "no smoke-run banner at the top of the page"
    words = re.sub(r"<[^>]+>", "", banner[1])
    assert "Smoke run: the numbers on this page mean nothing" in words
    assert re.search(r"This run: \d+ s on \d{4}-\d\d-\d\d · torch \d+\.\d+", words), words
    answers = [
        c
        for c in nbformat.read(notebook, as_version=4).cells
        if c.metadata.get("nbgrader", {}).get("solution")
    ]
    assert len(FOLDED.findall(text)) == len(answers) >= 4, "every exercise's solution is folded on the page"
    assert not re.search(r"<details[^>]*\bopen\b", text), "a solution is unfolded"
    if (
        "RANDOM WEIGHTS" in text
    ):  # notebook 04 without the pretrained weights says so, and folds those results
        assert "No pretrained weights in this run" in text and 'class="course-no-weights"' in text
    name = notebook.name
    assert 'class="course-launch-colab" href="https://colab.research.google.com/github/' in text
    for link in re.findall(r'href="(https://(?:colab\.research\.google\.com|mybinder\.org)[^"]*)"', text):
        assert html.unescape(link).endswith(f"notebooks/{name}"), link


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_intended_errors_are_printed_and_no_cell_raised(site, notebook):
    """The build runs each notebook with nbclient, errors not allowed and no tag honoured (none is set: see
    test_repo.py), as "Run all" in Colab or VS Code would: the cells that show an error print it and go on."""
    words = html.unescape(re.sub(r"<[^>]+>", "", _page(site, notebook).read_text()))
    assert "Traceback (most recent call last)" not in words
    cells = nbformat.read(notebook, as_version=4).cells
    for name in {shown_error(c) for c in cells} - {None}:
        expected = sum(shown_error(c) == name for c in cells)
        printed = re.findall(rf"^{name}: (?!{{error}})\S", words, re.MULTILINE)
        assert len(printed) >= expected, (
            f"{notebook.stem} shows {len(printed)} {name} line(s), wants {expected}"
        )
    for cell in cells:
        if shown_error(cell):
            assert error_says(cell) in words, f"{notebook.stem}: the page lacks {error_says(cell)!r}"


class _Resources(html.parser.HTMLParser):
    """Every URL a page loads by itself (scripts, styles, images, icons), not the links a reader may follow."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in {"script", "img", "iframe", "source", "video", "audio"} and values.get("src"):
            self.urls.append(values["src"] or "")
        if tag == "link" and values.get("rel") in {"stylesheet", "preload", "icon", "modulepreload"}:
            self.urls.append(values.get("href") or "")


def test_nothing_is_loaded_from_another_host(site):
    outside = []
    for page in site.rglob("*.html"):
        parser = _Resources()
        parser.feed(page.read_text())
        outside += [f"{page.relative_to(site)}: {u}" for u in parser.urls if re.match(r"(https?:)?//", u)]
    for sheet in (site / "_static").rglob("*.css"):
        outside += [
            f"{sheet.name}: {u}"
            for u in re.findall(r"url\(['\"]?((?:https?:)?//[^)'\"]+)", sheet.read_text())
        ]
    assert not outside, "resources from other hosts:\n" + "\n".join(outside[:20])


# --- in the browser -------------------------------------------------------------------------------------------


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        pass


@pytest.fixture(scope="module")
def server(site: Path) -> Iterator[str]:
    """The built site served on 127.0.0.1, as a static host would serve it."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    folder = Path(os.environ.get("COURSE_ARTIFACTS") or ROOT / "artifacts") / "site"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


PAGE_STATE = """() => ({
  title: document.title,
  ids: [...document.querySelectorAll('[id]')].map((e) => e.id),
  links: [...document.querySelectorAll('a[href]')].map((a) => a.href),
  images: [...document.images].map((i) => ({src: i.src.slice(0, 80), ok: i.complete && i.naturalWidth > 0})),
  launch: [...document.querySelectorAll('a[href*="colab.research.google.com"], a[href*="mybinder.org"]')]
    .map((a) => a.href),
})"""


@pytest.fixture(scope="module")
def crawl(site: Path, server: str, browser: Any) -> dict[str, dict[str, Any]]:
    """Every page of the site opened in Chromium: what it showed, loaded, linked to, and any error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on(
        "console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None
    )
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} ({r.failure})"))
    page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)

    def only_this_site(route: Any) -> None:
        url = route.request.url
        if url.startswith(server) or url.startswith("data:"):
            route.continue_()
        else:  # never sent: a site that needs the network to show itself fails here
            problems.append(f"asked another host: {url}")
            route.abort()

    page.route("**/*", only_this_site)
    pages: dict[str, dict[str, Any]] = {}
    try:
        for path in sorted(site.rglob("*.html")):
            name = path.relative_to(site).as_posix()
            if name.startswith("_"):  # theme templates and generated fragments are not pages
                continue
            problems.clear()
            page.goto(f"{server}/{name}", wait_until="networkidle")  # MathJax's fonts included
            state = page.evaluate(PAGE_STATE)
            state["problems"] = list(problems)
            pages[name] = state
    finally:
        context.close()
    return pages


def test_every_page_loads_cleanly_with_its_images(crawl):
    assert {f"notebooks/{p.stem}.html" for p in NOTEBOOKS} <= set(crawl)
    failures = {name: state["problems"] for name, state in crawl.items() if state["problems"]}
    assert not failures, f"pages with errors: {failures}"
    broken = {name: [i["src"] for i in s["images"] if not i["ok"]] for name, s in crawl.items()}
    assert not {k: v for k, v in broken.items() if v}, f"images that did not load: {broken}"
    for notebook in NOTEBOOKS:  # every lesson draws figures (or the explorer's still picture)
        assert crawl[f"notebooks/{notebook.stem}.html"]["images"], f"{notebook.name}: no image on its page"


def test_no_internal_link_is_broken(crawl, server):
    broken = []
    for name, state in crawl.items():
        for link in state["links"]:
            if not link.startswith(server):
                continue
            target, _, anchor = link[len(server) + 1 :].partition("#")
            target = urllib.parse.unquote(target.split("?")[0]) or "index.html"
            if target.endswith("/"):
                target += "index.html"
            if target not in crawl:  # a downloadable source, an image, ...: it must be there
                if not _exists(server, target):
                    broken.append(f"{name} -> {link}")
            elif anchor and urllib.parse.unquote(anchor) not in crawl[target]["ids"]:
                broken.append(f"{name} -> {link} (no #{anchor} there)")
    assert not broken, "broken internal links:\n" + "\n".join(broken[:30])


def _exists(server: str, target: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{server}/{urllib.parse.quote(target)}", timeout=10) as response:
            return response.status == 200
    except OSError:
        return False


def test_launch_buttons_open_this_lesson(crawl):
    for notebook in NOTEBOOKS:
        launch = crawl[f"notebooks/{notebook.stem}.html"]["launch"]
        colab = [u for u in launch if "colab.research.google.com" in u]
        binder = [u for u in launch if "mybinder.org" in u]
        assert len(colab) >= 2 and len(binder) >= 2, (
            f"{notebook.name}: page and theme launch buttons: {launch}"
        )
        for url in launch:
            assert _notebook_path(url) == f"notebooks/{notebook.name}", url


def _notebook_path(url: str) -> str:
    """The repository path a Colab, Binder or nbgitpuller link opens."""
    url = urllib.parse.unquote(url)
    if "urlpath=" in url:  # Binder: ?urlpath=lab/tree/<path>; nbgitpuller: urlpath=lab/tree/<repo>/<path>
        path = url.split("urlpath=", 1)[1].split("&", 1)[0].removeprefix("lab/tree/")
        return path if path.startswith("notebooks/") else path.split("/", 1)[-1]
    return url.split("/blob/", 1)[1].split("/", 1)[1]  # Colab: .../blob/<ref>/<path>


def test_navigation_search_and_solutions_work(server, browser, artifacts, request):
    first, second = NOTEBOOKS[0], NOTEBOOKS[1] if len(NOTEBOOKS) > 1 else NOTEBOOKS[0]
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        page.goto(f"{server}/index.html", wait_until="networkidle")
        page.locator(".bd-sidenav a", has_text=first.stem[:2]).first.click()  # the sidebar's lesson list
        page.wait_for_url(f"**/notebooks/{first.stem}.html")
        assert page.locator("h1").first.inner_text().startswith(first.stem[:2])
        if second != first:
            page.locator("a.right-next").click()  # "Next" at the bottom of the lesson
            page.wait_for_url(f"**/notebooks/{second.stem}.html")
        page.goto(f"{server}/search.html?q=convolution", wait_until="networkidle")
        results = page.locator("#search-results a")
        results.first.wait_for(timeout=30_000)
        found = [results.nth(i).get_attribute("href") or "" for i in range(results.count())]
        assert any(first.stem in href for href in found), f"search for 'convolution' found {found}"
        page.goto(f"{server}/notebooks/{first.stem}.html", wait_until="networkidle")
        solution = page.locator(
            "details.above-input"
        ).first  # an exercise's folded solution (MyST-NB hide-input)
        code = solution.locator("pre").first
        assert not solution.evaluate("d => d.open") and not code.is_visible(), "a solution shows unfolded"
        solution.locator("summary").click()
        assert code.is_visible(), "a click on Solution does not show the solution"
        _report(request.config, f"navigation, search ({len(found)} results for 'convolution'), solutions: ok")
    finally:
        context.close()


@pytest.mark.parametrize("width", [1280, 390], ids=["wide", "narrow"])
def test_screenshots_of_home_and_first_lesson(server, browser, artifacts, width, request):
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    try:
        for name, url in (("home", "index.html"), (NOTEBOOKS[0].stem, f"notebooks/{NOTEBOOKS[0].stem}.html")):
            page.goto(f"{server}/{url}", wait_until="networkidle")
            banner = page.locator(".course-run")
            if name != "home":
                assert banner.is_visible(), "the run banner is not visible at the top of the lesson"
            width_now = page.evaluate("() => document.documentElement.scrollWidth")
            assert width_now <= width + 1, f"{url} is {width_now} px wide in a {width} px window"
            shot = artifacts / f"{name}-{width}px.png"
            height = page.evaluate("() => document.documentElement.scrollHeight")  # the top 4,000 px at most
            page.screenshot(
                path=str(shot),
                full_page=True,
                clip={"x": 0, "y": 0, "width": width, "height": min(height, 4000)},
            )
            _report(request.config, f"  screenshot: {shot}")
    finally:
        context.close()
