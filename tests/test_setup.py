"""Tests for course_utils._setup and the package's API: seeds, device, configuration, report, import cost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

import course_utils
from course_utils import _setup as config
from course_utils import _setup as utils


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


def test_environment_report_says_what_a_question_needs(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    report = course_utils.environment_report()
    out = capsys.readouterr().out
    for word in ("torch", "torchvision", "data dir", "datasets present", "smoke mode"):
        assert word in out
    assert report["datasets present"].startswith("none")


def test_smoke_is_read_live_not_frozen_at_import(monkeypatch):
    """cu.SMOKE follows COURSE_SMOKE at every use, as the loaders' smoke_mode() does."""
    monkeypatch.setenv("COURSE_SMOKE", "1")
    assert course_utils.SMOKE is True
    monkeypatch.setenv("COURSE_SMOKE", "0")
    assert course_utils.SMOKE is False


def test_public_api_is_small_and_each_object_has_one_public_path():
    import importlib
    import pkgutil

    assert len(course_utils.__all__) <= 20
    for name in course_utils.__all__:
        assert hasattr(course_utils, name), name
    assert sorted(dir(course_utils)) == sorted([*course_utils.__all__, "__version__"])
    # Public modules are the namespaces cu.data, cu.plots, cu.distributed; every other module is private, and no
    # object is listed by two public places.
    modules = {m.name for m in pkgutil.iter_modules(course_utils.__path__)}
    assert {m for m in modules if not m.startswith("_")} == {"data", "plots", "distributed"}
    seen: dict[int, str] = {}
    places = [("cu", course_utils, course_utils.__all__)] + [
        (f"cu.{m}", mod, mod.__all__)
        for m in ("data", "plots", "distributed")
        for mod in [importlib.import_module(f"course_utils.{m}")]
    ]
    for where, module, names in places:
        for name in names:
            obj = getattr(module, name)
            if isinstance(obj, (int, float, str, tuple, bool)):
                continue
            assert id(obj) not in seen, f"{where}.{name} is also {seen[id(obj)]}"
            seen[id(obj)] = f"{where}.{name}"


def test_the_package_is_small():
    root = Path(course_utils.__file__).parent
    files = sorted(root.rglob("*.py"))
    lines = sum(len(f.read_text().splitlines()) for f in files)
    assert len(files) <= 15, [f.name for f in files]
    assert lines <= 2500, lines


_IMPORT = """
import os, random, socket, sys, time, warnings
import numpy as np, torch, torchvision
before, start = set(sys.modules), time.perf_counter()
import course_utils
print(time.perf_counter() - start)
print(sorted(m for m in set(sys.modules) - before if m.split(".")[0] != "course_utils"))
import ipywidgets, matplotlib, matplotlib.pyplot, tqdm.auto  # what they do on import is theirs
def state():
    mask = os.umask(0o022); os.umask(mask)
    return (torch.get_num_threads(), torch.get_default_dtype(), torch.are_deterministic_algorithms_enabled(),
            torch.random.get_rng_state().sum().item(), random.getstate()[1][:3], int(np.random.get_state()[1][0]),
            socket.getdefaulttimeout(), mask, len(warnings.filters), sorted(os.environ), matplotlib.get_backend())
initial = state()
for name in course_utils.__all__:  # every part of the API imported once
    getattr(course_utils, name)
print(initial == state())
"""


def test_import_is_lazy_fast_and_changes_no_global_state():
    """One fresh process: the import loads nothing but itself, in under 0.5 s (README: about 1 ms beyond torch);
    then every name of the API is used once and no global state has changed."""
    result = subprocess.run([sys.executable, "-c", _IMPORT], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    seconds, loaded, unchanged = result.stdout.splitlines()
    assert loaded == "[]", loaded
    assert float(seconds) < 0.5, seconds
    assert unchanged == "True"
