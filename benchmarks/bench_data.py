"""Benchmark 1: the data path: the tensor fast path vs torchvision's per-sample pipeline (images/s, ratio).

Run: COURSE_DATA_DIR=../shared/data python benchmarks/bench_data.py
Both iterate once over the 60,000 MNIST training images in shuffled batches of 64 and touch every batch, with
no model, so the numbers are the data path alone. Measured in one run, interleaved, so the ratio is fair on a
shared machine.
"""

from __future__ import annotations

import argparse

import torch
from common import header, timed

import course_utils as cu


def one_pass(loader, device: torch.device) -> int:
    n = 0
    checksum = torch.zeros((), device=device)
    for images, labels in loader:
        images = images.to(device, non_blocking=True)
        checksum += images[:, 0, 0, 0].sum()  # touch the batch so nothing is skipped
        n += labels.shape[0]
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    device = cu.get_device(args.device, verbose=False)
    header("data path: images per second over one MNIST training epoch", device)
    fast = cu.data.mnist(val_fraction=0.0, batch_size=64, device=device)
    fast_aug = cu.data.mnist(val_fraction=0.0, batch_size=64, device=device, augment=True)
    slow = cu.data.mnist(val_fraction=0.0, batch_size=64, fast=False)
    slow_aug = cu.data.mnist(val_fraction=0.0, batch_size=64, fast=False, augment=True)
    rates: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for name, loader in [
            ("torchvision DataLoader (ToTensor+Normalize)", slow.train),
            ("tensor fast path", fast.train),
            ("torchvision DataLoader + RandomAffine shift", slow_aug.train),
            ("tensor fast path + batched random shift", fast_aug.train),
        ]:
            seconds, n = timed(lambda loader=loader: one_pass(loader, device), device)
            rates.setdefault(name, []).append(n / seconds)
    best = {name: max(r) for name, r in rates.items()}
    for name, rate in best.items():
        print(f"{name:<46} {rate:>12,.0f} images/s")
    names = list(best)
    print(f"ratio fast/torchvision (plain):     {best[names[1]] / best[names[0]]:.1f}x")
    print(f"ratio fast/torchvision (augmented): {best[names[3]] / best[names[2]]:.1f}x")


if __name__ == "__main__":
    main()
