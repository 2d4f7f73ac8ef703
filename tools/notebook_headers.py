#!/usr/bin/env python3
"""Write (or check) each notebook's launch badges and its Colab-only install cell, from pyproject.toml.

The repository URL lives in one place, ``[project.urls] Repository`` in pyproject.toml, and the release ref
is ``v{project.version}``: the badges open the notebook at that tag on Colab and Binder, and the Colab cell
installs ``course_utils`` from the same tag, so notebook and package always match. Publish a release by
tagging it: ``git tag v0.1.0 && git push --tags``.

Usage: python tools/notebook_headers.py [--check]   (--check: change nothing, exit 1 if a notebook is stale)
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
MARKER = "<!-- launch-badges -->"
COLAB_TAG = "colab-setup"


def repository() -> tuple[str, str]:
    """(GitHub "owner/name", release ref) from pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    url = project["urls"]["Repository"].rstrip("/")
    match = re.fullmatch(r"https://github\.com/([\w.-]+/[\w.-]+?)(\.git)?", url)
    if not match:
        raise SystemExit(f"pyproject.toml's Repository URL must be https://github.com/OWNER/NAME, got {url}")
    return match.group(1), f"v{project['version']}"


def badge_line(notebook: str, repo: str, ref: str) -> str:
    """The markdown line with the Colab and Binder badges for ``notebooks/<notebook>``."""
    colab = f"https://colab.research.google.com/github/{repo}/blob/{ref}/notebooks/{notebook}"
    binder = f"https://mybinder.org/v2/gh/{repo}/{ref}?urlpath=lab/tree/notebooks/{notebook}"
    # The marker goes at the end: a line that *starts* with an HTML comment is an HTML block in Markdown, and
    # the badges after it would show as raw text instead of images.
    return (
        f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab}) "
        f"[![Launch Binder](https://mybinder.org/badge_logo.svg)]({binder}) {MARKER}"
    )


def colab_cell_source(repo: str, ref: str) -> str:
    """The Colab-only install cell: installs course_utils at the release tag, never reinstalling torch."""
    return (
        "# On Google Colab only: install the course's helper package at this release. Colab's preinstalled\n"
        "# torch and torchvision satisfy its requirements, so they are not reinstalled. Elsewhere: nothing.\n"
        "import subprocess\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:\n'
        f'    package = "course-utils @ git+https://github.com/{repo}@{ref}"\n'
        '    subprocess.run([sys.executable, "-m", "pip", "install", "-q", package], check=True)'
    )


def update(nb: nbformat.NotebookNode, name: str, repo: str, ref: str) -> bool:
    """Bring one notebook's badges and Colab cell up to date in place; return True if anything changed."""
    first = nb.cells[0]
    lines = first.source.split("\n")
    index = next((i for i, line in enumerate(lines) if MARKER in line), None)
    if index is None:
        raise SystemExit(f"{name}: the first cell has no line with {MARKER}")
    changed = False
    wanted = badge_line(name, repo, ref)
    if lines[index] != wanted:
        lines[index] = wanted
        first.source = "\n".join(lines)
        changed = True
    source = colab_cell_source(repo, ref)
    cell = nb.cells[1] if len(nb.cells) > 1 and COLAB_TAG in nb.cells[1].metadata.get("tags", []) else None
    if cell is None:
        nb.cells.insert(1, nbformat.v4.new_code_cell(source, metadata={"tags": [COLAB_TAG]}))
        changed = True
    elif cell.source != source:
        cell.source = source
        changed = True
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="report stale notebooks, change nothing")
    args = parser.parse_args(argv)
    repo, ref = repository()
    stale = []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        if update(nb, path.name, repo, ref):
            stale.append(path.name)
            if not args.check:
                nbformat.validate(nb)
                nbformat.write(nb, path)
    for name in stale:
        print(f"{'stale' if args.check else 'updated'}: {name}")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
