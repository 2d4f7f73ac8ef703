"""Tests for lesson 05's own code: bf16 detection, the CPU allocator tuning and page-fault counts."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest
import torch

from course_machinery.lessons import lesson_code

ns = lesson_code("05")


def test_bf16_on_cuda_needs_native_support(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(
        torch.cuda, "get_device_capability", lambda device=None: (7, 5)
    )  # a T4: emulated only
    assert ns.bf16_supported("cuda") is False
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))  # an A100
    assert ns.bf16_supported("cuda:0") is True
    assert ns.bf16_supported("mps") is False


def test_bf16_on_cpu_needs_its_instructions(monkeypatch):
    # The lesson's functions look cpu_flags up in the namespace its cells ran in.
    lesson_globals = ns.bf16_supported.__globals__
    monkeypatch.setitem(lesson_globals, "cpu_flags", lambda: {"fpu", "avx2", "avx512f"})
    assert ns.bf16_supported("cpu") is False
    monkeypatch.setitem(lesson_globals, "cpu_flags", lambda: {"fpu", "avx512f", "amx_bf16"})
    assert ns.bf16_supported(torch.device("cpu")) is True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/cpuinfo")
def test_cpu_flags_reads_proc_cpuinfo():
    flags = ns.cpu_flags()
    assert flags and all(isinstance(flag, str) and " " not in flag for flag in flags)


@pytest.mark.skipif(sys.platform == "win32", reason="no resource module on Windows")
def test_page_faults_count_fresh_memory():
    before = ns.page_faults()
    assert isinstance(before, int)
    block = torch.ones(32 << 20)  # 128 MiB written: over any mmap threshold, so fresh pages from the OS
    assert ns.page_faults() > before
    del block


_FAULTS_PER_STEP = """
import sys, torch
from torch import nn
import course_utils as cu
from course_machinery.lessons import lesson_code
lesson = lesson_code("05")
if sys.argv[1] == "tuned":
    assert lesson.tune_cpu_allocator(verbose=False)
torch.manual_seed(0)
model = cu.SimpleCNN()
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
images, labels = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
def step():
    loss = nn.functional.cross_entropy(model(images), labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
for _ in range(10):
    step()  # warm-up: the heap grows to its working size (after 3 steps, the default's count still varied 5x)
before = lesson.page_faults()
for _ in range(10):
    step()
print((lesson.page_faults() - before) // 10)
"""


def _faults_per_step(mode: str) -> int:
    result = subprocess.run(
        [sys.executable, "-c", _FAULTS_PER_STEP, mode], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="tunes glibc only")
@pytest.mark.slow  # trains in fresh processes (about 15 s): run by `course.py test --all` and CI
def test_tuned_allocator_reuses_freed_memory():
    # In a fresh process each: the tuning is process-wide. By default, freed activation buffers (up to 12 MiB
    # at batch 128) go back to the OS and cost one fault per 4 KiB page when asked for again; tuned, they are
    # reused.
    default, tuned = _faults_per_step("default"), _faults_per_step("tuned")
    if default < 1000:  # 4,600-9,400 per step on this project's machine; another glibc may keep them already
        pytest.skip(f"this glibc already keeps freed buffers ({default} page faults per step by default)")
    assert tuned * 5 < default, (default, tuned)  # 0-630 measured here


def test_tune_cpu_allocator_says_when_it_cannot(monkeypatch, capsys):
    monkeypatch.setattr(platform, "libc_ver", lambda: ("", ""))
    assert ns.tune_cpu_allocator() is False
    assert "nothing to do" in capsys.readouterr().out
