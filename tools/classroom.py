#!/usr/bin/env python3
"""The classroom, done by nbgrader: the student edition, and grading a class's submitted notebooks.

The notebooks in ``notebooks/`` are the teacher's edition and the single source. Their exercise cells carry
nbgrader's cell metadata (answer cells with ``### BEGIN SOLUTION`` regions, locked check cells with
``### BEGIN HIDDEN TESTS`` regions; see ``course_machinery/checks/EXERCISES.md``), so nbgrader 0.9.6 does the work:

- ``student``: ``nbgrader generate_assignment`` for every lesson (solutions replaced by ``# YOUR CODE HERE``,
  hidden tests removed, outputs cleared), then what nbgrader does not know about this course: the launch badges
  are pointed at the repository that holds the student edition (``--colab-repo``) or dropped, and the course's
  own exercise metadata (which lists the give-away strings for the leak test) is removed.
- ``grade SUBMISSIONS --lesson NN``: ``nbgrader autograde`` and ``nbgrader generate_feedback`` for each submitted
  notebook, each in a course folder of its own (a submission that deletes files can only delete its own), with a
  time limit per cell and per notebook; the hidden tests are put back from nbgrader's gradebook, deleted check
  cells are restored, and broken cells do not stop the run. Writes ``grades.csv`` (one row per submission, a score
  and the check's feedback line per exercise, and what went wrong) and ``feedback/<student>/<lesson>.html``.

What nbgrader lacks, and is written here: finding each student's notebook in a folder of files as an LMS hands
them over, telling a notebook of another lesson from the right one, a time limit for a whole notebook (nbgrader
has one per cell), and the per-exercise table with feedback lines (nbgrader's gradebook has scores only).

Usage:
    python tools/classroom.py student [--out DIR] [--zip] [--colab-repo OWNER/NAME --ref REF]
    python tools/classroom.py config       (the nbgrader_config.py for a course folder on a JupyterHub)
    python tools/classroom.py table [--check]   (the table of exercises in docs/teaching.md)
    python tools/classroom.py grade SUBMISSIONS --lesson NN [--out DIR] [--cell-timeout S] [--notebook-timeout S]
                                    [--jobs N] [--full]

SUBMISSIONS holds one entry per student: ``<student>.ipynb``, or a folder ``<student>/`` with the notebook
anywhere inside it (nbgrader's ``submitted/<student>/<assignment>/`` layout works as it is).
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
import course_address  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
CONFIG = """\
c = get_config()  # noqa: F821
c.CourseDirectory.course_id = "cnn-course"
# Student edition: a solution becomes a comment and `...`, so "Run all" completes and each check prints its hint.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\\n..."}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
# Grading: a deleted or renamed check cell is put back (and scored) instead of failing the notebook.
c.OverwriteCells.add_missing_cells = True
c.Execute.timeout = %(cell_timeout)d
c.Execute.allow_errors = True
"""
STUDENT_README = """# {title}: student edition

These are the course's notebooks with the exercises left for you: each exercise has a cell marked
`# YOUR CODE HERE` for your answer, and a check cell below it that tells you whether your answer works (✅) or
gives a hint (❌) without giving the answer away. The checks try your code on inputs you did not choose, so make
it work in general, not only for the example in the notebook.

