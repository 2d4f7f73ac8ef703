#!/usr/bin/env python3
"""One command to set up and use the course: ``python3 course.py lab`` or ``python3 course.py test``.

Creates a virtual environment in ``.venv`` on first use (and reuses it afterwards), installs the pinned,
known-good packages from ``requirements-lock.txt`` plus this repository's ``course_utils`` package, then:

- ``lab``:  opens JupyterLab at the first notebook;
- ``test``: the quick suite: unit tests, then every notebook in smoke mode through nbval (a few minutes);
  ``test --all`` adds the extended tests: the website, the student edition, JupyterLab in a browser, the
  benchmarks and the slow real-data runs (CI runs them all, see ``.ci/run``); other arguments go to pytest;
- ``site``: builds the course website into ``build/site/html`` (every notebook executed in full mode, with a
  cache; ``--smoke`` for a quick check, ``--only 01 02`` for some lessons);
- ``student``: writes the student edition (nbgrader's release of every notebook: solutions and hidden tests
  removed) into ``build/student`` (``--zip`` for a zip file to hand out);
- ``grade SUBMISSIONS --lesson NN``: grades a class's submitted notebooks of one lesson with nbgrader (each in a
  fresh kernel, with time limits) into ``build/grades/grades.csv`` and the feedback to hand back;
- ``setup``: only sets up the environment; ``check``: prints the environment report (versions, device, data).

Only the Python standard library is used here, so it runs with any Python 3.11+ on Linux, macOS and Windows.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("COURSE_VENV", ROOT / ".venv"))
LOCK = ROOT / "requirements-lock.txt"
FIRST_NOTEBOOK = "notebooks/01_convolution_basics.ipynb"


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def setup() -> Path:
    """Create (or reuse) the virtual environment and install what it lacks; return its Python."""
    python = venv_python()
    if not python.exists():
        print(f"Creating a virtual environment in {VENV} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    # Reinstall only when the lock file or the package's metadata changed since the last install.
    stamp = VENV / ".course-installed"
    digest = hashlib.sha256(LOCK.read_bytes() + (ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != digest:
        print("Installing the course's packages (first run: a few minutes; torch is large) ...", flush=True)
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
        subprocess.run(pip + ["--upgrade", "pip"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(pip + ["-r", str(LOCK), "-e", f"{ROOT}[dev]"], check=True)
        stamp.write_text(digest)
    return python


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "help"
    if command not in {"lab", "test", "setup", "check", "site", "student", "grade"}:
        print(__doc__)
        return 0 if command in {"help", "-h", "--help"} else 2
    python = setup()
    os.chdir(ROOT)
    if command == "lab":
        # The project's JupyterLab settings: no news or update pop-ups in class (a user's own value wins).
        os.environ.setdefault("JUPYTERLAB_SETTINGS_DIR", str(ROOT / ".jupyter" / "lab" / "user-settings"))
        args = [str(python), "-m", "jupyterlab", FIRST_NOTEBOOK, *argv[1:]]
    elif command == "test":
        # Notebooks run in smoke mode (small subsets, one short epoch); unit tests choose their own mode.
        os.environ["COURSE_SMOKE"] = "1"
        rest = [a for a in argv[1:] if a != "--all"]
        quick = "--all" not in argv[1:] and "-m" not in rest  # a marker expression of the caller's wins
        args = [str(python), "-m", "pytest", *(["-m", "not extended"] if quick else []), *rest]
    elif command == "check":
        args = [str(python), "-c", "import course_utils as cu; cu.environment_report(); cu.get_device()"]
    elif command == "site":
        args = [str(python), str(ROOT / "tools" / "build_site.py"), *argv[1:]]
    elif command in {"student", "grade"}:
        args = [str(python), str(ROOT / "tools" / "classroom.py"), command, *argv[1:]]
    else:
        print(f"Environment ready: {python}")
        return 0
    return subprocess.call(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
