"""Shared helpers for the benchmarks: a header saying what ran where, a timer that syncs the device, and
notebook 05's own speed code (``lesson05``: bf16_supported, tune_cpu_allocator, page_faults)."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import course_utils as cu
from course_machinery.lessons import lesson_code

# What notebook 05 teaches and writes (its code cells tagged lesson-code), loaded from the notebook itself.
lesson05 = lesson_code("05")


def header(title: str, device: torch.device) -> None:
    """Print what is measured and on what: device, CPU, torch version, thread count, bf16 support."""
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "-"
    print(f"== {title} ==")
    print(
        f"device: {device} (GPU: {gpu}); cpu: {platform.processor() or platform.machine()}; "
        f"torch {torch.__version__}; threads {torch.get_num_threads()}; "
        f"native bf16 on this device: {lesson05.bf16_supported(device)}; data: {cu.data.data_dir()}"
    )


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so a timer measures the work and not just its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def timed(fn: Callable[[], object], device: torch.device) -> tuple[float, object]:
    """Run ``fn`` once; return (seconds, result)."""
    sync(device)
    start = time.perf_counter()
    result = fn()
    sync(device)
    return time.perf_counter() - start, result


class SourceCNN(cu.SimpleCNN):
    """SimpleCNN with the source course's forward: ReLU before pooling (``cu.SimpleCNN`` pools first).

    The same layers and the same function; the source's order applies ReLU to 4x more values.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))  # (batch, 32, 14, 14)
        x = self.pool(F.relu(self.conv2(x)))  # (batch, 64, 7, 7)
        return self.fc(torch.flatten(x, 1))  # (batch, 10)
