"""The Colab set-up cell (second cell of every notebook), run as on Colab: a stand-in ``google.colab`` module.

It installs the course package from the release tag or from ``COURSE_PACKAGE`` (a fork, a branch, a wheel, a
folder), says which version it installed, keeps data under /content/data, and on failure says in one line what
failed and what to do. Here it installs a local copy of this package into a temporary folder (``PIP_TARGET``,
without dependencies, so the test's environment is never changed) and tries the real address with every
connection refused (a proxy on a closed local port).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import course_address  # noqa: E402

REPO, REF = course_address.repository()
OFFLINE = {k: "http://127.0.0.1:9" for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")}


def _run_cell(env: dict[str, str], cwd: Path, *, on_colab: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the cell in IPython, as a notebook would; print whether "Run all" would stop, and the data folder."""
    script = (
        "import os, sys, types\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        + ("sys.modules['google.colab'] = types.ModuleType('google.colab')\n" if on_colab else "")
        + "result = InteractiveShell.instance().run_cell(sys.argv[1])\n"
        "print('RUN ALL STOPS' if result.error_in_exec else 'RUN ALL GOES ON')\n"
        "print('DATA=' + os.environ.get('COURSE_DATA_DIR', '(unset)'))\n"
    )
    base = {
        k: v for k, v in os.environ.items() if k not in {"COURSE_DATA_DIR", "COURSE_PACKAGE", "PYTHONPATH"}
    }
    return subprocess.run(
        [sys.executable, "-c", script, course_address.colab_cell_source(REPO, REF)],
        env={**base, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_installs_from_the_place_course_package_names_and_keeps_data_under_content(tmp_path):
    if int(version("setuptools").split(".")[0]) < 77:  # pyproject.toml's build requirement
        pytest.skip(f"setuptools {version('setuptools')} here cannot build the package without a download")
    package = tmp_path / "fork"  # a teacher's or a fork's copy, with its own version number
    for name in ("course_utils", "course_machinery"):
        shutil.copytree(ROOT / name, package / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "README.md", package)
    pyproject, count = re.subn(
        r'\nversion = "[^"]+"', '\nversion = "99.0.0+fork"', (ROOT / "pyproject.toml").read_text()
    )
    assert count == 1
    (package / "pyproject.toml").write_text(pyproject)
    target = tmp_path / "site-packages"
    env = {
        "COURSE_PACKAGE": str(package),
        "PIP_TARGET": str(target),
        "PIP_NO_BUILD_ISOLATION": "0",  # pip reads it inverted: build with this environment's setuptools
        "PYTHONPATH": str(target),
        **OFFLINE,
    }
    result = _run_cell(env, tmp_path)  # in an empty folder, like /content
    assert result.returncode == 0 and result.stderr == "", result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"course-utils 99.0.0+fork installed from {package}; torch "), result.stdout
    assert lines[0].endswith("; data in /content/data")
    assert lines[1:] == ["RUN ALL GOES ON", "DATA=/content/data"], result.stdout
    assert (target / "course_utils" / "__init__.py").is_file()


def test_an_unreachable_address_fails_with_one_line_that_says_what_to_do(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    result = _run_cell({"PIP_TARGET": str(tmp_path / "t"), **OFFLINE}, tmp_path)
    shown = [line for line in result.stdout.splitlines() if line.strip()]
    assert shown[1:] == ["RUN ALL STOPS", "DATA=/content/data"], result.stdout + result.stderr
    # One line, no traceback, no pip dump: what was tried, the cause in pip's or git's words, what to do.
    assert shown[0].startswith(
        f"SetupFailed: could not install the course package from git+https://github.com/{REPO}@{REF} ("
    ), shown[0]
    assert "fatal:" in shown[0] or "ERROR:" in shown[0], shown[0]
    assert "set COURSE_PACKAGE" in shown[0] and "Traceback" not in result.stdout + result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_elsewhere_the_cell_does_nothing(tmp_path):
    result = _run_cell({"COURSE_DATA_DIR": str(tmp_path), **OFFLINE}, tmp_path, on_colab=False)
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.splitlines() == ["RUN ALL GOES ON", f"DATA={tmp_path}"]
