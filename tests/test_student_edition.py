"""The student edition, made by nbgrader from the teacher's notebooks: it leaks nothing, and it runs top to bottom.

The leak test reads every solution region and every hidden test of the teacher's notebooks and the give-away
strings each exercise lists (``course.exercise.must_not_show``), and holds the whole student edition (every cell's
source and metadata) to showing none of them. The run uses the smoke-mode cache of executed notebooks
(``tools/notebook_cache.py``), which matches a notebook by its code cells.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
from test_browser import _report

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import classroom  # noqa: E402
import notebook_cache  # noqa: E402

NOTEBOOKS = notebook_cache.notebooks()
REGION = re.compile(
    r"^[ \t]*### BEGIN (SOLUTION|HIDDEN TESTS)\n(.*?)^[ \t]*### END \1", re.DOTALL | re.MULTILINE
)


def secrets(nb: nbformat.NotebookNode) -> set[str]:
    """The lines of a teacher's notebook that only its solutions and hidden tests hold (stripped, not trivial)."""
    inside, outside = set(), set()
    for cell in nb.cells:
        regions = REGION.findall(cell.source)
        for _, body in regions:
            inside |= {line.strip() for line in body.splitlines()}
        outside |= {line.strip() for line in REGION.sub("", cell.source).splitlines()}
    given = "\n".join(outside)  # a line the lesson shows elsewhere (inside a longer line too) is not a secret
    return {
        line
        for line in inside - outside
        if len(line) >= 4 and line not in {"...", "pass", "else:", "try:"} and line not in given
    }


def give_aways(nb: nbformat.NotebookNode) -> list[str]:
    return [
        s for c in nb.cells for s in c.metadata.get("course", {}).get("exercise", {}).get("must_not_show", [])
    ]


def test_the_edition_cannot_be_written_into_the_lessons_folder():
    with pytest.raises(SystemExit, match="cannot go inside notebooks"):
        classroom.write_student_edition(ROOT / "notebooks" / "student")


def test_badges_open_the_student_repository_or_are_dropped():
    given = classroom.student_notebook(NOTEBOOKS[0], colab_repo="teacher/cnn-student", ref="main")
    assert f"github/teacher/cnn-student/blob/main/notebooks/{NOTEBOOKS[0].name}" in given.cells[0].source
    assert "mybinder.org/v2/gh/teacher/cnn-student/main?urlpath=" in given.cells[0].source
    dropped = classroom.student_notebook(NOTEBOOKS[0], colab_repo=None, ref=None)
    assert "colab.research.google.com/github" not in dropped.cells[0].source
    assert "mybinder.org/v2" not in dropped.cells[0].source


@pytest.fixture(scope="module")
def edition(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("student") / "student"
    written = classroom.write_student_edition(out, make_zip=True)
    assert [p.name for p in written] == [p.name for p in NOTEBOOKS]
    assert (out / "README.md").is_file() and out.with_suffix(".zip").is_file()
    return out / "notebooks"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_student_edition_leaks_no_solution_no_hidden_test_and_no_answer(path, edition):
    teacher = nbformat.read(path, as_version=4)
    student = nbformat.read(edition / path.name, as_version=4)
    text = json.dumps(student, ensure_ascii=False, indent=1)  # every source and every piece of metadata
    lines = {line.strip() for cell in student.cells for line in cell.source.splitlines()}
    hidden = secrets(teacher)
    assert hidden, "the lesson has no solution to keep out of the student edition"
    leaked = sorted(
        line for line in hidden if line in lines or (len(line) >= 25 and json.dumps(line)[1:-1] in text)
    )
    assert not leaked, f"solution or hidden-test lines in the student edition: {leaked[:5]}"
    shown = [s for s in give_aways(teacher) if s in "\n".join(c.source for c in student.cells) or s in text]
    assert not shown, f"answers the exercises' metadata says must not show: {shown}"
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS", "<summary>Solution", '"exercise"'):
        assert marker not in text, f"{marker!r} in the student edition"
    answers = [c for c in student.cells if c.metadata.get("nbgrader", {}).get("solution")]
    assert answers and all("# YOUR CODE HERE" in c.source for c in answers), "an answer cell ships filled in"
    assert not any(c.get("outputs") for c in student.cells if c.cell_type == "code"), "outputs ship"


def test_the_leak_test_finds_a_leak():
    """The leak test is not vacuous: a solution line or a give-away left in a cell is found."""
    teacher = nbformat.read(NOTEBOOKS[0], as_version=4)
    line = sorted(secrets(teacher))[0]
    assert line in {ln.strip() for c in teacher.cells for ln in c.source.splitlines()}
    assert give_aways(teacher), "lesson 01 lists what its answers look like"


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
    checks = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert len(checks) >= 4, "every lesson has at least four checked exercises"
    for cell in checks:  # unanswered: each check prints its ❌ line and does not raise
        assert "❌" in _text(cell), f"the check {cell.source[:60]!r} printed no ❌ line: {_text(cell)!r}"
