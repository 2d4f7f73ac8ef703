"""The student edition: every notebook without its solutions, nothing else changed, and it runs top to bottom.

The run uses the smoke-mode cache of executed notebooks (``tools/notebook_cache.py``), which matches a notebook by
its code cells only. The student edition has exactly the original's code cells (checked here), so when the site
test has already run a notebook in this environment, its run is the student edition's run and is reused;
otherwise the student notebook itself is executed now and cached.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from test_browser import _report

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import notebook_cache  # noqa: E402
import student_edition  # noqa: E402

NOTEBOOKS = notebook_cache.notebooks()
SOLUTION_TAG = re.compile(r"<summary[^>]*>\s*Solution", re.IGNORECASE)


def _cell(cell: nbformat.NotebookNode) -> str:
    return json.dumps(cell, sort_keys=True)


def test_solutions_are_removed_and_nothing_else():
    nb = new_notebook(
        cells=[
            new_markdown_cell("# 01 · Title"),
            new_code_cell("answer = None  # replace None"),
            new_code_cell("checks.check_equal(answer, 4)"),
            new_markdown_cell(
                "<details><summary>Solution</summary>\n\n```python\nanswer = 4\n```\n</details>"
            ),
            new_markdown_cell("Before.\n\n<details><summary>Solution</summary>\nx\n</details>\n\nAfter."),
            new_markdown_cell("<details><summary>Hint</summary>\nLook at the shape.\n</details>"),
        ]
    )
    original = _cell(nb)
    student, solutions, removed = student_edition.remove_solutions(nb)
    assert (solutions, removed) == (2, 1)
    assert [c.source for c in student.cells] == [
        "# 01 · Title",
        "answer = None  # replace None",
        "checks.check_equal(answer, 4)",
        "Before.\n\nAfter.",
        "<details><summary>Hint</summary>\nLook at the shape.\n</details>",  # not a solution: kept
    ]
    assert _cell(nb) == original, "the original notebook must not change"


def test_badges_can_open_a_student_repository():
    nb = nbformat.read(NOTEBOOKS[0], as_version=4)
    student_edition.point_badges_at(nb, NOTEBOOKS[0].name, "teacher/cnn-student", "main")
    assert f"github/teacher/cnn-student/blob/main/notebooks/{NOTEBOOKS[0].name}" in nb.cells[0].source
    assert "mybinder.org/v2/gh/teacher/cnn-student/main?urlpath=" in nb.cells[0].source


def test_the_edition_cannot_be_written_into_the_lessons_folder(tmp_path):
    with pytest.raises(SystemExit, match="cannot go inside notebooks"):
        student_edition.write_edition(ROOT / "notebooks" / "student")


@pytest.fixture(scope="module")
def edition(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("student") / "student"
    written = student_edition.write_edition(out, make_zip=True)
    assert {p.name for p in NOTEBOOKS} <= {e.name for e in written}
    assert (out / "README.md").is_file() and out.with_suffix(".zip").is_file()
    return out / "notebooks"


def test_every_lesson_has_a_student_edition(edition):
    assert sorted(p.name for p in edition.iterdir()) == [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_student_edition_differs_only_by_its_solutions(path, edition):
    original = nbformat.read(path, as_version=4)
    student = nbformat.read(edition / path.name, as_version=4)
    text = "\n".join(c.source for c in student.cells)
    assert not SOLUTION_TAG.search(text), "a solution is left in the student edition"
    by_id = {c.id: c for c in student.cells}
    solutions = 0
    for cell in original.cells:
        found = SOLUTION_TAG.findall(cell.source) if cell.cell_type == "markdown" else []
        solutions += len(found)
        if not found:  # every other cell is kept exactly: source, tags, id
            assert cell.id in by_id and _cell(by_id[cell.id]) == _cell(cell), f"cell {cell.id} changed"
        elif cell.id in by_id:  # a cell with text besides its solution keeps that text
            assert by_id[cell.id].source in student_edition.SOLUTION.sub("", cell.source)
    assert solutions >= 2, "the lessons have at least two exercises with solutions"
    code = [_cell(c) for c in original.cells if c.cell_type == "code"]
    assert [_cell(c) for c in student.cells if c.cell_type == "code"] == code, "code cells differ"
    assert student.metadata == original.metadata


def _exercise_checks(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    """The code cells that call the exercise checks inside an "### Exercise" section."""
    checks, in_exercise = [], False
    for cell in nb.cells:
        if cell.cell_type == "markdown" and (headings := re.findall(r"^#{1,3} .*$", cell.source, re.M)):
            in_exercise = headings[-1].startswith("### Exercise")
        elif cell.cell_type == "code" and in_exercise and "checks.check_" in cell.source:
            checks.append(cell)
    return checks


def _text(cell: nbformat.NotebookNode) -> str:
    parts = []
    for output in cell.get("outputs", []):
        parts.append("".join(output.get("text", "")))
        parts.append("".join(output.get("data", {}).get("text/plain", "")))
    return "".join(parts)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_student_edition_runs_top_to_bottom_in_smoke_mode(path, edition, request):
    nb, seconds, cached = notebook_cache.execute(edition / path.name, "smoke", cwd=edition)
    how = "reused the cached run of the same code cells" if cached else "ran"
    _report(request.config, f"student edition {path.stem}: {how} ({seconds:.0f} s)")
    errors = [
        (i, o.get("ename"))
        for i, cell in enumerate(nb.cells)
        for o in cell.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors, f"cells raised: {errors}"
    checks = _exercise_checks(nb)
    assert len(checks) >= 2, "every lesson has at least two checked exercises"
    for cell in checks:  # unanswered: each check prints its ❌ line and does not raise
        assert "❌" in _text(cell), f"the check {cell.source[:60]!r} printed no ❌ line: {_text(cell)!r}"
