"""Sphinx configuration of the course website (built by ``python3 course.py site``; see tools/build_site.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE / "_ext"))  # the site's own extension, course_site.py
sys.path.insert(0, str(ROOT / "tools"))
import course_address  # noqa: E402

REPO, REF = course_address.repository()  # "owner/name" and the release tag the notebooks' badges use
MODE = os.environ.get("COURSE_SITE_MODE", "full")  # set by tools/build_site.py: "smoke" or "full"

project = "Convolutional neural networks with PyTorch"
author = "the course's authors"
copyright = "the course's authors (MIT License)"
language = "en"
extensions = ["myst_nb", "sphinx.ext.githubpages", "course_site"]
# _generated holds the fragments the home page includes (README's course table, the learning path): not pages.
exclude_patterns = ["_generated", "**.ipynb_checkpoints", "**/checkpoints/**"]

# MyST: $...$ and $$...$$ math as in Jupyter; raw HTML (the notebooks' <details> solutions) passes through.
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3
# Notebook sections start at "##" under the "#" title; %xmode Minimal tracebacks are not what the
# traceback lexer expects (it then colours them as plain text, which is fine).
suppress_warnings = ["myst.header", "misc.highlighting_failure"]

# Execution: every notebook through the cache (nbclient); any cell that raises fails the build, as "Run all" in
# Colab or VS Code would stop there (cells that show an error on purpose catch it and print it).
nb_execution_mode = "cache"
nb_execution_cache_path = os.environ.get(
    "COURSE_SITE_CACHE", str(ROOT / "build" / "cache" / f"{MODE}-manual")
)
nb_execution_timeout = 1800  # seconds per cell
nb_execution_allow_errors = False
# A failed notebook is a warning, and -W (tools/build_site.py) fails the build at the end, naming every one.
nb_execution_raise_on_error = False
nb_execution_show_tb = True
nb_merge_streams = True  # one block per cell for print() output, not one per flush
# No widget JavaScript from a CDN: course_site renders the saved widget state as static HTML instead.
nb_ipywidgets_js = {}

# MathJax 2 from the jupyter-server-mathjax package (course_site copies it into _static/mathjax): no CDN.
html_static_path = ["_static"]
mathjax_path = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"
# MyST marks notebook pages "tex2jax_ignore" and math "math": MathJax then typesets the math and nothing else.
mathjax2_config = {
    "tex2jax": {
        "inlineMath": [["\\(", "\\)"]],
        "displayMath": [["\\[", "\\]"]],
        "processEscapes": False,
        "processEnvironments": False,
        "ignoreClass": "tex2jax_ignore|mathjax_ignore",
        "processClass": "math",
    },
    # The package ships the STIX-Web fonts only: use them, never a font from elsewhere or an image font.
    # Its font-size test font comes from 'about:blank', which Chromium reports as a console error; a local()
    # font that does not exist fails the same way (that is the test font's purpose) without a request.
    "HTML-CSS": {
        "availableFonts": [],
        "preferredFont": None,
        "webFont": "STIX-Web",
        "imageFont": None,
        "styles": {"@font-face": {"font-family": "MathJax_Blank", "src": "local('MathJax_Blank_none')"}},
    },
    "showMathMenu": False,
    "messageStyle": "none",
}
html_css_files = ["course.css"]
html_favicon = "_static/favicon.svg"  # a browser asks for /favicon.ico otherwise: a 404 in the console
html_context = {"default_mode": "light"}  # no "invalid theme mode" console error on a first visit

html_theme = "sphinx_book_theme"
html_title = "CNNs with PyTorch"
html_last_updated_fmt = ""
html_copy_source = True
html_show_sphinx = False
html_theme_options = {
    "repository_url": f"https://github.com/{REPO}",
    "repository_branch": REF,
    "path_to_docs": "",  # pages are named as in the repository: notebooks/NN_name.ipynb
    "use_repository_button": True,
    "use_download_button": True,
    "use_fullscreen_button": False,
    "home_page_in_toc": True,
    "show_navbar_depth": 1,
    "show_toc_level": 2,
    "launch_buttons": {
        "colab_url": "https://colab.research.google.com",
        "binderhub_url": "https://mybinder.org",
        # A class's hub: COURSE_JUPYTERHUB_URL=https://hub.example.edu adds an nbgitpuller launch button.
        "jupyterhub_url": os.environ.get("COURSE_JUPYTERHUB_URL", ""),
        "notebook_interface": "jupyterlab",
    },
    "announcement": (
        "Smoke build: every lesson ran on tiny data subsets for a test, so its numbers mean nothing. "
        "Build the real pages with <code>python3 course.py site</code>."
        if MODE == "smoke"
        else ""
    ),
}
