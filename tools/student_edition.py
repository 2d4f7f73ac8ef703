#!/usr/bin/env python3
"""Write the student edition of every notebook: the same notebook without its solutions.

A solution is a markdown ``<details><summary>Solution</summary> ... </details>`` block. A cell that holds only
solutions is dropped; a cell with other text keeps that text. Every other cell (exercise cells, their checks,
tags, ids) is kept as it is, and the notebooks are written with nbformat exactly as the course's own are, so
the student edition differs from the original only by the solutions. It is generated, never edited by hand:
run this again after any change to the notebooks.

Usage: python tools/student_edition.py [--out DIR] [--zip] [--colab-repo OWNER/NAME --ref REF]

Writes ``DIR/notebooks/NN_*.ipynb`` (default DIR: ``build/student``) and a README for students; ``--zip``
also writes ``DIR.zip`` to hand out or upload to an LMS. ``--colab-repo`` points the notebooks' Colab and
Binder badges at another repository (e.g. one that holds only the student edition) instead of this one.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
import course_address  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "build" / "student"
# One solution block: <details> with a <summary> that says Solution, up to its closing tag.
SOLUTION = re.compile(
    r"<details[^>]*>\s*<summary[^>]*>\s*(?:<b>|<strong>)?\s*Solutions?\b.*?</details>\s*",
    re.DOTALL | re.IGNORECASE,
)
README = """# {title}: student edition

These are the course's notebooks without the solutions to the exercises; everything else is the same.
Each exercise has a cell for your answer (replace `None` or `...`) and a check cell below it that tells you
whether your answer is right (✅) or gives a hint (❌) without giving the answer away.

Open the notebooks in order, starting with `notebooks/{first}`. They need the course's helper package
`course_utils`; your teacher says how it is installed where you work (on Colab, each notebook's second cell
installs it).
"""


@dataclass
class Edition:
    """What one notebook's student edition removed."""

    name: str
    solutions: int  # solution blocks removed
    cells_removed: int  # cells that held nothing else


def remove_solutions(nb: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, int, int]:
    """A copy of ``nb`` without solution blocks.

    Args:
        nb: A notebook (not changed).

    Returns:
        (student notebook, solution blocks removed, cells removed).
    """
    student = nbformat.from_dict(nb)  # a deep copy
    kept, solutions, removed = [], 0, 0
    for cell in student.cells:
        if cell.cell_type == "markdown" and SOLUTION.search(cell.source):
            solutions += len(SOLUTION.findall(cell.source))
            rest = SOLUTION.sub("", cell.source).strip()
            if not rest:
                removed += 1
                continue
            cell.source = rest
        kept.append(cell)
    student.cells = kept
    return student, solutions, removed


def point_badges_at(nb: nbformat.NotebookNode, name: str, repo: str, ref: str) -> None:
    """Point the launch badges of ``nb`` (file name ``name``) at ``repo`` and ``ref``, in place."""
    lines = nb.cells[0].source.split("\n")
    for index, line in enumerate(lines):
        if course_address.MARKER in line:
            lines[index] = course_address.badge_line(name, repo, ref)
    nb.cells[0].source = "\n".join(lines)


def write_edition(
    out: Path = DEFAULT_OUT, *, make_zip: bool = False, colab_repo: str | None = None, ref: str | None = None
) -> list[Edition]:
    """Write the student edition of every ``notebooks/NN_*.ipynb`` into ``out/notebooks``.

    Args:
        out: The folder to write (its ``notebooks/`` is replaced; nothing else in it is touched).
        make_zip: Also write ``out`` as a zip file beside it (``<out>.zip``).
        colab_repo: GitHub ``OWNER/NAME`` for the launch badges; None keeps this repository's.
        ref: The branch or tag for ``colab_repo``'s badges.

    Returns:
        What was removed from each notebook.

    Raises:
        SystemExit: ``out`` is inside ``notebooks/`` (it would be picked up as lessons), or ``colab_repo``
            has no ``ref``.
    """
    out = out.resolve()
    if out == ROOT / "notebooks" or ROOT / "notebooks" in out.parents:
        raise SystemExit(f"the student edition cannot go inside notebooks/ ({out}); choose another folder")
    if colab_repo and not ref:
        raise SystemExit("--colab-repo needs --ref (the branch or tag that holds the student notebooks)")
    folder = out / "notebooks"
    if folder.exists():
        shutil.rmtree(folder)  # a notebook deleted from the course must not linger here
    folder.mkdir(parents=True)
    editions = []
    sources = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    for path in sources:
        nb = nbformat.read(path, as_version=4)
        student, solutions, removed = remove_solutions(nb)
        if colab_repo and ref:
            point_badges_at(student, path.name, colab_repo, ref)
        nbformat.validate(student)
        nbformat.write(student, folder / path.name)
        editions.append(Edition(path.name, solutions, removed))
    title = (ROOT / "README.md").read_text().splitlines()[0].lstrip("# ").strip()
    first = sources[0].name if sources else "01_*.ipynb"
    (out / "README.md").write_text(README.format(title=title, first=first))
    if make_zip:
        archive = shutil.make_archive(str(out), "zip", root_dir=out.parent, base_dir=out.name)
        print(f"zip: {archive}")
    return editions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="folder to write (default: build/student)"
    )
    parser.add_argument("--zip", action="store_true", help="also write the folder as a .zip beside it")
    parser.add_argument("--colab-repo", help="OWNER/NAME on GitHub that the launch badges should open")
    parser.add_argument("--ref", help="branch or tag of --colab-repo")
    args = parser.parse_args(argv)
    editions = write_edition(args.out, make_zip=args.zip, colab_repo=args.colab_repo, ref=args.ref)
    for edition in editions:
        print(
            f"{edition.name}: {edition.solutions} solution(s) removed"
            + (f" ({edition.cells_removed} cell(s) dropped)" if edition.cells_removed else "")
        )
    print(f"student edition of {len(editions)} notebooks: {args.out.resolve() / 'notebooks'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
