"""Benchmark 2: the overhead of ``cu.fit`` over a minimal hand-written loop, same model and data (goal < 3%).

Run: COURSE_DATA_DIR=../shared/data python benchmarks/bench_fit_overhead.py
The minimal loop does forward, loss, backward and step, and nothing else. ``cu.fit`` also tracks loss and
accuracy (weighted by sample count, kept on the device), reads them every ``CHECK_EVERY`` (50) steps, which is
also its check for a non-finite loss, and drives a progress bar. A third loop is the minimal one plus a
non-finite check at every step (a host sync per step, the design ``cu.fit`` had before), to price that alone.
Runs alternate (loop, loop + check, fit, fit with progress bar, ...) and the median of each is compared.
"""

from __future__ import annotations

import argparse
import statistics

import torch
from common import header, timed
from torch import nn

import course_utils as cu


def minimal_loop(
    model: nn.Module, loader, optimizer, loss_fn, device: torch.device, check: bool = False
) -> None:
    model.train()
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        loss = loss_fn(model(images), labels)
        if check and not torch.isfinite(loss):  # a host sync per step: what a per-step NaN check costs
            raise FloatingPointError("non-finite loss")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=12_800, help="training images per run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    device = cu.get_device(args.device, verbose=False)
    header(f"fit overhead: {args.images:,} MNIST images per run, SimpleCNN, batch 128, Adam", device)
    bundle = cu.data.mnist(val_fraction=0.0, subset=args.images, batch_size=128, device=device)
    model = cu.SimpleCNN().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    runs = {
        "minimal loop": lambda: minimal_loop(model, bundle.train, optimizer, loss_fn, device),
        "minimal loop + per-step NaN check": lambda: minimal_loop(
            model, bundle.train, optimizer, loss_fn, device, check=True
        ),
        "cu.fit (verbose=False)": lambda: cu.fit(
            model, bundle.train, epochs=1, optimizer=optimizer, loss_fn=loss_fn, verbose=False
        ),
        "cu.fit (progress bar, lines)": lambda: cu.fit(
            model, bundle.train, epochs=1, optimizer=optimizer, loss_fn=loss_fn, verbose=True
        ),
    }
    runs["minimal loop"]()  # warm-up: first-call allocations and kernel selection
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            times[name].append(timed(run, device)[0])
    base = statistics.median(times["minimal loop"])
    for name, values in times.items():
        median = statistics.median(values)
        print(
            f"{name:<26} median {median:6.2f} s  ({args.images / median:,.0f} images/s)  "
            f"overhead {100 * (median / base - 1):+5.1f}%"
        )


if __name__ == "__main__":
    main()
