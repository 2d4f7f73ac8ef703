"""The training worker (with fault injection) that tests/test_distributed.py and benchmarks/bench_ddp.py start.

Every process trains SimpleCNN with plain SGD through ``cu.fit`` on its shard of the data; a ``--fault`` makes one
training step of one process go wrong (a NaN output, or Ctrl-C). Start it under torchrun::

    python -m torch.distributed.run --standalone --nproc_per_node=2 -m course_machinery.ddp_worker --out DIR

or from Python with ``launch("course_machinery.ddp_worker", "--out", DIR, module=True)``
(``course_machinery.launch``). Run without torchrun, it trains in one process: the reference that a run in
several processes is compared with. Each process r writes into ``DIR``:

- ``output_rank{r}.txt``: every line it printed. The processes share one stdout, where their lines can
  interleave; this file holds process r's lines alone, in order, so a test reads each process apart;
- ``history_rank{r}.json``: the History of its last run that was not stopped, with the world size and the sum
  of each floating-point buffer of its model (BatchNorm's statistics), to compare processes;
- ``model.pt`` (process 0 only): the trained model of a run without ``--fault``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn

import course_utils as cu
from course_machinery.standins import rendered_digits

__all__ = ["train", "main"]


class _Faulty(nn.Module):
    """A model whose training step ``at`` in process ``rank`` goes wrong: a NaN output, or Ctrl-C (SIGINT)."""

    def __init__(self, model: nn.Module, kind: str, rank: int, at: int) -> None:
        super().__init__()
        self.model, self.kind, self.at, self.armed = model, kind, at, cu.distributed.rank() == rank
        self.steps = 0  # training forward passes so far

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        if self.training:
            self.steps += 1
            if self.armed and self.steps == self.at:
                if self.kind == "nan":
                    out = out * float("nan")
                else:
                    os.kill(os.getpid(), signal.SIGINT)  # as if Ctrl-C reached this process only
        return out


def _loaders(data: str, images: int, batch_size: int, seed: int, device: torch.device) -> tuple[Any, Any]:
    """(train, val) loaders of all the data: a tenth (MNIST) or a fifth (synthetic digits) held out."""
    if data == "mnist":
        bundle = cu.data.mnist(
            subset=images, val_fraction=0.1, batch_size=batch_size, seed=seed, device=device
        )
        return bundle.train, bundle.val
    x, y = rendered_digits(images, seed=seed)
    n_val = images // 5
    common = {"mean": (0.1,), "std": (0.25,), "device": device, "seed": seed}
    train_loader = cu.data.TensorLoader(x[n_val:], y[n_val:], batch_size=batch_size, shuffle=True, **common)
    return train_loader, cu.data.TensorLoader(x[:n_val], y[:n_val], batch_size=256, **common)


def train(
    *,
    data: str = "synthetic",
    images: int = 640,
    batch_size: int = 32,
    epochs: int = 2,
    lr: float = 0.05,
    seed: int = 0,
    device: torch.device | str = "cpu",
    fault: tuple[str, int, int] | None = None,
    verbose: bool = False,
    model_name: str = "simple",
) -> tuple[nn.Module, cu.History]:
    """Train SimpleCNN (or ImprovedCNN) with SGD through ``cu.fit`` on this process's shard (all the data in one
    process).

    Args:
        data: ``"synthetic"`` (rendered digits, no files needed) or ``"mnist"``.
        images: Images in all (some held out for validation, see ``_loaders``).
        batch_size: Images per batch in each process.
        epochs: Passes over the training data.
        lr: Learning rate of plain SGD (no momentum, which would make rounding differences grow faster).
        seed: Seed for the weights, the split and the shuffling.
        device: Where to train.
        fault: ``(kind, rank, step)``: make training step ``step`` of process ``rank`` go wrong, kind
            ``"nan"`` or ``"interrupt"``.
        verbose: Let fit print (process 0 only).
        model_name: ``"simple"`` (SimpleCNN) or ``"improved"`` (ImprovedCNN: BatchNorm statistics that each
            process updates with its own batches, and dropout).

    Returns:
        The model (unwrapped; a ``_Faulty`` one with ``fault``, which counts its ``steps``) and the History.
    """
    device = torch.device(device)
    train_loader, val_loader = _loaders(data, images, batch_size, seed, device)
    cu.set_seed(seed)  # the same initial weights in every process (DDP also copies process 0's at the start)
    model: nn.Module = (cu.ImprovedCNN() if model_name == "improved" else cu.SimpleCNN()).to(device)
    if fault is not None:
        model = _Faulty(model, *fault)
    if cu.distributed.world_size() > 1:
        model = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    history = cu.fit(
        model,
        cu.distributed.shard(train_loader),
        cu.distributed.shard(val_loader, pad=False),
        epochs=epochs,
        optimizer=optimizer,
        loss_fn=nn.CrossEntropyLoss(),
        device=device,
        verbose=verbose,
    )
    return cu.distributed.unwrap(model), history


class _Tee(io.TextIOBase):
    """A stdout that writes to the real stdout and to this process's own file (line by line, so a process
    stopped by force still leaves every line it finished)."""

    def __init__(self, stream: IO[str], file: IO[str]) -> None:
        super().__init__()
        self.stream, self.file = stream, file

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.stream.write(text)
        self.file.write(text)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()
        self.file.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m course_machinery.ddp_worker",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for each process's output and results"
    )
    parser.add_argument("--data", choices=["synthetic", "mnist"], default="synthetic")
    parser.add_argument("--images", type=int, default=640)
    parser.add_argument("--batch-size", type=int, default=32, help="images per process per step")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--fault",
        nargs=3,
        metavar=("KIND", "RANK", "STEP"),
        action="append",
        default=[],
        help="nan or interrupt, in process RANK at training step STEP; repeat for several runs, one per fault",
    )
    parser.add_argument("--verbose", action="store_true", help="let cu.fit print (process 0 only)")
    parser.add_argument("--model", choices=["simple", "improved"], default="simple", dest="model_name")
    return parser


def _run(args: argparse.Namespace, device: torch.device) -> None:
    r = cu.distributed.rank()
    names = ("data", "images", "batch_size", "epochs", "lr", "seed", "model_name")
    settings = {k: getattr(args, k) for k in names}
    faults = [(kind, int(rank), int(step)) for kind, rank, step in args.fault] or [None]
    for fault in faults:  # each fault a fresh model; the process group lives on
        try:
            model, history = train(**settings, device=device, fault=fault, verbose=args.verbose)
        except cu.NonFiniteLossError as exc:
            message = " ".join([str(exc), *getattr(exc, "__notes__", [])]).replace("\n", " ")
            print(f"[process {r}] stopped: {message}", flush=True)
            continue
        steps = model.steps if fault else None
        print(
            f"[process {r}] finished: interrupted={history.interrupted} epochs={history.epochs} "
            f"training steps run={steps}",
            flush=True,
        )
        buffers = [float(b.double().sum()) for b in model.buffers() if b.is_floating_point()]
        record = {**history.to_dict(), "world_size": cu.distributed.world_size(), "buffer_sums": buffers}
        (args.out / f"history_rank{r}.json").write_text(json.dumps(record))
        if cu.distributed.is_main_process() and fault is None:
            cu.save_checkpoint(model, args.out / "model.pt", history=history)  # one writer, atomic


def main(argv: list[str] | None = None) -> None:
    """Command line: see ``python -m course_machinery.ddp_worker --help``."""
    args = _parser().parse_args(argv)
    device = cu.distributed.setup(timeout_s=60)  # a process that waits longer for the others fails instead
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        log = args.out / f"output_rank{cu.distributed.rank()}.txt"
        with log.open("w", encoding="utf-8", buffering=1) as file:
            stdout, sys.stdout = sys.stdout, _Tee(sys.stdout, file)
            try:
                _run(args, device)
            except BaseException:
                file.write(traceback.format_exc())  # the error too, in this process's own file
                raise
            finally:
                sys.stdout = stdout
    finally:
        cu.distributed.cleanup()


if __name__ == "__main__":
    main()
