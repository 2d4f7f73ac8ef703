"""Browser test: every notebook runs in JupyterLab, in headless Chromium, as a learner would run it.

Run it alone (under a minute per notebook in smoke mode on a 2-core CPU)::

    python3 course.py test tests/test_browser.py

For each notebook in ``notebooks/``, a JupyterLab served on 127.0.0.1 from this environment (``COURSE_SMOKE=1``;
``COURSE_DATA_DIR`` passed through) opens it, Run > Run All Cells is clicked, and once the kernel has answered
every cell the test checks that every code cell ran, that no cell shows an error (cells tagged ``shows-error`` print theirs)
(tracebacks, not warnings printed to stderr), that no notification pops up, and that what the notebook shows
renders: figures (PNG images), ``cu.fit``'s progress bars, and the convolution explorer, whose stride is changed
through its text box and then its keyboard while the output-shape label must follow the formula.

A screenshot of each whole notebook, the server log and, on failure, a screenshot of the failing page go to
``artifacts/browser/`` (``$COURSE_ARTIFACTS/browser/`` where ``COURSE_ARTIFACTS`` is set); the test prints the
folder. Skipped, with the reason, where Playwright (``pip install playwright``; its browser downloads are not
needed) or a Chromium executable (Debian: ``apt-get install chromium``; or set ``COURSE_CHROMIUM``) is absent.

JupyterLab reads the course's settings (no news or update pop-ups) from ``.jupyter/lab/user-settings`` through
``JUPYTERLAB_SETTINGS_DIR``; the test copies them into a temporary folder, adds its own (no autosave: the
notebooks are never written), and serves with ``--LabApp.expose_app_in_browser`` to read cell tags and outputs.
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support import SHOWS_ERROR, missing_error_line

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SETTINGS = (
    ROOT / ".jupyter" / "lab" / "user-settings"
)  # the course's JupyterLab settings (JUPYTERLAB_SETTINGS_DIR)

# Settings for the test run only, on top of the course's: never write the notebooks (Run All leaves them
# modified), keep every cell in the page (JupyterLab otherwise detaches cells outside the view), and start
# the notebook's kernel without asking.
TEST_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
        "windowingMode": "none",
        "autoStartDefaultKernel": True,
    },
}
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVER_START_TIMEOUT = 120  # seconds
KERNEL_START_TIMEOUT = 180
RUN_TIMEOUT = 420  # whole notebook, smoke mode; typical 20-90 s
UI_TIMEOUT_MS = 60_000

pytestmark = pytest.mark.browser


def _artifacts_dir() -> Path:
    folder = Path(os.environ.get("COURSE_ARTIFACTS") or ROOT / "artifacts") / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _chromium() -> str | None:
    for candidate in (os.environ.get("COURSE_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Lab:
    """A running JupyterLab server."""

    base_url: str
    token: str
    log: Path

    def api(self, method: str, path: str) -> Any:
        request = urllib.request.Request(
            f"{self.base_url}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
        return json.loads(body) if body else None

    def url(self, notebook: Path) -> str:
        path = urllib.parse.quote(notebook.relative_to(ROOT).as_posix())
        return (
            f"{self.base_url}/lab/tree/{path}?reset&token={self.token}"  # reset: no tabs from the last page
        )

    def shutdown_kernels(self, notebook: Path) -> None:
        """Shut down the sessions (and kernels) of one notebook, so that the next one runs alone."""
        relative = notebook.relative_to(ROOT).as_posix()
        for session in self.api("GET", "/api/sessions"):
            if session.get("path") == relative:
                self.api("DELETE", f"/api/sessions/{session['id']}")

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _report(config: pytest.Config, text: str) -> None:
    """A line in pytest's output even when output is captured: where the artifacts are, what each notebook did."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        print(text)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(text)


@pytest.fixture(scope="module")
def artifacts(request: pytest.FixtureRequest) -> Path:
    folder = _artifacts_dir()
    _report(request.config, f"browser test artifacts (screenshots, server log): {folder}")
    return folder


