"""Tests for course_utils.config, course_utils.utils and ``python -m course_utils``."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest
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


def test_bf16_on_cuda_needs_native_support(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(
        torch.cuda, "get_device_capability", lambda device=None: (7, 5)
    )  # a T4: emulated only
    assert utils.bf16_supported("cuda") is False
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))  # an A100
    assert utils.bf16_supported("cuda:0") is True
    assert utils.bf16_supported("mps") is False


_FAULTS_PER_STEP = """
import sys, torch
from torch import nn
import course_utils as cu
if sys.argv[1] == "tuned":
    assert cu.tune_cpu_allocator(verbose=False)
torch.manual_seed(0)
model = cu.SimpleCNN()
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
images, labels = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
def step():
    loss = nn.functional.cross_entropy(model(images), labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
for _ in range(3):
    step()  # warm-up: the heap grows to its working size
before = cu.utils.page_faults()
for _ in range(10):
    step()
print((cu.utils.page_faults() - before) // 10)
"""


def _faults_per_step(mode: str) -> int:
    result = subprocess.run(
        [sys.executable, "-c", _FAULTS_PER_STEP, mode], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


@pytest.mark.skipif(sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="tunes glibc only")
def test_tuned_allocator_reuses_freed_memory():
    # In a fresh process each: the tuning is process-wide. By default, freed activation buffers (up to 12 MiB
    # at batch 128) go back to the OS and cost one fault per 4 KiB page when asked for again; tuned, they are
    # reused.
    default, tuned = _faults_per_step("default"), _faults_per_step("tuned")
    if default < 1000:  # 4,500-6,400 per step on this project's machine; another glibc may keep them already
        pytest.skip(f"this glibc already keeps freed buffers ({default} page faults per step by default)")
    assert tuned * 5 < default, (default, tuned)  # 150-280 measured here


def test_tune_cpu_allocator_says_when_it_cannot(monkeypatch, capsys):
    monkeypatch.setattr(utils.platform, "libc_ver", lambda: ("", ""))
    assert utils.tune_cpu_allocator() is False
    assert "nothing to do" in capsys.readouterr().out
    assert utils.environment_report(print_report=False)["cpu allocator"] == "default"
