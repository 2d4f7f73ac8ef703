"""Worker programs for notebook 08 and the torchrun tests: collectives, and cu.fit in several processes.

Start them with torchrun (functions defined in a notebook cannot be started in new processes)::

    python -m torch.distributed.run --standalone --nproc_per_node=2 -m course_utils.ddp_demo collectives --out DIR
    python -m torch.distributed.run --standalone --nproc_per_node=2 -m course_utils.ddp_demo fit --out DIR

or from Python with ``cu.distributed.launch("course_utils.ddp_demo", "fit", ..., module=True)``. Run without
torchrun, ``fit`` trains in one process: the reference a run in several processes is compared with.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import distributed
from ._diagnose import NonFiniteLossError
from .checkpoint import save_checkpoint
from .engine import fit
from .history import History
from .models import SimpleCNN
from .synthetic import rendered_digits
from .tensorloader import TensorLoader
from .utils import set_seed

__all__ = ["collectives", "train", "plot_collectives"]


# ---------------------------------------------------------------------------------------------------------
# Collectives: what each process holds before and after
# ---------------------------------------------------------------------------------------------------------
def collectives(out: Path, sizes: list[int], repeats: int) -> None:
    """Run all_reduce, broadcast and all_gather on small tensors and time all_reduce on gradient-sized ones.

    Each process saves what it held before and after every operation to ``out/collectives_rank{r}.pt``.

    Args:
        out: Folder for the results.
        sizes: Numbers of float32 values to time all_reduce with (e.g. the parameter counts of two models).
        repeats: Timed all_reduce calls per size (the median is kept).
    """
    r, world = distributed.rank(), distributed.world_size()
    mine = torch.tensor([1.0, 2.0, 3.0, 4.0]) * 10**r  # process 0: 1 2 3 4; process 1: 10 20 30 40
    results: dict[str, Any] = {"rank": r, "world_size": world}

    x = mine.clone()
    torch.distributed.all_reduce(x, op=torch.distributed.ReduceOp.SUM)  # x becomes the sum, everywhere
    results["all_reduce"] = (mine, x)

    x = mine.clone()
    torch.distributed.broadcast(x, src=0)  # x becomes process 0's tensor, everywhere
    results["broadcast"] = (mine, x)

    gathered = [torch.empty_like(mine) for _ in range(world)]
    torch.distributed.all_gather(gathered, mine)  # everyone gets everyone's tensor, in rank order
    results["all_gather"] = (mine, torch.cat(gathered))

    timings = {}
    for size in sizes:
        grads = torch.randn(size)
        torch.distributed.all_reduce(grads)  # warm-up: the first call sets up buffers
        seconds = []
        for _ in range(repeats):
            torch.distributed.barrier()  # start together, so the time is the exchange, not the waiting
            start = time.perf_counter()
            torch.distributed.all_reduce(grads)
            seconds.append(time.perf_counter() - start)
        timings[size] = statistics.median(seconds)
    results["all_reduce_seconds"] = timings
    out.mkdir(parents=True, exist_ok=True)
    torch.save(results, out / f"collectives_rank{r}.pt")
    print(f"process {r} of {world}: done", flush=True)


def plot_collectives(out: Path) -> Any:
    """Draw what every process held before and after each collective, from the files ``collectives`` saved.

    Args:
        out: The folder passed to ``collectives``.

    Returns:
        The matplotlib Figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    runs = [torch.load(p, weights_only=True) for p in sorted(out.glob("collectives_rank*.pt"))]
    origin = {float(v): i for i, run in enumerate(runs) for v in run["all_reduce"][0]}  # value -> rank
    colors = ["#4c72b0", "#dd8452", "#55a868"]  # from process 0, from process 1, combined from several
    titles = {
        "all_reduce": ("all_reduce (SUM)", "every process gets the sum"),
        "broadcast": ("broadcast (from process 0)", "every process gets process 0's tensor"),
        "all_gather": ("all_gather", "every process gets every process's tensor, in rank order"),
    }
    fig, axes = plt.subplots(3, 2, figsize=(11, 6.2), layout="constrained")
    for row, op in enumerate(titles):
        for col in (0, 1):  # what each process held before, and after
            ax = axes[row, col]
            for i, run in enumerate(runs):
                values = run[op][col]
                y = len(runs) - 1 - i
                for j, v in enumerate(values.tolist()):
                    color = colors[min(origin.get(v, 2), 2)]
                    ax.add_patch(plt.Rectangle((j, y + 0.1), 0.95, 0.8, color=color, alpha=0.85))
                    ax.text(j + 0.47, y + 0.5, f"{v:g}", ha="center", va="center", color="white", fontsize=10)
                ax.text(-0.2, y + 0.5, f"process {run['rank']}", ha="right", va="center", fontsize=9)
            ax.set_xlim(-1.6, 8.1)
            ax.set_ylim(0, len(runs))
            ax.axis("off")
            name, effect = titles[op]
            ax.set_title(f"after {name}: {effect}" if col else f"before {name}", fontsize=9, loc="left")
    handles = [
        Patch(color=c, label=t)
        for c, t in zip(colors, ("from process 0", "from process 1", "summed"), strict=True)
    ]
    fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False)
    fig.get_layout_engine().set(rect=(0, 0.06, 1, 0.94))
    return fig