@pytest.fixture(scope="module")
def chromium_path() -> str:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"Playwright is not installed or does not import (pip install playwright): {exc}")
    path = _chromium()
    if path is None:
        pytest.skip("no Chromium executable found (Debian: apt-get install chromium; or set COURSE_CHROMIUM)")
    return path


@pytest.fixture(scope="module")
def lab(chromium_path: str, artifacts: Path) -> Iterator[Lab]:
    """JupyterLab from this environment on 127.0.0.1, in smoke mode; always shut down afterwards."""
    pytest.importorskip("jupyterlab", reason="JupyterLab is not installed in this environment")
    tmp = Path(tempfile.mkdtemp(prefix="course-browser-"))
    settings = tmp / "user-settings"
    if SETTINGS.is_dir():
        shutil.copytree(SETTINGS, settings)
    for name, values in TEST_SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values, indent=2))
    env = dict(
        os.environ,
        COURSE_SMOKE="1",  # COURSE_DATA_DIR and the rest pass through from the test's environment
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"),  # no tabs restored from an earlier session
        JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
        JUPYTER_PREFER_ENV_PATH="1",  # this environment's python3 kernel, not one from the user's folders
        PYTHONUNBUFFERED="1",
    )
    port, token = _free_port(), secrets.token_urlsafe(24)
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={ROOT}",
        "--LabApp.expose_app_in_browser=True",
        f"--FileCheckpoints.checkpoint_dir={tmp / 'checkpoints'}",  # nothing written beside the notebooks
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # CI containers run as root
    log_path = artifacts / "jupyterlab.log"
    server = Lab(f"http://127.0.0.1:{port}", token, log_path)
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"JupyterLab exited with code {process.returncode}:\n{server.log_tail()}")
            try:
                server.api("GET", "/api/status")
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"JupyterLab did not answer within {SERVER_START_TIMEOUT} s:\n{server.log_tail()}"
                    )
                time.sleep(0.5)
        if SETTINGS.is_dir():  # the course's settings file is read (and parses): no news or update pop-ups
            notification = server.api("GET", "/lab/api/settings/@jupyterlab/apputils-extension:notification")
            assert notification.get("settings", {}).get("fetchNews") == "false", (
                f"JupyterLab did not read the course's settings in {SETTINGS}: {notification.get('settings')}"
            )
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT if os.name == "nt" else signal.SIGTERM)  # shuts kernels down
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                if os.name == "nt":
                    process.kill()
                else:
                    os.killpg(
                        process.pid, signal.SIGKILL
                    )  # the server's own process group: it and its kernels
                process.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


# Records every progress bar widget that appears, even one that cu.fit closes a moment later (tqdm's leave=False
# hides it when the epoch ends), with the text of the tqdm line around it.
PROGRESS_RECORDER = """
window.__courseProgress = [];
const BARS = '.widget-hprogress, .widget-vprogress, .widget-progress';  // ipywidgets 8: IntProgress, FloatProgress
new MutationObserver((mutations) => {
  for (const mutation of mutations) {
    for (const node of mutation.addedNodes) {
      if (!(node instanceof Element)) continue;
      const bars = node.matches(BARS) ? [node] : [...node.querySelectorAll(BARS)];
      for (const bar of bars) {
        const entry = {text: ''};
        window.__courseProgress.push(entry);
        const box = bar.closest('.widget-hbox') || bar;
        const read = () => { if (box.isConnected) entry.text = box.innerText.replace(/\\s+/g, ' ').trim(); };
        setTimeout(read, 50); setTimeout(read, 500);
      }
    }
  }
}).observe(document, {childList: true, subtree: true});
"""

