"""Benchmark 5: training in several processes (torchrun, DistributedDataParallel) against one process.

Run: COURSE_DATA_DIR=../shared/data python benchmarks/bench_ddp.py [--nproc 2] [--images 12800] [--epochs 2]
Each run is ``python -m torch.distributed.run --standalone ... -m course_machinery.ddp_worker`` (SimpleCNN, plain
SGD, MNIST, through ``cu.fit``), started afresh, with the same images, epochs and effective batch
(``--nproc`` x ``--batch-size``), so all runs make the same updates:

- 1 process with the whole effective batch, using every CPU core (or the first GPU);
- ``--nproc`` processes with ``--batch-size`` each: on CPUs they share the cores (``OMP_NUM_THREADS`` = cores /
  processes, gloo); with CUDA each takes its own GPU (nccl), so this needs ``--nproc`` GPUs;
- on CPUs only, 1 process with 1 thread: what one core does alone.

It prints training time (cu.fit's epochs, from process 0's history), images per second, the whole launch
(starting the processes and loading the data included), the speed-up over the 1-process run, and the largest
weight difference between the 1-process and the multi-process run (float rounding only, if DDP is right).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from common import header

import course_utils as cu
from course_machinery.launch import launch


def run(
    out: Path, nproc: int, threads: int, batch_size: int, args: argparse.Namespace
) -> tuple[float, float]:
    """One launch; returns (whole launch seconds, training seconds)."""
    launched = launch(
        "course_machinery.ddp_worker",
        *("--out", out, "--data", "mnist", "--images", args.images, "--epochs", args.epochs),
        *("--batch-size", batch_size, "--lr", args.lr),
        module=True,
        nproc=nproc,
        threads=threads,
        timeout=args.timeout,
        env={"TQDM_DISABLE": "1"},
        echo=False,
    )
    history = json.loads((out / "history_rank0.json").read_text())
    return launched.seconds, sum(history["epoch_time"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nproc", type=int, default=2, help="processes of the data-parallel run")
    parser.add_argument("--images", type=int, default=12_800, help="MNIST images (a tenth held out)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32, help="images per process per step")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--timeout", type=float, default=900, help="seconds per launch before it is stopped")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    if cuda and torch.cuda.device_count() < args.nproc:
        raise SystemExit(f"--nproc {args.nproc} needs {args.nproc} GPUs; {torch.cuda.device_count()} visible")
    header(
        f"DDP: {args.nproc} processes x batch {args.batch_size} vs 1 process x batch "
        f"{args.nproc * args.batch_size}, {args.images:,} MNIST images, {args.epochs} epoch(s), SimpleCNN, SGD",
        torch.device("cuda" if cuda else "cpu"),
    )
    cores = os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="bench-ddp-"))
    try:
        share, big = max(1, cores // args.nproc), args.nproc * args.batch_size
        runs = {  # name: (processes, threads per process, images per process per step)
            "1 process" + ("" if cuda else f", {cores} threads"): (1, cores, big),
            f"{args.nproc} processes" + ("" if cuda else f", {share} thread(s) each"): (
                args.nproc,
                share,
                args.batch_size,
            ),
        }
        if not cuda:
            runs["1 process, 1 thread"] = (1, 1, big)
        results = {}
        for i, (name, (nproc, threads, batch_size)) in enumerate(runs.items()):
            results[name] = run(work / str(i), nproc, threads, batch_size, args)
        single = results[next(iter(results))][1]
        train_images = (args.images - round(args.images * 0.1)) * args.epochs  # ddp_worker holds a tenth out
        for name, (total, training) in results.items():
            print(
                f"{name:<30} training {training:7.2f} s ({train_images / training:8,.0f} images/s)  "
                f"whole launch {total:7.2f} s  speed-up over the first {single / training:5.2f}x"
            )
        one, many = cu.SimpleCNN(), cu.SimpleCNN()
        cu.load_checkpoint(one, work / "0" / "model.pt")
        cu.load_checkpoint(many, work / "1" / "model.pt")
        diff = max((one.state_dict()[k] - v).abs().max().item() for k, v in many.state_dict().items())
        print(
            f"largest weight difference, 1 process vs {args.nproc} processes: {diff:.1e} (float rounding only)"
        )

    finally:
        shutil.rmtree(work, ignore_errors=True)  # the launches' scripts, logs and checkpoints


if __name__ == "__main__":
    main()
