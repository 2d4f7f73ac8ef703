"""Tests for cu.distributed (sharding, fit's checks) and cu.fit under torchrun in 2 CPU processes
(course_machinery.ddp_worker, started by course_machinery.launch). Lesson 09's exercise checks are tested in
test_exercises_09.py."""

from __future__ import annotations

import json
import math
import re
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import course_utils as cu
from course_machinery import ddp_worker
from course_machinery.launch import LaunchResult, launch
from course_utils import distributed
from course_utils._loop import CHECK_EVERY

TORCHRUN = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="this torch build has no torch.distributed with the gloo backend, which torchrun on CPUs needs",
)
# Hard limit per torchrun launch. Measured: 20-35 s on a busy 2-core machine, most of it importing torch in
# three processes; the training itself takes about a second. The launcher kills every process it started
# when the limit is reached, so a hang fails the test instead of blocking the suite.
LAUNCH_TIMEOUT = 180


def _identity_loader(n: int, batch_size: int, **kwargs: object) -> cu.data.TensorLoader:
    """A loader whose labels are the sample indices, so a batch says which samples it holds."""
    return cu.data.TensorLoader(
        torch.zeros(n, 1, 2, 2, dtype=torch.uint8), torch.arange(n), batch_size=batch_size, **kwargs
    )


def _epoch(loader: object) -> list[list[int]]:
    return [labels.tolist() for _, labels in loader]


# ---------------------------------------------------------------------------------------------------------
# Sharding, without processes (rank and world size passed explicitly)
# ---------------------------------------------------------------------------------------------------------
def test_one_process_gets_the_loader_itself():
    loader = _identity_loader(10, 4)
    assert distributed.shard(loader) is loader  # no process group: world size 1
    assert distributed.shard(loader, rank=0, world_size=1) is loader


@pytest.mark.parametrize("world", [2, 3])
def test_shards_together_hold_the_batches_of_one_process_with_world_times_the_batch(world):
    single = _identity_loader(96, 8 * world, shuffle=True, seed=5)
    shards = [
        distributed.shard(_identity_loader(96, 8, shuffle=True, seed=5), rank=r, world_size=world)
        for r in range(world)
    ]
    epochs = []
    for _ in range(2):  # the permutation is shared by all processes and changes every epoch
        per_rank = [_epoch(s) for s in shards]
        expected = _epoch(single)
        assert all(len(batches) == len(expected) for batches in per_rank)
        for k, batch in enumerate(expected):
            assert sorted(sum((batches[k] for batches in per_rank), [])) == sorted(batch)
        epochs.append(expected)
    assert epochs[0] != epochs[1]


def test_padded_shards_are_equal_and_cover_every_sample():
    n, world = 101, 4
    shards = [
        distributed.shard(_identity_loader(n, 8, shuffle=True), rank=r, world_size=world) for r in range(4)
    ]
    seen = [sum(_epoch(s), []) for s in shards]
    assert {len(s) for s in seen} == {26} and {len(s) for s in shards} == {4}  # ceil(101 / 4) = 26 each
    assert set(sum(seen, [])) == set(range(n))  # 3 samples appear twice, none is missing


def test_unpadded_shards_hold_every_sample_once():
    n, world = 101, 4
    shards = [
        distributed.shard(_identity_loader(n, 8), rank=r, world_size=world, pad=False) for r in range(4)
    ]
    seen = [sum(_epoch(s), []) for s in shards]
    assert sorted(sum(seen, [])) == list(range(n))
    assert max(map(len, seen)) - min(map(len, seen)) <= 1


def test_dataloader_shard_gets_a_distributed_sampler_that_fit_moves_to_the_next_epoch():
    dataset = TensorDataset(torch.zeros(40, 1), torch.arange(40))
    loader = DataLoader(dataset, batch_size=5, shuffle=True, generator=torch.Generator().manual_seed(0))
    shards = [distributed.shard(loader, rank=r, world_size=2) for r in range(2)]
    assert all(isinstance(s.sampler, DistributedSampler) for s in shards)
    first = [sum(_epoch(s), []) for s in shards]
    assert sorted(first[0] + first[1]) == list(range(40))
    for s in shards:
        distributed.start_epoch(s, 2)  # what cu.fit does at the start of every epoch
    second = [sum(_epoch(s), []) for s in shards]
    assert sorted(second[0] + second[1]) == list(range(40)) and second != first


