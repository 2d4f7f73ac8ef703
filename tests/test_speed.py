"""Tests for course_utils.speed: bf16 detection, the CPU allocator tuning and page-fault counts."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest
import torch

from course_utils import speed, utils


def test_bf16_on_cuda_needs_native_support(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(
        torch.cuda, "get_device_capability", lambda device=None: (7, 5)
    )  # a T4: emulated only
    assert speed.bf16_supported("cuda") is False
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))  # an A100
    assert speed.bf16_supported("cuda:0") is True
    assert speed.bf16_supported("mps") is False


_FAULTS_PER_STEP = """
import sys, torch
from torch import nn
import course_utils as cu
if sys.argv[1] == "tuned":
    assert cu.speed.tune_cpu_allocator(verbose=False)
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
before = cu.speed.page_faults()
for _ in range(10):
    step()
print((cu.speed.page_faults() - before) // 10)
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
    monkeypatch.setattr(speed.platform, "libc_ver", lambda: ("", ""))
    assert speed.tune_cpu_allocator() is False
    assert "nothing to do" in capsys.readouterr().out
    assert utils.environment_report(print_report=False)["cpu allocator"] == "default"