Open the notebooks in order, starting with `notebooks/{first}`. They need the course's helper package; your
teacher says how it is installed where you work (on Colab, each notebook's set-up cell installs it).
"""


def lessons() -> dict[str, Path]:
    """The lessons by number: {"01": notebooks/01_convolution_basics.ipynb, ...}."""
    return {p.name[:2]: p for p in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))}


def grade_ids(nb: nbformat.NotebookNode) -> list[str]:
    """The nbgrader ids of a notebook's cells, in order."""
    return [
        c.metadata["nbgrader"]["grade_id"] for c in nb.cells if "grade_id" in c.metadata.get("nbgrader", {})
    ]


def nbgrader(
    course: Path, *args: str, timeout: float | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``nbgrader ARGS`` in the course folder ``course``; on timeout, stop it and every process it started."""
    import psutil

    process = subprocess.Popen(
        [sys.executable, "-m", "nbgrader", *args],
        cwd=course,
        # nbgrader runs `alembic` (its database migrations) from PATH: the one beside this Python.
        env={
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            **(env or {}),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # The kernel runs in a session of its own (jupyter_client starts it so): stop the whole tree.
        family = psutil.Process(process.pid).children(recursive=True)
        for p in [psutil.Process(process.pid), *family]:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        out, _ = process.communicate()
        raise subprocess.TimeoutExpired(process.args, timeout or 0, output=out) from None
    return subprocess.CompletedProcess(process.args, process.returncode, out, None)


def make_course(folder: Path, lesson_numbers: list[str], *, cell_timeout: int = 300) -> Path:
    """An nbgrader course folder with the given lessons released (``source/``, ``release/``, ``gradebook.db``)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "nbgrader_config.py").write_text(CONFIG % {"cell_timeout": cell_timeout})
    for number in lesson_numbers:
        path = lessons()[number]
        (folder / "source" / path.stem).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / "source" / path.stem / path.name)
        result = nbgrader(folder, "generate_assignment", path.stem, "--force")
        released = folder / "release" / path.stem / path.name
        if result.returncode != 0 or not released.exists():
            raise SystemExit(f"nbgrader could not release {path.name}:\n{result.stdout[-3000:]}")
    return folder


# ----------------------------------------------------------------------------------------- the table of exercises

GUIDE = ROOT / "docs" / "teaching.md"
TABLE = re.compile(r"(<!-- exercises: start -->\n).*?(<!-- exercises: end -->)", re.DOTALL)
KINDS = ("build", "fix", "predict", "compute", "explore")


def exercises(path: Path) -> list[dict]:
    """A lesson's exercises, from its check cells' metadata: id, title, kind, points and what the check tries."""
    found = []
    for cell in nbformat.read(path, as_version=4).cells:
        exercise = cell.metadata.get("course", {}).get("exercise")
        if exercise is not None:
            found.append({**exercise, "points": cell.metadata.get("nbgrader", {}).get("points", 0)})
    return found


def exercise_table() -> str:
    """The teacher's guide's table of every exercise, written from the notebooks (never by hand)."""
    rows = ["| lesson | exercise | kind | points | what its check tries |", "|---|---|---|---|---|"]
    for number, path in lessons().items():
        for e in exercises(path):
            title = e.get("title", "").replace("|", "\\|")
            tries = e.get("tries", "").replace("|", "\\|")
            rows.append(
                f"| {number} | {e['id'].split('-')[1][1:]}. {title} | {e['kind']} | {e['points']:g} | {tries} |"
            )
    return "\n".join(rows) + "\n"


def update_table(write: bool) -> bool:
    """Bring the table in docs/teaching.md up to date (``write``) or only say whether it is; True if it was."""
    text = GUIDE.read_text(encoding="utf-8")
    if not TABLE.search(text):
        raise SystemExit(f"{GUIDE} has no '<!-- exercises: start -->' ... '<!-- exercises: end -->' block")
    new = TABLE.sub(lambda m: m.group(1) + exercise_table() + m.group(2), text)
    if write and new != text:
        GUIDE.write_text(new, encoding="utf-8")
    return new == text


# ----------------------------------------------------------------------------------------------- student edition


