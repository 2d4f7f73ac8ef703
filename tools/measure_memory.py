#!/usr/bin/env python3
"""Measure the memory a lesson needs: run notebooks and sample their kernel's process tree (Linux only).

Binder and JupyterHub limit a session's memory (mybinder.org: 1-2 GB), counting every process the notebook
starts (lesson 09 starts torchrun and two workers). Every 0.2 s this samples the proportional set size (PSS,
``/proc/PID/smaps_rollup``: shared libraries split between the processes that map them, as the kernel's
memory accounting does) of the notebook's kernel and all its descendants, and reports the peak of their sum.

Usage: python tools/measure_memory.py [--smoke] [NN ...]   (default: every lesson, in full mode)
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def tree_pss_mb(root: int) -> float:
    """The summed PSS of ``root`` and its descendants, in MB (processes that end meanwhile are skipped)."""
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            continue
        todo += _children(pid)
    return total / 1024


def measure(path: Path, smoke: bool) -> tuple[float, float]:
    """(peak MB, seconds) of one run of the notebook at ``path``."""
    os.environ["COURSE_SMOKE"] = "1" if smoke else "0"
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=1800, resources={"metadata": {"path": str(path.parent)}})
    peak, done = 0.0, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.2):
            manager = client.km
            pid = getattr(getattr(manager, "provisioner", None), "pid", None) if manager else None
            if pid:
                peak = max(peak, tree_pss_mb(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    start = time.monotonic()
    sampler.start()
    try:
        client.execute()
    finally:
        done.set()
        sampler.join()
    return peak, time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="smoke mode (small subsets): a lower bound")
    parser.add_argument("lessons", nargs="*", help="lesson numbers such as 02 08 (default: all)")
    args = parser.parse_args(argv)
    paths = sorted((ROOT / "notebooks").glob("*.ipynb"))
    if args.lessons:
        paths = [p for p in paths if p.name[:2] in args.lessons]
    mode = "smoke" if args.smoke else "full"
    for path in paths:
        peak, seconds = measure(path, args.smoke)
        print(
            f"{path.stem}: peak {peak:,.0f} MB (PSS of the kernel and its processes), {mode} mode, {seconds:.0f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
