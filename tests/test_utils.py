"""Tests for course_utils.config, course_utils.utils and ``python -m course_utils``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

import course_utils
from course_utils import config, utils


def test_data_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    assert config.data_dir() == tmp_path.resolve()
    monkeypatch.delenv("COURSE_DATA_DIR")
    assert config.data_dir() == Path(course_utils.__file__).resolve().parent.parent / "data"  # a checkout


def test_smoke_mode_parsing(monkeypatch):
    for value, expected in [("1", True), ("true", True), ("0", False), ("", False), ("no", False)]:
        monkeypatch.setenv("COURSE_SMOKE", value)
        assert config.smoke_mode() is expected


def test_set_seed_repeats():
    utils.set_seed(5)
    a = torch.rand(3)
    utils.set_seed(5)
    assert torch.equal(a, torch.rand(3))


def test_get_device_says_which(capsys):
    device = utils.get_device()
    assert "Using device:" in capsys.readouterr().out
    assert device.type in {"cpu", "cuda", "mps"}
    assert utils.get_device("cpu", verbose=False) == torch.device("cpu")


def test_module_main_prints_report(tmp_path):
    env = {"COURSE_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "course_utils"], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    for word in ("torch", "torchvision", "data dir", "Using device", "MNIST", "missing"):
        assert word in result.stdout


def test_public_api_is_explicit():
    import types

    for name in course_utils.__all__:
        assert hasattr(course_utils, name), name
    # Every public function, class or value at cu.* is listed in __all__ (submodules are reached as cu.<module>).
    public = {
        name
        for name, value in vars(course_utils).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType) and name != "annotations"
    }
    assert public <= set(course_utils.__all__), (
        f"unlisted public names: {sorted(public - set(course_utils.__all__))}"
    )


_GLOBAL_STATE = """
import os, random, socket, sys, warnings
import numpy as np, torch
import ipywidgets, matplotlib, matplotlib.pyplot, torchvision, tqdm.auto  # what they do on import is theirs
def state():
    mask = os.umask(0o022); os.umask(mask)
    return (torch.get_num_threads(), torch.get_default_dtype(), torch.are_deterministic_algorithms_enabled(),
            torch.random.get_rng_state().sum().item(), random.getstate()[1][:3], int(np.random.get_state()[1][0]),
            socket.getdefaulttimeout(), mask, len(warnings.filters), sorted(os.environ), matplotlib.get_backend())
before = state()
import course_utils
print(before == state())
print(before)
print(state())
"""


def test_import_changes_no_global_state():
    result = subprocess.run(
        [sys.executable, "-c", _GLOBAL_STATE], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "True", result.stdout
