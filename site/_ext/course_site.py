"""The course site's Sphinx extension: a banner on each lesson about its run, widgets drawn from saved state.

- Every lesson page says what produced its outputs, read from the run itself: smoke or full mode, the machine,
  torch and Python (the notebook's own ``cu.environment_report()``), when it ran and how long it took
  (MyST-NB's execution record). A smoke run gets a warning banner. A run without the pretrained ResNet18
  weights gets one that says its ResNet results are not transfer learning, and each output holding such
  results is folded away behind that warning.
- ipywidgets need a live kernel. Rather than loading the widget manager from a CDN, each widget output is
  drawn as static HTML from the widget state saved with the run: controls show their values, progress bars
  their last state, and an Output widget its picture, with a note to launch the notebook for the live widget.
- MathJax 2 is copied from the ``jupyter-server-mathjax`` package into ``_static/mathjax``: no CDN.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import jupyter_server_mathjax
from docutils import nodes
from myst_nb.sphinx_ import NbMetadataCollector
from sphinx.application import Sphinx

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
REPORT_LINE = re.compile(r"^([a-z_ ()0-9]+?)\s+: (.*)$")
# Printed (in capitals) by course_utils and notebook 04 next to every result of a ResNet18 whose pretrained
# weights could not be loaded; weights=None on purpose prints "random weights (NOT pretrained)" instead.
NO_WEIGHTS = re.compile(r"RANDOM (WEIGHTS|weights)")
CONTROLS = {
    "IntSliderModel",
    "FloatSliderModel",
    "FloatLogSliderModel",
    "IntRangeSliderModel",
    "FloatRangeSliderModel",
    "IntTextModel",
    "FloatTextModel",
    "BoundedIntTextModel",
    "BoundedFloatTextModel",
    "TextModel",
    "CheckboxModel",
    "ToggleButtonModel",
}
CHOICES = {"DropdownModel", "SelectModel", "RadioButtonsModel", "ToggleButtonsModel", "SelectionSliderModel"}


def _report(doctree: nodes.document) -> dict[str, str]:
    """The ``key : value`` lines the setup cell printed (``cu.environment_report()``)."""
    for cell in doctree.findall(nodes.container):
        if "tag_setup" in cell["classes"]:
            text = "\n".join(
                block.astext() for block in cell.findall(nodes.literal_block) if "output" in block["classes"]
            )
            return {
                m[1].strip(): m[2].strip() for line in text.splitlines() if (m := REPORT_LINE.match(line))
            }
    return {}


def _outputs_text(doctree: nodes.document) -> str:
    return "\n".join(
        block.astext() for block in doctree.findall(nodes.literal_block) if "output" in block["classes"]
    )


def _device(report: dict[str, str]) -> str:
    if report.get("cuda", "not available") != "not available":
        return f"GPU {report['cuda']}"
    if report.get("mps") == "True":
        return "Apple GPU (MPS)"
    threads = report.get("cpu threads")
    return f"CPU ({threads} threads; no GPU)" if threads else "CPU"


def _machine(report: dict[str, str]) -> str:
    """Device, operating system and architecture, e.g. ``CPU (2 threads; no GPU), Linux x86_64``."""
    system = report.get("platform", "")
    arch = re.search(r"x86_64|aarch64|arm64|AMD64|armv7l", system)
    where = " ".join(part for part in (system.split("-")[0], arch[0] if arch else "") if part)
    return _device(report) + (f", {where}" if where else "")


def banners(docname: str, doctree: nodes.document, env: Any) -> list[nodes.Element]:
    """The admonitions that open a lesson page: how its outputs were made, and what they cannot show."""
    report = _report(doctree)
    run = NbMetadataCollector.get_exec_data(env, docname) or {}
    smoke = report.get("smoke mode", str(os.environ.get("COURSE_SITE_MODE") == "smoke")) == "True"
    facts = [f"{run['runtime']:.0f} s" if run.get("runtime") is not None else "run time not recorded"]
    if run.get("mtime"):
        facts[0] += " on " + datetime.datetime.fromtimestamp(run["mtime"]).strftime("%Y-%m-%d")
    facts.append(f"torch {report.get('torch', 'version not reported')}")
    facts += [f"Python {report['python']}"] if "python" in report else []
    facts.append(_machine(report))
    run_line = "This run: " + " · ".join(facts)
    if smoke:
        shown = [
            _admonition(
                "Smoke run: the numbers on this page mean nothing",
                "Built to test the site: the notebook ran on tiny data subsets with one short epoch "
                "(COURSE_SMOKE=1). The published pages come from full runs (python3 course.py site).",
                "warning",
                "course-run",
                run_line,
            )
        ]
    else:
        shown = [
            _admonition(
                "About this run",
                "The outputs below come from one full run of this notebook. Your own run prints its own "
                "numbers: launch the notebook with the buttons above.",
                "note",
                "course-run",
                run_line,
            )
        ]
    if NO_WEIGHTS.search(_outputs_text(doctree)):
        shown.append(
            _admonition(
                "No pretrained weights in this run",
                "The pretrained ResNet18 weights could not be downloaded when this page was built, so the "
                "ResNet18 results of this run come from random weights: they are not transfer learning and say "
                "nothing about it. Each output that holds such results is folded away below, with this "
                "warning in its place. Run the notebook where it can download the weights (about 45 MB) to see "
                "the pretrained results.",
                "warning",
                "course-no-weights",
            )
        )
    return shown


def fold_random_weight_outputs(doctree: nodes.document) -> int:
    """Fold each output that reports results of random weights in place of pretrained ones; return how many."""
    folded = 0
    for output in list(doctree.findall(nodes.container)):
        if "cell_output" not in output["classes"] or not NO_WEIGHTS.search(output.astext()):
            continue
        summary = (
            "Not transfer learning: the pretrained weights could not be downloaded, so the ResNet18 results "
            "in this output come from random weights. Show what the run printed anyway"
        )
        parent, index = output.parent, output.parent.index(output)
        parent.insert(
            index,
            nodes.raw("", f'<details class="course-no-weights"><summary>{summary}</summary>', format="html"),
        )
        parent.insert(index + 2, nodes.raw("", "</details>", format="html"))
        folded += 1
    return folded


def _admonition(title: str, text: str, kind: str, name: str, *details: str) -> nodes.Element:
    node = nodes.admonition(classes=[kind, name])
    node += nodes.title(text=title)
    node += nodes.paragraph(text=text)
    for line in details:
        node += nodes.paragraph(text=line, classes=["course-run-facts"])
    return node


def _ref(value: str) -> str:
    return value[len("IPY_MODEL_") :] if value.startswith("IPY_MODEL_") else value


def widget_html(model_id: str, state: dict[str, Any]) -> tuple[str, bool]:
    """A widget as static HTML from its saved state.

    Args:
        model_id: The widget's model id.
        state: The notebook's widget state (``model_id -> {"model_name", "state"}``).

    Returns:
        (HTML, whether it has controls a reader would want to move). Empty HTML for a widget that was
        closed before the run ended (a finished progress bar).
    """
    model = state.get(model_id)
    if model is None:
        return "", False
    name, values = model.get("model_name", ""), model.get("state", {})
    label = html.escape(str(values.get("description", "")))
    if name in {"VBoxModel", "HBoxModel", "BoxModel", "GridBoxModel"}:
        parts = [widget_html(_ref(child), state) for child in values.get("children", [])]
        box = "course-hbox" if name == "HBoxModel" else "course-vbox"
        return f'<div class="{box}">{"".join(p for p, _ in parts)}</div>', any(c for _, c in parts)
    if name in {"HTMLModel", "HTMLMathModel"}:
        return f'<div class="course-widget-html">{label} {values.get("value", "")}</div>', False
    if name == "LabelModel":
        return f'<span class="course-widget-label">{html.escape(str(values.get("value", "")))}</span>', False
    if name in CONTROLS:
        value = html.escape(str(values.get("value", "")))
        return f'<span class="course-widget-control">{label}: <b>{value}</b></span>', True
    if name in CHOICES:
        labels, index = values.get("_options_labels", []), values.get("index")
        value = html.escape(str(labels[index])) if isinstance(index, int) and index < len(labels) else ""
        return f'<span class="course-widget-control">{label}: <b>{value}</b></span>', True
    if name in {"FloatProgressModel", "IntProgressModel"}:
        low, high, value = values.get("min", 0), values.get("max", 100), values.get("value", 0)
        return f'<progress value="{value - low}" max="{high - low}"></progress>', False
    if name == "OutputModel":
        return "".join(_output_html(output) for output in values.get("outputs", [])), False
    return "", False


def _output_html(output: dict[str, Any]) -> str:
    data = output.get("data", {})
    if "image/png" in data:
        alt = html.escape(str(data.get("text/plain", "figure")), quote=True)
        png = data["image/png"]
        base64.b64decode(png, validate=True)  # a broken picture fails the build, not the reader
        return f'<img class="course-widget-image" src="data:image/png;base64,{png}" alt="{alt}">'
    if "text/html" in data:
        return str(data["text/html"])
    text = output.get("text") or data.get("text/plain", "")
    return f"<pre>{html.escape(''.join(text) if isinstance(text, list) else str(text))}</pre>"


def draw_widgets(docname: str, doctree: nodes.document, env: Any) -> None:
    """Replace each widget output by its static drawing (or by its text form where nothing was saved)."""
    js_files = NbMetadataCollector.get_js_files(env, docname)
    saved = js_files.pop("ipywidgets_state", None)  # the drawing replaces it: no state script in the page
    state = json.loads(saved[1]["body"]).get("state", {}) if saved else {}
    for container in list(doctree.findall(nodes.container)):
        if container.get("mime_type") != WIDGET_VIEW:
            continue
        raw = next(iter(container.findall(nodes.raw)), None)
        match = re.search(r'"model_id":\s*"([0-9a-f]+)"', raw.astext() if raw else "")
        drawing, interactive = widget_html(match[1], state) if match else ("", False)
        if not drawing:  # closed widget: the text/plain form beside it in the bundle is shown instead
            container.parent.remove(container)
            continue
        note = (
            '<p class="course-widget-note">A still picture of this interactive widget, drawn from the state '
            "it had when the page was built. To move its controls, launch the notebook (Colab or Binder, at "
            "the top of the page) and run this cell.</p>"
            if interactive
            else ""
        )
        container.replace(
            raw, nodes.raw("", f'<div class="course-widget">{note}{drawing}</div>', format="html")
        )


def on_doctree_read(app: Sphinx, doctree: nodes.document) -> None:
    docname = app.env.docname
    if not app.env.doc2path(docname).name.endswith(".ipynb"):
        return
    draw_widgets(docname, doctree, app.env)
    section = next(iter(doctree.findall(nodes.section)), None)
    if section is None:
        return
    # Below the title and the launch links, above the lesson's first paragraph.
    index = 1
    if len(section) > 1 and isinstance(section[1], nodes.raw) and "course-launch" in section[1].astext():
        index = 2
    for offset, banner in enumerate(banners(docname, doctree, app.env)):
        section.insert(index + offset, banner)
    fold_random_weight_outputs(doctree)


def copy_mathjax(app: Sphinx, exception: Exception | None) -> None:
    """MathJax from its Python package into ``_static/mathjax`` (once; ~12 MB)."""
    if exception is not None or app.builder.format != "html":
        return
    source = Path(jupyter_server_mathjax.__file__).parent / "static"
    target = Path(app.outdir) / "_static" / "mathjax"
    if not (target / "MathJax.js").is_file():
        shutil.copytree(source, target, dirs_exist_ok=True)


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("doctree-read", on_doctree_read)
    app.connect("build-finished", copy_mathjax)
    return {"version": "1.0", "parallel_read_safe": False, "parallel_write_safe": True}
