#!/usr/bin/env python3
"""What grading a class costs: ``python3 course.py grade`` on a class of generated submissions of one lesson.

The class is a third solved, a third partly solved and a third blank (as ``tests/support/submissions.py`` writes
them). Prints the wall time of the whole grading, per submission, and, as a ratio from the same run, against one
plain smoke-mode execution of the same notebook in a fresh kernel (what nbgrader adds: its start, the gradebook, the
hidden tests, the feedback page).

Usage: python benchmarks/bench_grading.py [--lesson 01] [--students 30] [--jobs 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tools"), str(ROOT / "tests")]
import classroom  # noqa: E402
from support.submissions import class_of_submissions  # noqa: E402


def plain_run_seconds(path: Path, cwd: Path) -> float:
    """One smoke-mode execution of the notebook in a fresh kernel, nothing else."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=900, resources={"metadata": {"path": str(cwd)}}, allow_errors=True).execute()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lesson", default="01")
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args(argv)
    os.environ["COURSE_SMOKE"] = "1"
    lesson = classroom.lessons()[args.lesson]
    print(
        f"== grading {args.students} submission(s) of {lesson.name}, {args.jobs} at a time, smoke mode",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        course = classroom.make_course(tmp / "course", [args.lesson])
        kinds = class_of_submissions(lesson, course / "release" / lesson.stem / lesson.name, lesson)
        mix = ["solved", "partly_solved", "blank"]
        (tmp / "class").mkdir()
        for i in range(args.students):
            nbformat.write(kinds[mix[i % 3]], tmp / "class" / f"student{i:02d}.ipynb")
        plain = plain_run_seconds(course / "release" / lesson.stem / lesson.name, tmp / "course")
        start = time.perf_counter()
        results = classroom.grade(tmp / "class", args.lesson, tmp / "grades", jobs=args.jobs)
        total = time.perf_counter() - start
    graded = sum(r.status == "graded" for r in results)
    per = total / max(1, len(results))
    print(
        f"\nlesson {lesson.stem}, {len(results)} submissions ({graded} graded), {args.jobs} at a time, smoke mode"
    )
    print(f"{'grading, in all':<40}{total:8.0f} s")
    print(f"{'per submission':<40}{per:8.1f} s")
    print(f"{'one plain run of the notebook':<40}{plain:8.1f} s")
    print(f"{'per submission / plain run':<40}{per / plain:8.2f} x")
    return 0 if graded == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