def student_notebook(released: Path, *, colab_repo: str | None, ref: str | None) -> nbformat.NotebookNode:
    """nbgrader's released notebook with the course's own additions: badges and exercise metadata."""
    nb = nbformat.read(released, as_version=4)
    lines = nb.cells[0].source.split("\n")
    if colab_repo and ref:
        lines = [
            course_address.badge_line(released.name, colab_repo, ref)
            if course_address.MARKER in line
            else line
            for line in lines
        ]
    else:  # the teacher's badges would open the teacher's edition, solutions and all
        lines = [line for line in lines if course_address.MARKER not in line]
    nb.cells[0].source = "\n".join(lines)
    for cell in nb.cells:
        cell.metadata.get("course", {}).pop("exercise", None)  # lists the answer's give-away strings
        if cell.metadata.get("course") == {}:
            del cell.metadata["course"]
    return nb


def write_student_edition(
    out: Path, *, make_zip: bool = False, colab_repo: str | None = None, ref: str | None = None
) -> list[Path]:
    """Write the student edition of every lesson into ``out/notebooks``; return the notebooks written."""
    out = out.resolve()
    if out == NOTEBOOKS or NOTEBOOKS in out.parents:
        raise SystemExit(f"the student edition cannot go inside notebooks/ ({out}); choose another folder")
    if colab_repo and not ref:
        raise SystemExit("--colab-repo needs --ref (the branch or tag that holds the student notebooks)")
    folder = out / "notebooks"
    if folder.exists():
        shutil.rmtree(folder)  # a notebook deleted from the course must not linger here
    folder.mkdir(parents=True)
    written = []
    with tempfile.TemporaryDirectory(prefix="nbgrader-") as tmp:
        course = make_course(Path(tmp), list(lessons()))
        for path in lessons().values():
            nb = student_notebook(course / "release" / path.stem / path.name, colab_repo=colab_repo, ref=ref)
            nbformat.validate(nb)
            nbformat.write(nb, folder / path.name)
            written.append(folder / path.name)
    title = (ROOT / "README.md").read_text().splitlines()[0].lstrip("# ").strip()
    (out / "README.md").write_text(STUDENT_README.format(title=title, first=written[0].name))
    if make_zip:
        print(f"zip: {shutil.make_archive(str(out), 'zip', root_dir=out.parent, base_dir=out.name)}")
    return written


# --------------------------------------------------------------------------------------------------------- grading


@dataclass
class Result:
    """One submitted notebook, graded."""

    student: str
    file: str
    status: str = "graded"  # graded | not graded: ... | stopped: ... | failed: ...
    score: float = 0.0
    max_score: float = 0.0
    exercises: dict[str, tuple[float, str]] = field(default_factory=dict)  # id -> (score, feedback line)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def find_submissions(folder: Path) -> list[tuple[str, Path]]:
    """(student, notebook) for each notebook in ``folder``: ``<student>.ipynb`` or ``<student>/**/*.ipynb``."""
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.is_file() and entry.suffix == ".ipynb":
            found.append((entry.stem, entry))
        elif entry.is_dir():
            notebooks = [p for p in sorted(entry.rglob("*.ipynb")) if ".ipynb_checkpoints" not in p.parts]
            found.extend((entry.name, p) for p in notebooks)
            if not notebooks:
                found.append((entry.name, entry))  # reported: nothing to grade
    return found


