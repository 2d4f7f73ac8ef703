"""Speed knobs for training: is bf16 natively fast here, the CPU allocator, and page-fault counts (notebook 05)."""

from __future__ import annotations

import ctypes
import platform
import sys
from pathlib import Path

import torch

__all__ = ["bf16_supported", "tune_cpu_allocator", "page_faults"]


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def bf16_supported(device: torch.device | str) -> bool:
    """Whether bfloat16 autocast is *fast* on this device, not merely possible.

    On CPUs bf16 is only faster with native instructions (AVX512-BF16 or AMX); elsewhere it is emulated and
    slower than fp32, so we report False.

    Args:
        device: The device that will run the model.

    Returns:
        True where bf16 autocast is natively supported.
    """
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False
        # Native bf16 needs compute capability 8.0 (Ampere) or newer; older GPUs (T4, V100) only emulate it,
        # slowly, which torch.cuda.is_bf16_supported() counts as supported by default.
        return torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        flags = _cpu_flags()
        return bool({"avx512_bf16", "amx_bf16"} & flags)
    return False


# glibc's mallopt() parameters (malloc.h) and the values we set. A training step allocates and frees the same
# large activation buffers (MBs each) hundreds of times per epoch. By default glibc hands such blocks back
# to the operating system when they are freed (munmap, or trimming the heap) and asks for them again at the
# next step, and every 4 KiB page of fresh memory costs a page fault when first touched.
_MALLOPT = {
    -1: 256 << 20,  # M_TRIM_THRESHOLD: keep up to 256 MiB of free memory at the top of the heap
    -2: 64 << 20,  # M_TOP_PAD: grow the heap in steps of 64 MiB
    -3: 64 << 20,  # M_MMAP_THRESHOLD: serve blocks up to 64 MiB from the heap instead of separate mmaps
}
_allocator_tuned = False


def tune_cpu_allocator(*, verbose: bool = True) -> bool:
    """Make the C allocator keep freed memory for reuse, so CPU training stops paying page faults every step.

    On Linux with glibc (including Colab), PyTorch's large CPU tensors come from ``malloc``, which by default
    returns big freed blocks to the operating system; the next training step asks for them again and takes
    thousands of page faults. This asks glibc to keep up to 256 MiB of freed memory instead (PyTorch's
    performance guide suggests swapping in jemalloc or tcmalloc for the same reason; this needs no install).
    Results do not change, only speed. It lasts until the Python process (the notebook's kernel) ends.
    Elsewhere (macOS, Windows, non-glibc Linux) it changes nothing and returns False.

    Args:
        verbose: Print what was done.

    Returns:
        True if the allocator was tuned.
    """
    global _allocator_tuned
    libc_name = platform.libc_ver()[0]
    if sys.platform != "linux" or libc_name != "glibc":
        if verbose:
            print(
                f"tune_cpu_allocator: nothing to do on {sys.platform} ({libc_name or 'no glibc'}): "
                "only glibc's malloc is tuned here"
            )
        return False
    libc = ctypes.CDLL("libc.so.6")
    ok = all([libc.mallopt(param, value) == 1 for param, value in _MALLOPT.items()])  # a list: try each one
    _allocator_tuned = _allocator_tuned or ok
    if verbose:
        print(
            "tune_cpu_allocator: glibc malloc now keeps up to 256 MiB of freed memory for reuse"
            if ok
            else "tune_cpu_allocator: glibc refused the settings; the allocator is unchanged"
        )
    return ok


def page_faults() -> int | None:
    """Page faults of this process so far (minor ones: memory handed out by the OS), or None where unknown.

    Compare two readings around some work to count the faults it caused (Linux and macOS; None on Windows).
    """
    try:
        import resource
    except ImportError:  # Windows
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def allocator_tuned() -> bool:
    """Whether :func:`tune_cpu_allocator` has tuned glibc's allocator in this process (for the environment report)."""
    return _allocator_tuned
