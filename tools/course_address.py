#!/usr/bin/env python3
"""Write (or check) every place that names the course's address, from pyproject.toml.

The repository URL lives in one place, ``[project.urls] Repository`` in pyproject.toml, and the release ref
is ``v{project.version}``. From them come: each notebook's Colab and Binder badges (the notebook at that tag)
and its Colab set-up cell (which installs ``course_utils`` from the same tag, so notebook and package always
match); the README's clone command and quoted set-up failure; the teacher's guide's hub install line and
nbgitpuller link; the website (``site/conf.py`` and ``tools/build_site.py`` call :func:`repository`). A fork
changes the URL in pyproject.toml and runs this one command. Publish a release by tagging it and, for
nbgitpuller (which merges ``origin/<branch>`` on every later click, so it needs a branch, not a tag), pushing
the branch ``release/v<version>`` at the same commit:
``git tag v0.1.0 && git branch release/v0.1.0 v0.1.0 && git push origin v0.1.0 release/v0.1.0``.

Usage: python tools/course_address.py [--check]   (--check: change nothing, exit 1 if a file is stale)
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
import urllib.parse
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


def torch_floor() -> str:
    """The oldest torch pyproject.toml accepts (``torch>=X``)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return next(d.split(">=")[1].strip() for d in project["dependencies"] if re.match(r"torch\s*>=", d))


def colab_cell_source(repo: str, ref: str) -> str:
    """The Colab-only set-up cell: installs course_utils at the release tag (or ``COURSE_PACKAGE``), keeps torch."""
    floor = torch_floor()
    major_minor = tuple(int(n) for n in floor.split(".")[:2])
    return (
        "# On Google Colab only: install the course's helper package at this release, without touching Colab's own\n"
        "# torch and torchvision (--no-deps: Colab has every package it needs), and keep datasets in /content/data,\n"
        "# which Colab's file browser shows. To install from elsewhere (a fork, a branch, a teacher's copy, a wheel\n"
        "# or a folder), run first, for example:   %env COURSE_PACKAGE=git+https://github.com/YOU/cnn-course@main\n"
        "# Elsewhere (your computer, Binder, a JupyterHub) this cell does nothing.\n"
        "import os\n"
        "import subprocess\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:\n'
        f'    package = os.environ.get("COURSE_PACKAGE") or "git+https://github.com/{repo}@{ref}"\n'
        '    os.environ.setdefault("COURSE_DATA_DIR", "/content/data")\n'
        '    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check"]\n'
        "    done = subprocess.run([*pip, package], capture_output=True, text=True)\n"
        "    if done.returncode != 0:\n"
        "        said = [line.strip() for line in done.stderr.splitlines() if line.strip()]\n"
        '        why = next((line for line in said if line.startswith(("fatal:", "ERROR:"))), said[-1] if said else "")\n'
        "\n"
        "        class SetupFailed(Exception):  # shown as its one line, without a traceback\n"
        "            def _render_traceback_(self):\n"
        '                return [f"SetupFailed: {self}"]\n'
        "\n"
        "        raise SetupFailed(\n"
        '            f"could not install the course package from {package} ({why}). Check the network and the "\n'
        '            "address, or set COURSE_PACKAGE (see above), then run this cell again."\n'
        "        )\n"
        "    import importlib\n"
        "    from importlib.metadata import version\n"
        "\n"
        "    importlib.invalidate_caches()\n"
        '    installed, torch_version, data = version("course-utils"), version("torch"), os.environ["COURSE_DATA_DIR"]\n'
        '    print(f"course-utils {installed} installed from {package}; torch {torch_version}; data in {data}")\n'
        f'    if tuple(int(n) for n in torch_version.split("+")[0].split(".")[:2]) < {major_minor}:\n'
        f'        print(f"Colab\'s torch {{torch_version}} is older than {floor}, the oldest this course is tested with.")'
    )


def hub_install(repo: str, ref: str) -> str:
    """The pip requirement a JupyterHub image installs: the package at the release tag."""
    return f"course-utils @ git+https://github.com/{repo}@{ref}"


def nbgitpuller_link(repo: str, ref: str, notebook: str = "01_convolution_basics.ipynb") -> str:
    """A JupyterHub link that clones (or updates) the repository at the release branch and opens ``notebook``."""
    name = repo.split("/")[1]
    query = urllib.parse.urlencode(
        {
            "repo": f"https://github.com/{repo}",
            "branch": f"release/{ref}",
            "urlpath": f"lab/tree/{name}/notebooks/{notebook}",
        }
    )
    return f"https://HUB.example.edu/hub/user-redirect/git-pull?{query}"


# Text in the repository's documents that names the address: (file, pattern, replacement).
def documents(repo: str, ref: str) -> list[tuple[str, re.Pattern[str], str]]:
    name = repo.split("/")[1]
    return [
        (
            "README.md",
            re.compile(r"git clone https://github\.com/[\w.-]+/[\w.-]+?\.git && cd [\w.-]+"),
            f"git clone https://github.com/{repo}.git && cd {name}",
        ),
        (  # the Colab cell's failure, quoted as an example
            "README.md",
            re.compile(
                r"course package from git\+https://github\.com/[\w.-]+/[\w.-]+@[\w./-]+ \(fatal: unable to access "
                r"'https://github\.com/[\w.-]+/[\w.-]+/'"
            ),
            f"course package from git+https://github.com/{repo}@{ref} (fatal: unable to access "
            f"'https://github.com/{repo}/'",
        ),
        (
            "docs/teaching.md",
            re.compile(r"course-utils @ git\+https://github\.com/(?!YOUR-ORG)[\w.-]+/[\w.-]+@[\w./-]+"),
            hub_install(repo, ref),
        ),
        (
            "docs/teaching.md",
            re.compile(
                r"https://HUB\.example\.edu/hub/user-redirect/git-pull\?repo=https%3A%2F%2Fgithub\.com%2F"
                r"(?!YOUR-ORG)[^&\s]+&branch=[^&\s]+&urlpath=[^\s`]+"
            ),
            nbgitpuller_link(repo, ref),
        ),
    ]


def update_documents(repo: str, ref: str, write: bool) -> list[str]:
    """Bring the README's and the teacher's guide's addresses up to date; return the stale files."""
    stale, rules = [], documents(repo, ref)
    for file in sorted({f for f, _, _ in rules}):
        path = ROOT / file
        old = new = path.read_text()
        for name, pattern, replacement in rules:
            if name == file:
                if not pattern.search(new):
                    raise SystemExit(f"{file}: found no {pattern.pattern!r} to keep up to date")
                new = pattern.sub(lambda _, wanted=replacement: wanted, new)  # taken as it is, no \1 escapes
        if new != old:
            stale.append(file)
            if write:
                path.write_text(new)
    return stale


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
    stale += update_documents(repo, ref, write=not args.check)
    for name in stale:
        print(f"{'stale' if args.check else 'updated'}: {name}")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