# ---------------------------------------------------------------------------------------------------------
# cu.fit in every process
# ---------------------------------------------------------------------------------------------------------
class _Faulty(nn.Module):
    """A model whose training step ``at`` in process ``rank`` goes wrong: a NaN output, or Ctrl-C (SIGINT)."""

    def __init__(self, model: nn.Module, kind: str, rank: int, at: int) -> None:
        super().__init__()
        self.model, self.kind, self.at, self.armed = model, kind, at, distributed.rank() == rank
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
    if data == "mnist":
        from .data import mnist

        bundle = mnist(subset=images, val_fraction=0.1, batch_size=batch_size, seed=seed, device=device)
        return bundle.train, bundle.val
    x, y = rendered_digits(images, seed=seed)
    n_val = images // 5
    common = {"mean": (0.1,), "std": (0.25,), "device": device, "seed": seed}
    train = TensorLoader(x[n_val:], y[n_val:], batch_size=batch_size, shuffle=True, **common)
    return train, TensorLoader(x[:n_val], y[:n_val], batch_size=256, **common)


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
) -> tuple[nn.Module, History]:
    """Train SimpleCNN with SGD through ``cu.fit`` on this process's shard (all the data in one process).

    Args:
        data: ``"synthetic"`` (rendered digits, no files needed) or ``"mnist"``.
        images: Images in all (a fifth is held out for validation).
        batch_size: Images per batch in each process.
        epochs: Passes over the training data.
        lr: Learning rate of plain SGD (no momentum, which would make rounding differences grow faster).
        seed: Seed for the weights, the split and the shuffling.
        device: Where to train.
        fault: ``(kind, rank, step)``: make training step ``step`` of process ``rank`` go wrong, kind
            ``"nan"`` or ``"interrupt"``.
        verbose: Let fit print (process 0 only).

    Returns:
        The model (unwrapped) and the History.
    """
    device = torch.device(device)
    train_loader, val_loader = _loaders(data, images, batch_size, seed, device)
    set_seed(seed)  # the same initial weights in every process (DDP also copies process 0's at the start)
    model: nn.Module = SimpleCNN().to(device)
    if fault is not None:
        model = _Faulty(model, *fault)
    if distributed.world_size() > 1:
        model = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    history = fit(
        model,
        distributed.shard(train_loader),
        distributed.shard(val_loader, pad=False),
        epochs=epochs,
        optimizer=optimizer,
        loss_fn=nn.CrossEntropyLoss(),
        device=device,
        verbose=verbose,
    )
    return distributed.unwrap(model), history


def main(argv: list[str] | None = None) -> None:
    """Command line: ``collectives`` or ``fit`` (see ``--help``)."""
    parser = argparse.ArgumentParser(prog="python -m course_utils.ddp_demo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    col = sub.add_parser("collectives", help="all_reduce, broadcast, all_gather; all_reduce timings")
    col.add_argument("--out", type=Path, required=True)
    col.add_argument("--sizes", type=int, nargs="*", default=[])
    col.add_argument("--repeats", type=int, default=5)
    fit_ = sub.add_parser("fit", help="SimpleCNN through cu.fit on each process's shard")
    fit_.add_argument("--out", type=Path, required=True)
    fit_.add_argument("--data", choices=["synthetic", "mnist"], default="synthetic")
    fit_.add_argument("--images", type=int, default=640)
    fit_.add_argument("--batch-size", type=int, default=32)
    fit_.add_argument("--epochs", type=int, default=2)
    fit_.add_argument("--lr", type=float, default=0.05)
    fit_.add_argument("--seed", type=int, default=0)
    fit_.add_argument("--fault", nargs=3, metavar=("KIND", "RANK", "STEP"), action="append", default=[])
    fit_.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)

    # The collectives run on CPU tensors, so with gloo even on a machine with GPUs.
    device = distributed.setup("gloo" if args.command == "collectives" else None, timeout_s=60)
    try:
        if args.command == "collectives":
            collectives(args.out, args.sizes, args.repeats)
            return
        args.out.mkdir(parents=True, exist_ok=True)
        r = distributed.rank()
        settings = {k: getattr(args, k) for k in ("data", "images", "batch_size", "epochs", "lr", "seed")}
        faults = [(kind, int(rank), int(step)) for kind, rank, step in args.fault] or [None]
        for fault in faults:  # each fault a fresh model; the process group lives on
            try:
                model, history = train(**settings, device=device, fault=fault, verbose=args.verbose)
            except NonFiniteLossError as exc:
                print(f"[process {r}] stopped: {exc} {' '.join(getattr(exc, '__notes__', []))}", flush=True)
                continue
            steps = model.steps if fault else None
            print(
                f"[process {r}] finished: interrupted={history.interrupted} epochs={history.epochs} "
                f"training steps run={steps}",
                flush=True,
            )
            record = {**history.to_dict(), "world_size": distributed.world_size()}
            (args.out / f"history_rank{r}.json").write_text(json.dumps(record))
            if distributed.is_main_process() and fault is None:
                save_checkpoint(model, args.out / "model.pt", history=history)  # one writer, atomic
    finally:
        distributed.cleanup()


if __name__ == "__main__":
    main()