def test_shard_rejects_what_it_cannot_split():
    with pytest.raises(ValueError, match="rank"):
        distributed.shard(_identity_loader(10, 2), rank=2, world_size=2)
    with pytest.raises(TypeError, match="TensorLoader or a DataLoader"):
        distributed.shard([1, 2, 3], rank=0, world_size=2)


def test_fit_in_several_processes_refuses_a_plain_model_and_a_padded_validation_shard(monkeypatch, digits):
    train, val = digits
    monkeypatch.setattr(distributed, "world_size", lambda: 2)  # as if under torchrun with 2 processes
    model = cu.SimpleCNN()
    with pytest.raises(ValueError, match="DistributedDataParallel"):
        cu.fit(
            model,
            train,
            epochs=1,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            loss_fn=nn.CrossEntropyLoss(),
        )
    wrapped = type("DistributedDataParallel", (nn.Module,), {})()  # stands in for a wrapped model
    with pytest.warns(UserWarning, match="shard"):
        distributed.check_ready(wrapped, train, None)
    padded_val = distributed.shard(val, rank=0, world_size=3)  # 256 images: 2 repeated to give 3 x 86
    with pytest.raises(ValueError, match="pad=False"):
        distributed.check_ready(wrapped, distributed.shard(train, rank=0, world_size=3), padded_val)


def test_without_torchrun_this_is_the_one_and_main_process():
    assert distributed.world_size() == 1 and distributed.rank() == 0 and distributed.is_main_process()


# ---------------------------------------------------------------------------------------------------------
# torchrun --standalone --nproc_per_node=2, gloo on the loopback interface
# ---------------------------------------------------------------------------------------------------------
def _running(marker: Path) -> list[int]:
    """Processes (not yet reaped zombies excluded) whose command line names ``marker`` (a script, a folder)."""
    if not sys.platform.startswith("linux"):
        return []  # reads /proc
    found = []
    for entry in Path("/proc").iterdir():
        try:
            running = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
            if entry.name.isdigit() and running and str(marker) in (entry / "cmdline").read_text():
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def _worker(out: Path, *args: str) -> LaunchResult:
    """course_machinery.ddp_worker in 2 processes; each writes what it printed to ``out/output_rank{r}.txt``."""
    result = launch(
        "course_machinery.ddp_worker",
        "--out",
        out,
        *args,
        module=True,
        nproc=2,
        threads=1,
        timeout=LAUNCH_TIMEOUT,
        echo=False,
    )
    assert not _running(out), "a process of the launch outlived it"
    return result


def _output(out: Path, rank: int, result: LaunchResult) -> list[str]:
    """The lines process ``rank`` printed, apart from the other process's (which share one stdout)."""
    log = out / f"output_rank{rank}.txt"
    assert log.exists(), f"process {rank} wrote no output file. The launch printed:\n{result.tail(40)}"
    return log.read_text(encoding="utf-8").splitlines()


@TORCHRUN
@pytest.mark.slow  # starts processes (10-20 s each): run by `course.py test --all` and CI
def test_two_processes_train_like_one_process_with_twice_the_batch(tmp_path):
    result = _worker(tmp_path, "--batch-size", "32", "--epochs", "2", "--verbose")
    reference, ref_history = ddp_worker.train(batch_size=64, epochs=2)  # one process, batches of 2 x 32

    trained = cu.SimpleCNN()
    cu.load_checkpoint(trained, tmp_path / "model.pt")
    diff = max((trained.state_dict()[k] - v).abs().max().item() for k, v in reference.state_dict().items())
    # The same data, batches and initial weights: only the order of float additions differs, and its rounding
    # can grow over the 16 SGD steps (measured: 3e-8; the same run in one process with batches of 32, i.e. a
    # wrong equivalence, differs by 0.034, and another seed by 0.65). Weights are of the order of 0.4.
    assert diff < 1e-4, f"2 processes x batch 32 and 1 process x batch 64 differ by {diff:.2e}"

    histories = [json.loads((tmp_path / f"history_rank{r}.json").read_text()) for r in range(2)]
    assert histories[0] == histories[1], "every process must hold the same history"
    assert histories[0]["world_size"] == 2
    assert histories[0]["train_loss"] == pytest.approx(ref_history.train_loss, rel=1e-4)
    assert histories[0]["val_acc"] == pytest.approx(ref_history.val_acc, abs=1 / 128)  # one image at most

    first, second = ("\n".join(_output(tmp_path, r, result)) for r in range(2))
    assert first.count("Training SimpleCNN") == 1 and first.count("epoch 2/2: train_loss") == 1, first
    assert "in 2 processes" in first
    assert "Training" not in second and "train_loss" not in second, "process 1 must not print fit's lines"
    assert "[process 0] finished" in first and "[process 1] finished" in second