# The state of every cell of the current notebook: the model (type, tags, execution count, source) and
# what the page shows. JupyterLab 4 renders a traceback with data-mime-type "application/vnd.jupyter.stderr",
# exactly like a warning printed to stderr (its OutputModel holds both that and "application/vnd.jupyter.error",
# and no renderer for the latter is registered): an error is an output of type "error" in the model, and its
# text is read from that output's node in the page. Any element marked with the error mime type counts too.
CELLS_STATE = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  return panel.content.widgets.map((cell, index) => {
    const model = cell.model;
    const prompt = cell.node.querySelector('.jp-InputPrompt');
    const errors = [];
    if (model.type === 'code') {
      const children = cell.outputArea.widgets;
      for (let i = 0; i < model.outputs.length; i++) {
        const output = model.outputs.get(i);
        if (output.type !== 'error') continue;
        const node = children[i] && children[i].node.querySelector('.jp-OutputArea-output');
        const shown = node && node.isConnected && node.innerText.trim();
        const data = output.toJSON();
        errors.push(shown ? node.innerText : `(not rendered) ${data.ename}: ${data.evalue}`);
      }
      for (const node of cell.node.querySelectorAll('[data-mime-type="application/vnd.jupyter.error"]')) {
        if (!errors.includes(node.innerText)) errors.push(node.innerText);
      }
    }
    const images = [...cell.node.querySelectorAll('.jp-OutputArea-output img')];
    const outputArea = cell.node.querySelector('.jp-OutputArea');
    return {
      index, type: model.type, tags: model.getMetadata('tags') || [], course: model.getMetadata('course') || {},
      count: model.type === 'code' ? model.executionCount : null,
      prompt: prompt ? prompt.innerText.trim() : '',
      source: model.sharedModel.getSource(),
      errors,
      text: outputArea ? outputArea.innerText : '',
      png: images.filter((img) => img.src.startsWith('data:image/png') && img.naturalWidth > 0).length,
      widgetErrors: [...cell.node.querySelectorAll('.jupyter-widgets')]
        .map((e) => e.innerText).filter((t) => t.includes('Error displaying widget')),
    };
  });
}"""

KERNEL_STATE = """() => {
  const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const context = panel && panel.sessionContext;
  if (!context || !context.session || !context.session.kernel) return 'no kernel';
  return context.session.kernel.status + (context.isReady ? '' : ' (not ready)');
}"""


def _dialogs(page: Any) -> list[str]:
    return [text.strip() for text in page.locator(".jp-Dialog").all_inner_texts()]


def _fail(page: Any, artifacts: Path, name: str, message: str) -> None:
    shot = artifacts / f"{name}-FAILED.png"
    try:
        page.screenshot(path=str(shot))
    except Exception as exc:  # a screenshot must never hide the real failure
        shot = Path(f"(no screenshot: {exc})")
    pytest.fail(f"{name}: {message}\nscreenshot of the failure: {shot}", pytrace=False)


def _wait_for_kernel(page: Any, artifacts: Path, name: str) -> None:
    deadline = time.monotonic() + KERNEL_START_TIMEOUT
    state = ""
    while time.monotonic() < deadline:
        if dialogs := _dialogs(page):
            _fail(page, artifacts, name, f"a dialog appeared before running: {dialogs}")
        state = page.evaluate(KERNEL_STATE)
        if state == "idle":
            return
        time.sleep(1)
    _fail(page, artifacts, name, f"the kernel was not ready after {KERNEL_START_TIMEOUT} s (state: {state})")


# Counts the kernel's execute requests and replies. Neither the "[*]" prompts nor the kernel's busy/idle
# status tell when Run All is over: after a cell fails, JupyterLab clears the "[*]" of the
# cells still queued although the kernel goes on to run them (only the failing cell asked it not to stop),
# and the status can read "idle" between queued cells. Every request gets a reply ("ok", "error", or
# "aborted" for the cells skipped after an unexpected error): Run All is over when all have one.
EXECUTION_COUNTER = """() => {
  const run = window.__courseRun = {requests: 0, replies: 0, statuses: {}};
  window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.anyMessage.connect((_, args) => {
    const type = args.msg.header.msg_type;
    if (args.direction === 'send' && type === 'execute_request') run.requests += 1;
    if (args.direction === 'recv' && type === 'execute_reply') {
      run.replies += 1;
      run.statuses[args.msg.content.status] = (run.statuses[args.msg.content.status] || 0) + 1;
    }
  });
}"""


def _run_all(page: Any, artifacts: Path, name: str) -> tuple[list[dict[str, Any]], float]:
    """Run > Run All Cells, then wait until the kernel has answered every cell and is idle; return the cells."""
    page.evaluate(EXECUTION_COUNTER)
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.locator(".lm-Menu-item:visible .lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    start = time.monotonic()
    run: dict[str, Any] = {}
    while time.monotonic() - start < RUN_TIMEOUT:
        time.sleep(2)
        if dialogs := _dialogs(page):
            _fail(page, artifacts, name, f"a dialog appeared while running: {dialogs}")
        run = page.evaluate("() => window.__courseRun")
        if 0 < run["requests"] <= run["replies"] and page.evaluate(KERNEL_STATE) == "idle":
            time.sleep(1)  # the last outputs (images) finish rendering
            return page.evaluate(CELLS_STATE), time.monotonic() - start
    cells = page.evaluate(CELLS_STATE)
    waiting = [cell["index"] for cell in cells if cell["type"] == "code" and cell["count"] is None]
    _fail(
        page,
        artifacts,
        name,
        f"Run All did not finish within {RUN_TIMEOUT} s (kernel replies: {run}); "
        f"cells without an execution count: {waiting}",
    )
    raise AssertionError("unreachable")


def _describe(cell: dict[str, Any], limit: int = 1500) -> str:
    source = cell["source"].strip().splitlines()
    head = "\n    ".join(source[:6]) + ("\n    ..." if len(source) > 6 else "")
    errors = "\n".join(cell["errors"])[-limit:]
    return f"cell {cell['index']} (tags {cell['tags']}):\n    {head}\n  error:\n{errors}"


def _check_cells(cells: list[dict[str, Any]]) -> list[str]:
    problems = []
    code = [cell for cell in cells if cell["type"] == "code"]
    for cell in code:
        if cell["errors"]:
            problems.append(f"unexpected error in {_describe(cell)}")
        elif cell["count"] is not None:  # a cell that shows an error on purpose must print it, not raise it
            as_stored = {
                "metadata": {"tags": cell["tags"], "course": cell["course"]},
                "source": cell["source"],
            }
            if problem := missing_error_line(as_stored, cell["text"]):
                problems.append(f"cell {cell['index']}: {problem}")
        for text in cell["widgetErrors"]:
            problems.append(f"cell {cell['index']}: a widget failed to display: {text.strip()[:300]}")
    not_run = [cell["index"] for cell in code if cell["count"] is None]
    if not_run:
        problems.append(
            f"{len(not_run)} code cell(s) never ran (Run All stops at the first unexpected error): "
            f"cells {not_run}"
        )
    return problems


def _sources_expected_to_run(cells: list[dict[str, Any]]) -> list[str]:
    """The sources of the code cells that should succeed (not those that show an error on purpose)."""
    return [c["source"] for c in cells if c["type"] == "code" and SHOWS_ERROR not in c["tags"]]


def _runs(cells: list[dict[str, Any]], *needles: str) -> bool:
    """Whether a cell that should succeed calls one of ``needles``."""
    return any(any(needle in source for needle in needles) for source in _sources_expected_to_run(cells))


def _shows_bars(cells: list[dict[str, Any]]) -> bool:
    """Whether a cell that should succeed trains with ``cu.fit`` and its bars on, or uses tqdm itself.

    A notebook whose every ``cu.fit`` call passes ``verbose=False`` (lesson 08 compares silent runs) draws none.
    """
    return any(
        "tqdm" in source or ("cu.fit(" in source and "verbose=False" not in source)
        for source in _sources_expected_to_run(cells)
    )


SHAPE_LINE = re.compile(
    r"([HW])_out = floor\(\((\d+) \+ 2\*(\d+) - (\d+)\*\((\d+)-1\) - 1\) / (\d+)\) \+ 1 = (-?\d+)"
)


def _expected_shape(label: str, stride: int) -> str:
    """The output shape the label must show after the stride changes, computed from the other numbers it shows."""
    sizes = {}
    for axis, size, padding, dilation, kernel, _, _ in SHAPE_LINE.findall(label):
        k, p, d = int(kernel), int(padding), int(dilation)  # the formula of PyTorch's Conv2d docs
        sizes[axis] = (int(size) + 2 * p - d * (k - 1) - 1) // stride + 1
    assert set(sizes) == {"H", "W"}, f"the output-shape label does not show the formula lines: {label!r}"
    if sizes["H"] > 0 and sizes["W"] > 0:
        return f"output shape: ({sizes['H']}, {sizes['W']})"
    return "output shape: none"


# What the first convolution explorer on the page shows: its shape label, stride readout and picture.
EXPLORER_STATE = """() => {
  const explorer = document.querySelector('.cu-conv-explorer');
  const img = explorer && explorer.querySelector('.cu-conv-output img');
  return {
    label: explorer ? explorer.querySelector('.cu-conv-shape').innerText : '',
    stride: explorer ? explorer.querySelector('.cu-conv-stride .widget-readout').innerText.trim() : '',
    picture: img && img.naturalWidth > 0 ? img.src : '',
  };
}"""


def _check_explorer(page: Any) -> tuple[list[str], list[str]]:
    """Change the explorer's stride through its text box, then its keyboard; the shape label must follow.

    Returns:
        (problems, what was checked).
    """
    explorer = page.locator(".cu-conv-explorer").first
    explorer.wait_for(state="visible")
    explorer.scroll_into_view_if_needed()
    stride = explorer.locator(".cu-conv-stride")
    explorer.locator(".cu-conv-output img").first.wait_for(state="visible")
    state = page.evaluate(EXPLORER_STATE)
    if "output shape: (" not in state["label"] or not state["picture"]:
        return [f"the convolution explorer did not render its shape label and picture: {state}"], []
    first_label, current = state["label"], int(state["stride"])
    done = []
    first = 2 if current != 2 else 3  # the slider goes from 1 to 4
    for target, how in ((first, "text box"), (first + 1 if first < 4 else first - 1, "arrow key")):
        if how == "text box":  # the readout next to the slider is editable: type a value, press Enter
            stride.locator(".widget-readout").click()
            page.keyboard.press("ControlOrMeta+A")
            page.keyboard.type(str(target))
            page.keyboard.press("Enter")
        else:  # the slider's handle takes the arrow keys
            stride.locator(".noUi-handle").first.focus()
            page.keyboard.press("ArrowRight" if target > current else "ArrowLeft")
        want = _expected_shape(state["label"], target)
        try:  # the label shows the new shape and the new stride in its formula, and the picture is redrawn
            page.wait_for_function(
                f"([want, stride, old]) => {{ const s = ({EXPLORER_STATE})(); return s.label.includes(want)"
                " && s.label.includes(') / ' + stride + ')') && s.picture && s.picture !== old; }",
                arg=[want, target, state["picture"]],
                timeout=UI_TIMEOUT_MS,
            )
        except Exception:
            return [
                f"convolution explorer: stride {current} -> {target} by {how}: the label should show "
                f"{want!r} and the picture should change; the page shows {page.evaluate(EXPLORER_STATE)}"
            ], done
        state = page.evaluate(EXPLORER_STATE)
        done.append(f"stride {current}->{target} by {how}: {want!r}")
        current = target
    return [], [f"convolution explorer from {first_label.splitlines()[0][:22]!r}: " + "; ".join(done)]


SCROLLER = "document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer')"
SCREENSHOT_TILE = 5000  # window height while taking the pieces of a screenshot
SCREENSHOT_MAX = 60_000  # the tallest screenshot (pixels); longer notebooks are cut there


def _screenshot(page: Any, path: Path) -> None:
    """The whole notebook in one PNG, stitched from window-sized pieces: the notebook scrolls inside the page."""
    from PIL import Image

    size = page.viewport_size
    page.evaluate("() => window.jupyterapp.shell.collapseLeft()")  # more room for the notebook
    page.set_viewport_size({"width": size["width"], "height": SCREENSHOT_TILE})
    time.sleep(1)  # JupyterLab lays out again after a resize
    # The notebook's height ends at its last cell (JupyterLab adds empty space below it for scrolling).
    top, height, total = page.evaluate(f"""() => {{
      const s = {SCROLLER}, top = s.getBoundingClientRect().top;
      const cells = s.querySelectorAll('.jp-Cell'), last = cells[cells.length - 1];
      const end = last ? last.getBoundingClientRect().bottom - top + s.scrollTop + 40 : s.scrollHeight;
      return [Math.round(top), s.clientHeight, Math.round(Math.min(end, s.scrollHeight))];
    }}""")
    total = min(total, SCREENSHOT_MAX)
    window_height = page.viewport_size["height"]
    canvas = None
    for offset in range(0, total, height):
        actual = page.evaluate(
            f"(y) => {{ const s = {SCROLLER}; s.scrollTo(0, y); return Math.round(s.scrollTop); }}", offset
        )
        time.sleep(0.3)
        tile = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
        if canvas is None:  # the menu and toolbar above the notebook come from the first piece
            canvas = Image.new("RGB", (tile.width, top + total + window_height - top - height), "white")
            canvas.paste(tile.crop((0, 0, tile.width, top)), (0, 0))
        rows = tile.crop((0, top + offset - actual, tile.width, top + min(height, total - actual)))
        canvas.paste(rows, (0, top + offset))
        if offset + height >= total:  # the status bar below the notebook comes from the last piece
            canvas.paste(tile.crop((0, top + height, tile.width, window_height)), (0, top + total))
    if canvas is not None:
        canvas.save(path, optimize=False)
    page.evaluate(f"() => {SCROLLER}.scrollTo(0, 0)")
    page.set_viewport_size(size)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_in_jupyterlab(
    notebook: Path, lab: Lab, browser: Any, artifacts: Path, request: pytest.FixtureRequest
) -> None:
    name = notebook.stem
    (artifacts / f"{name}-FAILED.png").unlink(missing_ok=True)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(UI_TIMEOUT_MS)
    context.add_init_script(PROGRESS_RECORDER)
    page = context.new_page()
    console_errors: list[str] = []
    page.on(
        "console", lambda message: console_errors.append(message.text) if message.type == "error" else None
    )
    page.on("pageerror", lambda error: console_errors.append(f"page error: {error}"))
    try:
        start = time.monotonic()
        page.goto(lab.url(notebook), wait_until="domcontentloaded")
        page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=KERNEL_START_TIMEOUT * 1000)
        _wait_for_kernel(page, artifacts, name)
        opened = time.monotonic() - start
        cells, took = _run_all(page, artifacts, name)
        problems = _check_cells(cells)

        code = [cell for cell in cells if cell["type"] == "code"]
        raised = [cell["index"] for cell in code if cell["errors"]]
        figures = sum(cell["png"] for cell in cells)
        progress = page.evaluate("() => window.__courseProgress")
        _report(
            request.config,
            f"{name}: opened in {opened:.0f} s, ran {len(code)} code cells in {took:.0f} s; "
            f"errors shown by cells {raised}; {figures} PNG image(s); {len(progress)} progress bar(s)"
            + (f", e.g. {progress[0]['text']!r}" if progress else ""),
        )
        if not problems:
            if (
                _runs(
                    cells,
                    "plt.",
                    "cu.plots.",
                    "show_filters(",
                    "show_feature_maps(",
                    "imshow",
                    "conv_explorer(",
                )
                and not figures
            ):
                problems.append("the notebook draws figures but no PNG image rendered")
            if _shows_bars(cells) and not progress:
                problems.append(
                    "the notebook trains with cu.fit (tqdm.auto) but no progress bar widget rendered"
                )
            if _runs(cells, "conv_explorer("):
                failed, checked = _check_explorer(page)
                problems += failed
                for line in checked:
                    _report(request.config, f"  {line}")
        if toasts := page.locator(".Toastify__toast").all_inner_texts():
            problems.append(f"a notification pops up over the notebook: {toasts}")
        try:
            _screenshot(page, artifacts / f"{name}.png")
            _report(request.config, f"  screenshot: {artifacts / f'{name}.png'}")
        except Exception as exc:  # reported, but never in the way of the checks above
            problems.append(f"the screenshot failed: {exc!r}")
        if problems:
            details = "\n\n".join(problems)
            if console_errors:
                details += "\n\nbrowser console errors:\n" + "\n".join(console_errors[-10:])
            _fail(page, artifacts, name, details)
    finally:
        try:
            lab.shutdown_kernels(notebook)
        except OSError as exc:
            _report(request.config, f"  could not shut the kernel of {name} down: {exc}")
        context.close()
