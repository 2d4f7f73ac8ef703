"""Generated submissions of one lesson, as a class would hand them in: solved, blank, partly solved, broken and
hostile. Used by the grading test and the grading benchmark (never shipped to learners)."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import nbformat

_SOLUTION = re.compile(
    r"^[ \t]*### BEGIN SOLUTION\n(.*?)^[ \t]*### END SOLUTION\n?", re.DOTALL | re.MULTILINE
)
_HIDDEN = re.compile(
    r"^[ \t]*### BEGIN HIDDEN TESTS\n.*?^[ \t]*### END HIDDEN TESTS\n?", re.DOTALL | re.MULTILINE
)


def _nbgrader(cell: nbformat.NotebookNode) -> dict:
    return cell.metadata.get("nbgrader", {})


def answer_ids(nb: nbformat.NotebookNode) -> list[str]:
    """The grade ids of the answer cells, in order."""
    return [_nbgrader(c)["grade_id"] for c in nb.cells if _nbgrader(c).get("solution")]


def solved(teacher: nbformat.NotebookNode, released: nbformat.NotebookNode, ids: set[str] | None = None):
    """The released notebook with the teacher's solutions typed into the answer cells ``ids`` (all by default), as a
    learner who solved them would hand it in (the solution's markers gone, the hidden tests absent)."""
    answers = {_nbgrader(c)["grade_id"]: c.source for c in teacher.cells if _nbgrader(c).get("solution")}
    nb = copy.deepcopy(released)
    for cell in nb.cells:
        gid = _nbgrader(cell).get("grade_id")
        if _nbgrader(cell).get("solution") and (ids is None or gid in ids):
            cell.source = _SOLUTION.sub(lambda m: m.group(1), answers[gid])
    return nb


def _edit_first_answer(nb: nbformat.NotebookNode, code: str) -> nbformat.NotebookNode:
    nb = copy.deepcopy(nb)
    first = next(c for c in nb.cells if _nbgrader(c).get("solution"))
    first.source = code + "\n" + first.source
    return nb


def class_of_submissions(
    teacher_path: Path, released_path: Path, other_lesson: Path
) -> dict[str, nbformat.NotebookNode]:
    """One submission of each kind, by student name; each name says what the submission is."""
    teacher = nbformat.read(teacher_path, as_version=4)
    released = nbformat.read(released_path, as_version=4)
    ids = answer_ids(released)
    full = solved(teacher, released)
    deleted = copy.deepcopy(full)
    last_check = [c for c in deleted.cells if _nbgrader(c).get("grade")][-1]
    deleted.cells.remove(last_check)
    renamed = copy.deepcopy(full)
    first_check = next(c for c in renamed.cells if _nbgrader(c).get("grade"))
    first_check.metadata["nbgrader"]["grade_id"] = "my-check"
    tampered = copy.deepcopy(released)
    for cell in tampered.cells:
        if _nbgrader(cell).get("grade"):  # a learner who replaces every check by a success message
            cell.source = "print('✅ Correct!')"
    return {
        "solved": full,
        "blank": copy.deepcopy(released),
        "partly_solved": solved(teacher, released, set(ids[: max(1, len(ids) // 2)])),
        # Broken: an exception where the notebook imports, so nothing after it can work.
        "import_error": _insert_first(full, "import a_module_that_does_not_exist"),
        "endless_loop": _edit_first_answer(full, "while True:\n    pass"),
        "deleted_check_cell": deleted,
        "renamed_check_cell": renamed,
        "tampered_checks": tampered,
        "other_lesson": nbformat.read(other_lesson, as_version=4),
        # Hostile: deletes every file in its working folder, then answers correctly.
        "deletes_working_folder": _edit_first_answer(
            full,
            "import os\nfor _e in os.listdir('.'):\n    os.remove(_e) if os.path.isfile(_e) else None",
        ),
        # Hostile: deletes everything in its working folder and the folders above it, then answers correctly.
        "deletes_course_folder": _edit_first_answer(
            full,
            "import os, shutil\nfor _p in ['.', '..', '../..', '../../..']:\n"
            "    for _e in os.listdir(_p):\n"
            "        _f = os.path.join(_p, _e)\n"
            "        shutil.rmtree(_f, ignore_errors=True) if os.path.isdir(_f) else os.remove(_f)",
        ),
        # Hostile: turns the hidden tests off (monkeypatching the checks), then hands in blank answers.
        "disables_grading": _insert_first(
            released,
            "import sys\nfor _m in list(sys.modules.values()):\n"
            "    if getattr(_m, '__name__', '').startswith('course_machinery'):\n"
            "        _m.grade = lambda *a, **k: None",
        ),
    }


def _insert_first(nb: nbformat.NotebookNode, code: str) -> nbformat.NotebookNode:
    """``nb`` with ``code`` at the top of its first answer cell (where a learner types)."""
    return _edit_first_answer(nb, code)


def without_hidden_tests(source: str) -> str:
    """A check cell's source as the student edition shows it."""
    return _HIDDEN.sub("", source)