@TORCHRUN
@pytest.mark.slow  # starts processes (10-20 s each): run by `course.py test --all` and CI
def test_every_process_validates_and_keeps_the_same_model_batchnorm_statistics_included(tmp_path):
    """Each process updates its own BatchNorm statistics with its own batches; before validation every process
    takes process 0's, so all score one model (the same val_acc) and keep_best keeps one model."""
    _worker(tmp_path, "--model", "improved", "--epochs", "1")
    histories = [json.loads((tmp_path / f"history_rank{r}.json").read_text()) for r in range(2)]
    assert histories[0]["buffer_sums"] == histories[1]["buffer_sums"], (
        "the processes hold different statistics"
    )
    assert histories[0]["val_acc"] == histories[1]["val_acc"]


def test_fit_takes_over_ctrl_c_only_and_leaves_sigterm_to_end_the_process(monkeypatch):
    """torchrun sends SIGTERM to the survivors when a process fails: one stuck in a collective must end at once."""
    import signal

    monkeypatch.setattr(distributed, "world_size", lambda: 2)  # as if under torchrun
    sigterm, sigint = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with distributed.stop_together():
        assert signal.getsignal(signal.SIGTERM) is sigterm
        assert signal.getsignal(signal.SIGINT) is not sigint  # deferred, so all processes stop together
    assert signal.getsignal(signal.SIGINT) is sigint


def test_sharding_a_dataloader_keeps_its_options():
    def init(worker_id: int) -> None:
        torch.manual_seed(worker_id)

    loader = DataLoader(
        TensorDataset(torch.arange(10.0)), batch_size=2, num_workers=1, worker_init_fn=init,
        persistent_workers=True, prefetch_factor=3, timeout=30,
    )  # fmt: skip
    sharded = distributed.shard(loader, rank=1, world_size=2)
    assert sharded.worker_init_fn is init and sharded.persistent_workers and sharded.prefetch_factor == 3
    assert sharded.timeout == 30 and sharded.num_workers == 1 and len(sharded.sampler) == 5


# The worker's defaults: 640 images, a fifth held out, batches of 32 in each of 2 processes.
STEPS_PER_EPOCH = (640 - 640 // 5) // (2 * 32)


def _check_at(step: int) -> int:
    """The step whose end reads the loss (an all-reduce under torchrun) first at or after ``step``: fit reads it
    every CHECK_EVERY steps and at the end of the epoch, so every process stops there."""
    return min(math.ceil(step / CHECK_EVERY) * CHECK_EVERY, STEPS_PER_EPOCH)


@TORCHRUN
@pytest.mark.slow  # starts processes (10-20 s each): run by `course.py test --all` and CI
def test_nan_or_ctrl_c_in_one_process_stops_both_at_the_same_step(tmp_path):
    # Process 1 alone gets Ctrl-C (SIGINT) at step 3, then, in a second run, a NaN loss at step 2.
    start = time.monotonic()
    result = _worker(tmp_path, "--fault", "interrupt", "1", "3", "--fault", "nan", "1", "2")
    assert result.returncode == 0 and time.monotonic() - start < LAUNCH_TIMEOUT
    stop = _check_at(2)
    first = stop - (stop - 1) % CHECK_EVERY  # the first step since the previous read
    where = f"step {stop}" if first == stop else f"steps {first}-{stop}"
    for r in range(2):
        lines = _output(tmp_path, r, result)
        finished = [line for line in lines if line.startswith(f"[process {r}] finished:")]
        stopped = [line for line in lines if line.startswith(f"[process {r}] stopped:")]
        expected = f"[process {r}] finished: interrupted=True epochs=0 training steps run={_check_at(3)}"
        assert finished == [expected], lines
        assert len(stopped) == 1 and f"in epoch 1, {where}." in stopped[0], lines
        named = re.search(r"not finite in process\(es\) \[([\d, ]*)\]; all 2 stopped here", stopped[0])
        # Process 1's NaN reaches process 0 too when DDP averages the gradients, so both may be named.
        assert named and 1 in {int(n) for n in named[1].split(",")}, stopped[0]


@TORCHRUN
@pytest.mark.slow  # starts processes (10-20 s each): run by `course.py test --all` and CI
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find the worker processes")
def test_a_hanging_launch_is_stopped_with_every_process_it_started(tmp_path):
    script = tmp_path / "hang.py"
    script.write_text(
        "import os, pathlib, time\n"
        f"pathlib.Path({str(tmp_path)!r}, 'started' + os.environ['RANK']).touch()\n"
        "time.sleep(600)  # a worker that never finishes\n"
    )
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="did not finish within 15 s"):
        launch(script, nproc=2, timeout=15, echo=False)
    assert time.monotonic() - start < 45  # 15 s, then a few seconds to stop everything
    # Each process says it started in a file of its own, not on the stdout they share.
    assert (tmp_path / "started0").exists() and (tmp_path / "started1").exists(), "the workers never started"
    assert not _running(script), "a process of the launch outlived its timeout"


