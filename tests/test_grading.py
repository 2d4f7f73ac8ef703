"""Grading a class (``python3 course.py grade``, ``tools/classroom.py``): a class of generated submissions of one
lesson, solved, blank, partly solved, broken and hostile, graded by nbgrader, each in a fresh kernel of its own.

Every row must say what the submission is, and no submission may stop the grading of the others or change their
results (the solved one is graded beside the hostile ones and must keep its full score).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import nbformat
import pytest
from support.submissions import class_of_submissions

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import classroom  # noqa: E402

LESSON = "01"  # the quickest lesson to run; the grading does not depend on which lesson it is


def test_submissions_are_found_as_an_lms_or_nbgrader_hands_them_over(tmp_path):
    (tmp_path / "ada.ipynb").write_text("{}")
    (tmp_path / "bo" / "01_convolution_basics" / ".ipynb_checkpoints").mkdir(parents=True)
    (tmp_path / "bo" / "01_convolution_basics" / "mine.ipynb").write_text("{}")
    (tmp_path / "bo" / "01_convolution_basics" / ".ipynb_checkpoints" / "mine-checkpoint.ipynb").write_text(
        "{}"
    )
    (tmp_path / "cy").mkdir()
    found = [(s, p.name) for s, p in classroom.find_submissions(tmp_path)]
    assert found == [("ada", "ada.ipynb"), ("bo", "mine.ipynb"), ("cy", "cy")]


def test_answers_that_reach_into_the_checks_are_flagged():
    released = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import sys  # the lesson's own")])
    honest = nbformat.v4.new_notebook(
        cells=[*released.cells, nbformat.v4.new_code_cell("x = checks_done == 3")]
    )
    assert classroom._tampering(honest, released) == ""
    for line in (
        "checks.grade = print",
        "setattr(checks, 'grade', print)",
        "sys.modules['x'] = None",
        "sys.setprofile(None)",
        "frame = error.__traceback__.tb_frame.f_back",
    ):
        cheat = nbformat.v4.new_notebook(cells=[*released.cells, nbformat.v4.new_code_cell(line)])
        assert classroom._tampering(cheat, released) == line


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    tmp = tmp_path_factory.mktemp("grading")
    lesson = classroom.lessons()[LESSON]
    course = classroom.make_course(tmp / "course", [LESSON])
    released = course / "release" / lesson.stem / lesson.name
    other = classroom.lessons()["02"]
    submissions = tmp / "submissions"
    submissions.mkdir()
    for student, nb in class_of_submissions(lesson, released, other).items():
        nbformat.write(nb, submissions / f"{student}.ipynb")
    out = tmp / "grades"
    classroom.grade(submissions, LESSON, out, cell_timeout=60, notebook_timeout=420, jobs=2)
    with open(out / "grades.csv", encoding="utf-8") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    rows["_out"] = {"folder": str(out)}
    return rows


def _exercises(row: dict[str, str]) -> list[str]:
    return [k for k in row if k.startswith(f"{LESSON}-e") and not k.endswith("feedback")]


def test_a_solved_notebook_gets_every_point_and_a_tick_per_exercise(graded):
    row = graded["solved"]
    assert row["status"] == "graded" and float(row["score"]) == float(row["max_score"]) > 0, row
    assert all(row[f"{e} feedback"].startswith("✅") for e in _exercises(row)), row
    assert (
        Path(graded["_out"]["folder"]) / "feedback" / "solved" / f"{classroom.lessons()[LESSON].stem}.html"
    ).is_file()


def test_a_blank_notebook_gets_nothing_and_a_hint_per_exercise(graded):
    row = graded["blank"]
    assert row["status"] == "graded" and float(row["score"]) == 0, row
    assert all(row[f"{e} feedback"].startswith("❌") for e in _exercises(row)), row


def test_a_partly_solved_notebook_gets_the_points_of_what_it_solved(graded):
    row = graded["partly_solved"]
    scores = [float(row[e]) for e in _exercises(row)]
    assert scores[0] > 0 and scores[-1] == 0 and 0 < float(row["score"]) < float(row["max_score"]), row


def test_broken_cells_cost_only_their_own_exercise(graded):
    for student in ("import_error", "endless_loop"):
        row = graded[student]
        exercises = _exercises(row)
        assert row["status"] == "graded", row
        assert float(row[exercises[0]]) == 0 and all(float(row[e]) > 0 for e in exercises[1:]), row
    assert "time limit" in graded["endless_loop"]["notes"]


def test_deleted_or_renamed_check_cells_are_put_back_and_reported(graded):
    for student in ("deleted_check_cell", "renamed_check_cell"):
        row = graded[student]
        assert row["status"] == "graded" and float(row["score"]) == float(row["max_score"]), row
        assert "put back by nbgrader" in row["notes"], row


def test_hostile_notebooks_are_reported_and_score_nothing_they_did_not_earn(graded):
    assert float(graded["tampered_checks"]["score"]) == 0, "the locked checks are restored from the gradebook"
    assert (
        float(graded["disables_grading"]["score"]) == 0
        and "reach into the checks" in graded["disables_grading"]["notes"]
    )
    assert "deleted files in its working folder" in graded["deletes_working_folder"]["notes"]
    assert graded["deletes_course_folder"]["status"].startswith("failed"), graded["deletes_course_folder"]
    assert "deleted" in graded["deletes_course_folder"]["notes"] + graded["deletes_course_folder"]["status"]
    assert graded["other_lesson"]["status"].startswith("not graded: this is lesson 02's notebook")


def test_every_submission_has_a_row(graded):
    assert set(graded) - {"_out"} == {
        "solved", "blank", "partly_solved", "import_error", "endless_loop", "deleted_check_cell",
        "renamed_check_cell", "tampered_checks", "other_lesson", "deletes_working_folder", "deletes_course_folder",
        "disables_grading",
    }  # fmt: skip