def _student_id(name: str) -> str:
    """nbgrader needs a plain student id (a folder name); keep letters, digits, '-', '_' and '.'."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "student"


def _feedback_lines(nb: nbformat.NotebookNode) -> dict[str, str]:
    """The last ✅/❌ line or error each check cell of an autograded notebook showed, by grade id."""
    lines = {}
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id", "")
        if cell.cell_type != "code" or not cell.metadata.get("nbgrader", {}).get("grade"):
            continue
        line = ""
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                evalue = str(output.get("evalue", "")).strip().splitlines()
                line = f"{output.get('ename')}: {evalue[-1] if evalue else ''}".strip()
                if output.get("ename") == "AssertionError" and evalue:
                    line = evalue[-1]  # a hidden test's message is the check's one line of feedback
            elif output.get("output_type") == "stream":
                marked = [t for t in output.get("text", "").splitlines() if t.startswith(("✅", "❌"))]
                if marked and not line.startswith(("❌", "AssertionError")):
                    line = marked[-1]
        lines[gid] = line
    return lines


# What an answer has no reason to do: change the checks (or what they rely on) instead of answering, ...
_TAMPERING = re.compile(
    r"(?:checks|_feedback|course_machinery)[\w.]*\.\w+\s*=(?!=)|\bsetattr\s*\(|\bsys\.modules\b|\bbuiltins\b"
    r"|__import__|\bimportlib\b"
    # ... or inspect the running check, or switch off its watching of what the answer calls
    r"|\bsetprofile\b|\bsettrace\b|\b_getframe\b|\bf_back\b|\bf_locals\b|\btb_frame\b|__traceback__"
    r"|DisableTorchFunction|\bgc\.get_|\bFunctionType\b|__code__|\bIn\s*[.\[]|\b_ih\b"  # In: the input history
)


def _tampering(nb: nbformat.NotebookNode, released: nbformat.NotebookNode) -> str:
    """The first line the learner wrote (in an answer cell or a cell of their own) that changes the checks'
    machinery ('' when there is none); the lesson's own cells, as released, are not the learner's."""
    given = {cell.source for cell in released.cells}
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source not in given:
            for line in cell.source.splitlines():
                if _TAMPERING.search(line):
                    return line.strip()[:80]
    return ""


SENTINEL = "grading-sentinel.txt"


def _files(folder: Path) -> set[str]:
    return (
        {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()
    )


def grade_one(
    student: str,
    path: Path,
    lesson: Path,
    course: Path,
    out: Path,
    *,
    notebook_timeout: float,
    env: dict[str, str],
) -> Result:
    """Grade one submission in a copy of the released course of its own."""
    result = Result(student, path.name)
    start = time.perf_counter()
    try:
        submitted = nbformat.read(path, as_version=4)
    except Exception as exc:  # not JSON, not a notebook, a folder without one
        result.status = f"not graded: not a readable notebook ({type(exc).__name__})"
        return result
    released = nbformat.read(course / "release" / lesson.stem / lesson.name, as_version=4)
    expected = grade_ids(released)
    found = grade_ids(submitted)
    others = {gid[:2] for gid in found if gid[:2].isdigit() and gid[:2] != lesson.name[:2]}
    if others and not set(found) & set(expected):
        result.status = f"not graded: this is lesson {', '.join(sorted(others))}'s notebook, not lesson {lesson.name[:2]}'s"
        return result
    tampering = _tampering(submitted, released)
    if tampering:
        result.notes.append(
            f"answer cells reach into the checks ({tampering}): score set to 0, read it by hand"
        )
    missing = [gid for gid in expected if gid not in found]
    if missing:
        result.notes.append(f"cells deleted or renamed, put back by nbgrader: {', '.join(missing)}")
    for (
        cell
    ) in submitted.cells:  # a renamed exercise cell becomes the learner's own; nbgrader restores the original
        if cell.metadata.get("nbgrader", {}).get("grade_id") not in (None, *expected):
            del cell.metadata["nbgrader"]
    sid = _student_id(student)
    with tempfile.TemporaryDirectory(prefix=f"grade-{sid}-") as tmp:
        work = Path(tmp)
        for name in ("nbgrader_config.py", "gradebook.db"):
            shutil.copy(course / name, work / name)
        shutil.copytree(course / "source" / lesson.stem, work / "source" / lesson.stem)
        target = work / "submitted" / sid / lesson.stem
        target.mkdir(parents=True)
        nbformat.write(submitted, target / lesson.name)
        # nbgrader copies the submission's folder into the one the kernel runs in; a file of ours there tells
        # whether the notebook deleted what it found in its working folder.
        (target / SENTINEL).write_text(
            "Left here by the grading; a submission that deletes it is reported.\n"
        )
        before = _files(work / "submitted") | {"nbgrader_config.py", "gradebook.db"}
        try:
            run = nbgrader(
                work, "autograde", lesson.stem, "--student", sid, "--force", timeout=notebook_timeout, env=env
            )
        except subprocess.TimeoutExpired:
            result.status = f"stopped: the notebook ran over its {notebook_timeout:.0f} s limit"
            result.seconds = time.perf_counter() - start
            return result
        gone = sorted(f for f in before if not (work / f).exists() and not (work / "submitted" / f).exists())
        if gone:
            result.notes.append(f"deleted files in its working folder: {', '.join(gone[:5])}")
        graded = work / "autograded" / sid / lesson.stem / lesson.name
        if graded.parent.exists() and not (graded.parent / SENTINEL).exists():
            result.notes.append("deleted files in its working folder")
        from nbgrader.api import Gradebook, MissingEntry

        errors = [line.strip() for line in run.stdout.splitlines() if "ERROR" in line or "Error:" in line]
        scores = None
        if graded.exists() and (work / "gradebook.db").exists():
            try:
                with Gradebook(f"sqlite:///{work / 'gradebook.db'}") as gradebook:
                    submission = gradebook.find_submission_notebook(lesson.stem, lesson.stem, sid)
                    scores = {g.name: (g.score, g.max_score) for g in submission.grades}
            except MissingEntry:
                scores = None
        if scores is None:
            why = (
                "it deleted the files nbgrader grades with"
                if gone
                else (errors[:1] or ["no graded notebook"])[0]
            )
            result.status = f"failed: nbgrader could not grade it ({why[:200]})"
            result.seconds = time.perf_counter() - start
            return result
        if "Timeout waiting for execute reply" in run.stdout:
            result.notes.append("a cell ran over the time limit per cell and was interrupted")
        elif run.returncode != 0:
            result.notes.append(f"nbgrader reported: {(errors[:1] or ['an error'])[0][:200]}")
        lines = _feedback_lines(nbformat.read(graded, as_version=4))
        for gid in expected:
            if gid.endswith("-check"):
                score, top = scores.get(gid, (0.0, 0.0))
                result.exercises[gid.removesuffix("-check")] = (score, lines.get(gid, ""))
                result.score += score
                result.max_score += top
        if tampering:
            result.score = 0.0
        nbgrader(work, "generate_feedback", lesson.stem, "--student", sid, "--force", timeout=300)
        html = work / "feedback" / sid / lesson.stem / f"{lesson.stem}.html"
        if html.exists():
            (out / "feedback" / sid).mkdir(parents=True, exist_ok=True)
            shutil.copy(html, out / "feedback" / sid / f"{lesson.stem}.html")
    result.seconds = time.perf_counter() - start
    return result


def grade(
    submissions: Path,
    lesson_number: str,
    out: Path,
    *,
    cell_timeout: int = 120,
    notebook_timeout: int = 900,
    jobs: int = 1,
    smoke: bool = True,
) -> list[Result]:
    """Grade every submission of one lesson; write ``out/grades.csv`` and ``out/feedback/``; return the results."""
    if lesson_number not in lessons():
        raise SystemExit(f"--lesson {lesson_number}: no such lesson (expected one of {', '.join(lessons())})")
    if not submissions.is_dir():
        raise SystemExit(
            f"{submissions} is not a folder of submissions (one <student>.ipynb or <student>/ each)"
        )
    lesson = lessons()[lesson_number]
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    # The kernels nbgrader starts inherit this environment: smoke mode grades on small data subsets, which is
    # all a check needs (it chooses its own inputs), and keeps a class's grading to minutes.
    env = {"COURSE_SMOKE": "1" if smoke else "0"}
    with tempfile.TemporaryDirectory(prefix="nbgrader-course-") as tmp:
        course = make_course(Path(tmp), [lesson_number], cell_timeout=cell_timeout)
        found = find_submissions(submissions)
        print(f"grading {len(found)} submission(s) of {lesson.name} ({jobs} at a time)", flush=True)

        def one(item: tuple[str, Path]) -> Result:
            student, path = item
            try:
                r = grade_one(student, path, lesson, course, out, notebook_timeout=notebook_timeout, env=env)
            except Exception as exc:  # one submission's trouble never stops the grading of the others
                r = Result(student, path.name, status=f"failed: {type(exc).__name__}: {exc}"[:300])
            print(f"  {student:<20} {r.score:g}/{r.max_score:g}  {r.status}  ({r.seconds:.0f} s)", flush=True)
            return r

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            results = list(pool.map(one, found))
        ids = [
            gid.removesuffix("-check")
            for gid in grade_ids(nbformat.read(course / "release" / lesson.stem / lesson.name, as_version=4))
            if gid.endswith("-check")
        ]
    with open(out / "grades.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                "student",
                "file",
                "status",
                "score",
                "max_score",
                *[c for i in ids for c in (i, f"{i} feedback")],
                "notes",
            ]
        )
        for r in results:
            cells = [
                c for i in ids for c in (r.exercises.get(i, (0.0, ""))[0], r.exercises.get(i, (0.0, ""))[1])
            ]
            writer.writerow([r.student, r.file, r.status, r.score, r.max_score, *cells, "; ".join(r.notes)])
    print(f"grades: {out / 'grades.csv'}; feedback to hand back: {out / 'feedback'}")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    student = sub.add_parser("student", help="write the student edition")
    student.add_argument(
        "--out", type=Path, default=ROOT / "build" / "student", help="default: build/student"
    )
    student.add_argument("--zip", action="store_true", help="also write the folder as a .zip beside it")
    student.add_argument(
        "--colab-repo", help="OWNER/NAME on GitHub that holds the student edition, for the badges"
    )
    student.add_argument("--ref", help="branch or tag of --colab-repo")
    sub.add_parser(
        "config", help="print the nbgrader_config.py the course needs (for a JupyterHub course folder)"
    )
    table = sub.add_parser("table", help="write the table of exercises into docs/teaching.md")
    table.add_argument(
        "--check", action="store_true", help="only say whether it is up to date (exit 1 if not)"
    )
    marks = sub.add_parser("grade", help="grade a folder of submitted notebooks of one lesson")
    marks.add_argument("submissions", type=Path)
    marks.add_argument("--lesson", required=True, help="the lesson's number, e.g. 02")
    marks.add_argument("--out", type=Path, default=ROOT / "build" / "grades", help="default: build/grades")
    marks.add_argument("--cell-timeout", type=int, default=120, help="seconds per cell (default 120)")
    marks.add_argument("--notebook-timeout", type=int, default=900, help="seconds per notebook (default 900)")
    marks.add_argument("--jobs", type=int, default=1, help="submissions graded at once (default 1)")
    marks.add_argument("--full", action="store_true", help="run the notebooks in full mode, not smoke mode")
    args = parser.parse_args(argv)
    if args.command == "config":
        print(CONFIG % {"cell_timeout": 120}, end="")
        return 0
    if args.command == "table":
        current = update_table(write=not args.check)
        if args.check and not current:
            print(
                "docs/teaching.md: the table of exercises is out of date; run python tools/classroom.py table"
            )
            return 1
        return 0
    if args.command == "student":
        written = write_student_edition(args.out, make_zip=args.zip, colab_repo=args.colab_repo, ref=args.ref)
        print(f"student edition of {len(written)} notebooks: {args.out.resolve() / 'notebooks'}")
        return 0
    results = grade(
        args.submissions,
        args.lesson.zfill(2),
        args.out,
        cell_timeout=args.cell_timeout,
        notebook_timeout=args.notebook_timeout,
        jobs=args.jobs,
        smoke=not args.full,
    )
    ungraded = sum(r.status != "graded" for r in results)
    print(f"{len(results) - ungraded} graded, {ungraded} reported in their rows as not graded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