# What notebook 09 (section 6) says a step of cu.fit exchanges, counted in a real run with PyTorch's profiler.
_COUNT_COLLECTIVES = """
import collections, json, sys
from pathlib import Path

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

import course_utils as cu

steps, epochs = int(sys.argv[2]), int(sys.argv[3])
device = cu.distributed.setup(timeout_s=60)
generator = torch.Generator().manual_seed(0)
n = steps * 2 * 8  # 2 processes x batches of 8
images = torch.randint(0, 256, (n + 64, 28, 28), dtype=torch.uint8, generator=generator)
labels = torch.randint(0, 10, (n + 64,), generator=generator)
train = cu.distributed.shard(cu.data.TensorLoader(images[64:], labels[64:], batch_size=8, shuffle=True))
val = cu.distributed.shard(cu.data.TensorLoader(images[:64], labels[:64], batch_size=32), pad=False)
cu.set_seed(0)
model = nn.parallel.DistributedDataParallel(cu.SimpleCNN())  # its weights' broadcast: before the count
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
with profile(activities=[ProfilerActivity.CPU]) as prof:
    cu.fit(model, train, val, epochs=epochs, optimizer=optimizer, loss_fn=nn.CrossEntropyLoss(), verbose=False)
counts = collections.Counter(e.name for e in prof.events() if e.name.startswith("gloo:"))
Path(sys.argv[1], f"collectives_rank{cu.distributed.rank()}.json").write_text(json.dumps(counts))
cu.distributed.cleanup()
"""


@TORCHRUN
@pytest.mark.slow  # starts processes (10-20 s each): run by `course.py test --all` and CI
def test_fit_exchanges_one_all_reduce_per_step_and_a_few_small_ones_per_epoch(tmp_path):
    """Per step, DDP all-reduces SimpleCNN's gradients (0.2 MB: one bucket); per epoch, cu.fit adds its NaN and
    Ctrl-C check every CHECK_EVERY steps and at the end, and the metrics; DDP broadcasts its bucket layout once."""
    script = tmp_path / "count_collectives.py"
    script.write_text(_COUNT_COLLECTIVES)
    steps, epochs = CHECK_EVERY + 10, 2  # one check inside each epoch, one at its end
    result = launch(script, tmp_path, steps, epochs, nproc=2, threads=1, timeout=LAUNCH_TIMEOUT, echo=False)
    assert not _running(script), "a process of the launch outlived it"
    assert result.returncode == 0, result.tail(40)
    for rank in range(2):
        counts = json.loads((tmp_path / f"collectives_rank{rank}.json").read_text())
        per_epoch = steps + (steps // CHECK_EVERY + 1) + 1  # gradients, fit's checks, the epoch's metrics
        assert counts.get("gloo:all_reduce") == epochs * per_epoch, counts
        assert set(counts) <= {"gloo:all_reduce", "gloo:broadcast"}, counts
        assert counts.get("gloo:broadcast", 0) <= 2, f"broadcasts at every step or epoch: {counts}"
