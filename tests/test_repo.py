"""Repository hygiene: clean notebooks that follow the course's structure, lint, and consistent environments."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import urllib.parse
import zipfile
from pathlib import Path

import nbformat
import pytest
import yaml
from support import missing_error_line, shown_error

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[;]", requirement.strip(), maxsplit=1)[0].lower()


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 4


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; run python tools/strip_outputs.py"


# Tags through which only some front ends let "Run all" go past a failing cell (JupyterLab, nbval, nbclient);
# Colab and VS Code ignore them and stop at the first error.
FRONT_END_ONLY_TAGS = {"raises-exception", "skip-execution"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_cell_relies_on_a_front_end_to_go_past_an_error(path):
    nb = nbformat.read(path, as_version=4)
    tagged = [
        (i, sorted(FRONT_END_ONLY_TAGS & set(c.metadata.get("tags", [])))) for i, c in enumerate(nb.cells)
    ]
    assert not [t for t in tagged if t[1]], (
        f"cells relying on a front end's tag: {[t for t in tagged if t[1]]}"
    )
    for cell in nb.cells:
        shown_error(cell)  # a shows-error cell catches one named error and prints it (raises otherwise)


def test_intended_errors_are_shown_and_checked():
    shown = [shown_error(c) for p in NOTEBOOKS for c in nbformat.read(p, as_version=4).cells]
    assert len([s for s in shown if s]) >= 10, "the lessons show at least ten errors on purpose"
    bad = {"cell_type": "code", "metadata": {"tags": ["shows-error"]}, "source": "1 / 0"}
    with pytest.raises(ValueError, match="must catch one named error"):
        shown_error(bad)
    with pytest.raises(ValueError, match="must say in metadata"):
        shown_error(
            {
                **bad,
                "source": 'try:\n    1 / 0\nexcept ZeroDivisionError as error:\n    print(f"ZeroDivisionError: {error}")',
            }
        )
    cell = {
        "cell_type": "code",
        "metadata": {"tags": ["shows-error"], "course": {"error_says": "division by zero"}},
        "source": 'try:\n    1 / 0\nexcept ZeroDivisionError as error:\n    print(f"ZeroDivisionError: {error}")',
    }
    assert missing_error_line(cell, "ZeroDivisionError: division by zero\n") is None
    assert "should print the ZeroDivisionError" in missing_error_line(cell, "")
    assert missing_error_line(cell, "ZeroDivisionError: something else\n")  # another failure in the same try


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_follows_the_course_structure(path):
    assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", path.name)
    nb = nbformat.read(path, as_version=4)
    first = nb.cells[0].source
    assert first.startswith(f"# {path.name[:2]} · "), "title '# NN · Title' first"
    for part in ("**Learning objectives**", "**Prerequisites**", "**Time**"):
        assert part in first, f"{path.name}: first cell lacks {part}"
    time_line = first[first.index("**Time**") :].split("\n\n")[0]
    assert re.search(r"full run measured[^)]*?\b\d[\d,]* s\b", time_line, re.S), (
        f"{path.name}: the **Time** line states no measured full run ('full run measured: N s'): {time_line!r}"
    )
    assert re.search(r"Smoke\s+run \(COURSE_SMOKE=1\):\s+\d[\d,]* s\b", time_line), (
        f"{path.name}: the **Time** line states no measured smoke run ('Smoke run (COURSE_SMOKE=1): N s')"
    )
    setup = [c for c in nb.cells if "setup" in c.metadata.get("tags", [])]
    assert len(setup) == 1 and "import course_utils as cu" in setup[0].source
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "## Summary" in markdown and "## Further reading" in markdown
    assert re.search(r"## 1\. ", markdown), "numbered sections"
    assert "<summary>Solution" not in markdown, (
        "solutions live in nbgrader's solution regions, not in <details>"
    )
    assert "import *" not in code and "sys.path" not in code


EXERCISE_TESTS = "\n".join(p.read_text() for p in (ROOT / "tests").glob("test_exercises_*.py"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_exercises_make_learners_build_and_fix_and_are_graded_by_nbgrader(path):
    """At least 4 exercises, at least half build or fix, at least one build; each one an nbgrader answer cell with a
    solution region and a locked check cell with hidden tests, described for the teacher's table, and with a test
    of a cheating attempt (``test_cheat_NN_eK`` in ``tests/test_exercises_NN.py``)."""
    nb = nbformat.read(path, as_version=4)
    lesson = path.name[:2]
    graded = {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells if "nbgrader" in c.metadata}
    found = [c.metadata["course"]["exercise"] for c in nb.cells if "exercise" in c.metadata.get("course", {})]
    kinds = [e["kind"] for e in found]
    assert len(found) >= 4, f"{len(found)} exercises; a lesson has at least 4"
    assert sum(k in ("build", "fix") for k in kinds) * 2 >= len(kinds) and "build" in kinds, kinds
    for k, exercise in enumerate(found, 1):
        eid = f"{lesson}-e{k}"
        assert exercise["id"] == eid, f"exercise {k} is numbered {exercise['id']}"
        assert (
            exercise["kind"] in ("build", "fix", "predict", "compute", "explore")
            and exercise["tries"].strip()
        )
        answer, check = graded.get(f"{eid}-answer"), graded.get(f"{eid}-check")
        assert (
            answer is not None
            and answer.metadata["nbgrader"]["solution"]
            and "### BEGIN SOLUTION" in answer.source
        )
        assert (
            check is not None and check.metadata["nbgrader"]["grade"] and check.metadata["nbgrader"]["locked"]
        )
        assert check.metadata["nbgrader"]["points"] > 0 and "### BEGIN HIDDEN TESTS" in check.source
        assert "lesson-code" not in answer.metadata.get("tags", []), "lesson code would hold the solution"
        assert "hide-input" in answer.metadata.get("tags", []), (
            "the website folds a solution (tag hide-input)"
        )
        assert re.search(rf"def test_cheat_{lesson}_e{k}\b", EXERCISE_TESTS), f"no test_cheat_{lesson}_e{k}"
    assert f"from course_machinery.checks import lesson{lesson} as checks" in "\n".join(
        c.source for c in nb.cells
    )


def test_the_table_of_exercises_in_the_teachers_guide_is_up_to_date():
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "classroom.py"), "table", "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


CODE = [
    "course_utils",
    "course_machinery",
    "tests",
    "notebooks",
    "tools",
    "benchmarks",
    "site",
    "course.py",
    "conftest.py",
]


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff_is_clean(command):
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command, *CODE], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, f"run: ruff {' '.join(command)} (without --check to fix)\n" + result.stdout


def _lock_lines() -> list[str]:
    """The lines of requirements-lock.txt that pin a package."""
    lines = (ROOT / "requirements-lock.txt").read_text().splitlines()
    return [ln for ln in lines if ln and not ln.startswith("#")]


def _pip_section(path: Path) -> list[str]:
    env = yaml.safe_load(path.read_text())
    assert env["dependencies"][:2] == ["python=3.11", "pip"] and "conda-forge" in env["channels"]
    return next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))


def test_conda_and_binder_environments_pin_the_lock_versions():
    """What repo2docker (Binder) and conda read: the lock's versions of everything the notebooks need."""
    result = subprocess.run(
        [sys.executable, "tools/environment_files.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, "stale: run python tools/environment_files.py\n" + result.stdout
    lock = {_name(ln): ln for ln in _lock_lines()}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(d) for d in project["dependencies"] + project["optional-dependencies"]["lab"]}
    binder = _pip_section(ROOT / "binder" / "environment.yml")
    assert {_name(p) for p in binder} == wanted and all(p == lock[_name(p)] for p in binder)
    assert _pip_section(ROOT / "environment.yml") == [*binder, "-e ."]
    # Binder's image layer must not change with each commit: no local file, no package, in its environment...
    assert not [p for p in binder if p.startswith(("-e", "-r", ".", "/"))]
    # ...and the package comes afterwards, without touching the pinned dependencies.
    post_build = ROOT / "binder" / "postBuild"
    assert "pip install --no-cache-dir --no-deps -e ." in post_build.read_text()
    assert post_build.stat().st_mode & 0o111, "binder/postBuild must be executable"
    assert not (ROOT / "binder" / "requirements.txt").exists(), (
        "repo2docker would read it beside environment.yml"
    )


def test_lock_file_pins_every_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = _lock_lines()
    pins = {_name(ln): ln.split("==")[1] for ln in lines}
    assert all("==" in ln for ln in lines)
    assert pins["torch"] == "2.15.0" and pins["torchvision"] == "0.29.2"
    needed = {_name(d) for d in project["dependencies"] + project["optional-dependencies"]["dev"]}
    assert needed <= set(pins), f"unpinned: {needed - set(pins)}"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    command = "python3 course.py test"
    assert f"{command}     #" in readme or f"\n{command}\n" in readme
    ci_lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert ci_lines[-1] == command or command in ci_lines
    # ...then the extended tests, and once more over the notebooks as a newcomer's machine sees them.
    ci = (ROOT / ".ci" / "run").read_text()
    assert f"{command} -m extended" in ci
    newcomer = ci.split(f"{command} -m extended", 1)[1]
    assert 'COURSE_DATA_DIR="$newcomer/data"' in newcomer and "https_proxy=http://127.0.0.1:9" in newcomer
    assert f"{command} notebooks" in newcomer


def test_badges_and_colab_cells_are_current():
    result = subprocess.run(
        [sys.executable, "tools/course_address.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, "stale launch badges: run python tools/course_address.py\n" + result.stdout


def test_a_fork_changes_one_setting_and_every_address_follows():
    sys.path.insert(0, str(ROOT / "tools"))
    import course_address

    assert course_address.update_documents("me/my-course", "v9.9.9", write=False) == [
        "README.md",
        "docs/teaching.md",
    ]
    link = urllib.parse.urlparse(course_address.nbgitpuller_link("me/my-course", "v9.9.9"))
    query = urllib.parse.parse_qs(link.query)
    # nbgitpuller merges origin/<branch> on every later click: a branch at the release, never a bare tag.
    assert query == {
        "repo": ["https://github.com/me/my-course"],
        "branch": ["release/v9.9.9"],
        "urlpath": ["lab/tree/my-course/notebooks/01_convolution_basics.ipynb"],
    }
    cell = course_address.colab_cell_source("me/my-course", "v9.9.9")
    assert '"git+https://github.com/me/my-course@v9.9.9"' in cell


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_badges_point_at_this_notebook(path):
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import course_address
    finally:
        sys.path.pop(0)
    repo, ref = course_address.repository()
    nb = nbformat.read(path, as_version=4)
    badge_lines = [ln for ln in nb.cells[0].source.splitlines() if "colab-badge.svg" in ln]
    # A line that starts with an HTML comment is an HTML block in Markdown: the badges would show as raw text.
    assert len(badge_lines) == 1 and badge_lines[0].startswith("[![")
    links = re.findall(r"\]\((https://[^)]+)\)", nb.cells[0].source)
    colab = [u for u in links if u.startswith("https://colab.research.google.com/github/")]
    binder = [u for u in links if u.startswith("https://mybinder.org/v2/gh/")]
    assert colab == [f"https://colab.research.google.com/github/{repo}/blob/{ref}/notebooks/{path.name}"]
    assert binder == [f"https://mybinder.org/v2/gh/{repo}/{ref}?urlpath=lab/tree/notebooks/{path.name}"]
    setup = nb.cells[1]
    assert (
        "colab-setup" in setup.metadata.get("tags", [])
        and 'if "google.colab" in sys.modules:' in setup.source
    )
    assert f"@{ref}" in setup.source and "torch" not in setup.source.split("package =")[1].split("\n")[0]


@pytest.mark.slow  # runs pip's resolver (about 4 s): run by `course.py test --all` and CI
def test_pip_part_of_environment_yml_installs(tmp_path):
    # What conda runs for environment.yml's pip section (Binder: the same pins, then postBuild's `-e .`),
    # resolved without installing anything.
    pins = [p for p in _pip_section(ROOT / "environment.yml") if not p.startswith("-e")]
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", *pins, "-e", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "course-utils" in result.stdout.lower() or "course_utils" in result.stdout.lower()


def test_the_wheel_holds_every_subpackage_and_builds_without_warnings(tmp_path):
    """A non-editable install (``pip install .``, as on Colab) ships ``checks`` and ``debug`` too, and the build
    raises no deprecation warning about pyproject.toml (setuptools includes unlisted subpackages only for now)."""
    setuptools = pytest.importorskip("setuptools")
    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip(
            f"setuptools {setuptools.__version__} is older than pyproject.toml's build requirement (77)"
        )
    # No build isolation: it would download setuptools, and the test command must run offline.
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation", "-w", str(tmp_path)]
        + [str(ROOT)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("course_utils-*.whl")
    shipped = {name.rsplit("/", 1)[0] for name in zipfile.ZipFile(wheel).namelist() if name.endswith(".py")}
    packages = {str(p.parent.relative_to(ROOT)) for p in (ROOT / "course_utils").rglob("__init__.py")}
    assert packages <= shipped, (
        f"the wheel lacks {sorted(packages - shipped)}: see [tool.setuptools] in pyproject"
    )
    warnings = sorted(
        {
            line.strip()
            for line in build.stdout.splitlines() + build.stderr.splitlines()
            if "BackendWarning" in line or "DeprecationWarning" in line
        }
    )
    assert not warnings, "building the wheel warns:\n" + "\n".join(warnings)
