#!/usr/bin/env python3
"""Write (or check) the conda and Binder environments from requirements-lock.txt, so all pin the same versions.

- ``environment.yml`` (conda or mamba on a learner's computer): Python, pip, the lock's pins of what the
  notebooks need (pyproject.toml's dependencies and its ``lab`` extra), and this repository's package (``-e .``).
- ``binder/environment.yml`` (repo2docker reads ``binder/`` before the root): the same pins, without the course
  package, so the image layer built from it does not change with each commit and Binder reuses it;
  ``binder/postBuild`` then installs the package (``--no-deps``: everything it needs is pinned above).

Usage: python tools/environment_files.py [--check]   (--check: change nothing, exit 1 if a file is stale)
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = "3.11"  # the version CI and the lock are tested with (pyproject.toml: requires-python >= 3.11)


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[;]", requirement.strip(), maxsplit=1)[0].lower()


def lock() -> dict[str, str]:
    """{package name (lower case): pinned version} from requirements-lock.txt."""
    lines = (ROOT / "requirements-lock.txt").read_text().splitlines()
    return {_name(ln): ln.split("==", 1)[1].strip() for ln in lines if ln.strip() and not ln.startswith("#")}


def needed() -> list[str]:
    """The packages a learner's environment needs: pyproject's dependencies and its ``lab`` extra, in order."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [_name(d) for d in project["dependencies"] + project["optional-dependencies"]["lab"]]


def pins() -> list[str]:
    versions = lock()
    missing = [name for name in needed() if name not in versions]
    if missing:
        raise SystemExit(f"requirements-lock.txt pins no version of {missing}; add them there first")
    return [f"{name}=={versions[name]}" for name in needed()]


def environment(*, for_binder: bool) -> str:
    head = (
        [
            "# Binder's environment (repo2docker reads binder/ before the repository's root), written by",
            "# tools/environment_files.py from requirements-lock.txt: do not edit by hand. The course package is",
            "# installed by binder/postBuild, so this file, and the image layer built from it, stay the same",
            "# from one commit to the next. torch is PyPI's build, as in the lock (it runs on Binder's CPUs).",
        ]
        if for_binder
        else [
            "# conda / mamba environment for the CNN course, written by tools/environment_files.py from",
            "# requirements-lock.txt (the versions CI tests): do not edit by hand.",
            "#   conda env create -f environment.yml && conda activate cnn-course",
        ]
    )
    pip = [*pins(), *([] if for_binder else ["-e ."])]
    body = [
        "name: cnn-course",
        "channels:",
        "  - conda-forge",
        "dependencies:",
        f"  - python={PYTHON}",
        "  - pip",
        "  - pip:",
        *(f"      - {line}" for line in pip),
    ]
    return "\n".join(head + body) + "\n"


POST_BUILD = """#!/bin/bash
# Binder runs this after building binder/environment.yml: the course package, without dependencies (all are
# pinned there). Editable, so the notebooks' data folder is the repository's data/ (written by
# tools/environment_files.py: do not edit by hand).
set -euo pipefail
python -m pip install --no-cache-dir --no-deps -e .
"""


def files() -> dict[Path, str]:
    return {
        ROOT / "environment.yml": environment(for_binder=False),
        ROOT / "binder" / "environment.yml": environment(for_binder=True),
        ROOT / "binder" / "postBuild": POST_BUILD,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="report stale files, change nothing")
    args = parser.parse_args(argv)
    stale = [path for path, text in files().items() if not path.exists() or path.read_text() != text]
    for path in stale:
        if not args.check:
            path.parent.mkdir(exist_ok=True)
            path.write_text(files()[path])
            if path.name == "postBuild":
                path.chmod(0o755)
        print(f"{'stale' if args.check else 'updated'}: {path.relative_to(ROOT)}")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
