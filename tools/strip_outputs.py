#!/usr/bin/env python3
"""Strip outputs, execution counts and volatile metadata from notebooks, so diffs stay clean.

Usage: python tools/strip_outputs.py [--check] [NOTEBOOK ...]   (default: every notebook in notebooks/)
With --check, change nothing and exit 1 if any notebook has outputs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
KEEP_METADATA = {"kernelspec", "language_info"}


def strip(nb: nbformat.NotebookNode) -> bool:
    """Remove outputs in place; return True if anything changed."""
    changed = False
    for cell in nb.cells:
        if cell.cell_type == "code":
            if cell.get("outputs") or cell.get("execution_count") is not None:
                cell.outputs, cell.execution_count = [], None
                changed = True
        for key in ("execution", "collapsed", "scrolled"):
            if key in cell.metadata:
                del cell.metadata[key]
                changed = True
    for key in set(nb.metadata) - KEEP_METADATA:
        del nb.metadata[key]
        changed = True
    if "language_info" in nb.metadata and set(nb.metadata.language_info) != {"name"}:
        nb.metadata.language_info = {"name": "python"}
        changed = True
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="only report notebooks that have outputs")
    parser.add_argument("notebooks", nargs="*", type=Path)
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    dirty = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        if strip(nb):
            dirty.append(path)
            if not args.check:
                nbformat.write(nb, path)
    for path in dirty:
        print(f"{'has outputs' if args.check else 'stripped'}: {path}")
    return 1 if (args.check and dirty) else 0


if __name__ == "__main__":
    sys.exit(main())
