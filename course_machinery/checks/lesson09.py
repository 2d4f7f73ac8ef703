"""Checks for notebook 09 (scaling out): the effective batch, collectives, accumulation, averaging, a hang.

The checks of Exercises 4 and 5 run the learner's file in several processes: ``launch`` (torchrun, gloo on the
loopback interface, a hard time limit, every process stopped at the end) starts this very module, whose
``__main__`` part is the worker. Each process writes raw numbers to a JSON file (the learner's gradients and
weights, what it printed); the check judges them in its own process, next to a reference it computes there, out of
reach of the learner's file.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import datetime
import hashlib
import inspect
import io
import json
import math
import random
import re
import sys
import tempfile
import textwrap
import threading
import tokenize
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._feedback import NOT_YET, Verdict, failed, grade, number, passed, raised, typed_as_literal, unanswered

__all__ = [
    "grade",
    "scaled_setting",
    "predict_collectives",
    "train_accumulated",
    "average_gradients",
    "log_mean_loss",
]

PROCESSES = 3  # the checks of Exercises 4 and 5 run in 3 processes: the notebook's runs use 2
COLLECTIVE_TIMEOUT_S = 15  # a collective that waits longer fails (a hang becomes an error)
LAUNCH_TIMEOUT_S = 240  # then the launch is stopped, with every process it started
_WORKER = "course_machinery.checks.lesson09"


# ---------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------
def _has_stub(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Whether a function's body still holds the placeholder: a bare ``...`` (or nothing but a docstring)."""
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    stub = [
        s
        for s in body
        if isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant) and s.value.value is ...
    ]
    return bool(stub) or not body


def _is_placeholder(fn: Callable[..., Any]) -> bool:
    """Whether a function defined in a cell (or a file) still holds the placeholder ``...``."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return False
    node = tree.body[0] if tree.body else None
    return isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _has_stub(node)


def _last_def(source: str, name: str) -> ast.FunctionDef | None:
    """The last top-level ``def name`` in ``source`` (the one Python keeps when a file defines it twice)."""
    found = None
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            found = node
    return found


def _without_docstring(node: ast.FunctionDef) -> str:
    node = copy.deepcopy(node)
    if node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant):
        node.body = node.body[1:]
    return ast.dump(node, annotate_fields=False)


def _pair(value: Any) -> tuple[float, float] | None:
    if isinstance(value, (tuple, list)) and len(value) == 2:
        a, b = number(value[0]), number(value[1])
        if a is not None and b is not None:
            return a, b
    return None


def _numbers(value: Any) -> list[float] | None:
    """A flat list of numbers from a number, a tensor or a (nested) list of them; None if it is not one."""
    if isinstance(value, torch.Tensor):
        return [float(v) for v in value.detach().cpu().flatten().tolist()]
    if isinstance(value, (list, tuple)):
        out: list[float] = []
        for item in value:
            inner = _numbers(item)
            if inner is None:
                return None
            out += inner
        return out
    n = number(value)
    return None if n is None else [n]


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


# ---------------------------------------------------------------------------------------------------------
# Exercise 1: the effective batch size and the learning rate by the linear scaling rule
# ---------------------------------------------------------------------------------------------------------
def _settings(hidden: bool) -> list[dict[str, Any]]:
    rng = random.Random(1908)
    settings = [  # chosen so that the rules and the usual slips all give different answers
        {"processes": 3, "batch_per_process": 48, "accumulation": 2, "base_batch": 128, "base_lr": 0.03},
        {"processes": 6, "batch_per_process": 16, "accumulation": 1, "base_batch": 256, "base_lr": 0.4},
        {"processes": 8, "batch_per_process": 32, "accumulation": 4, "base_batch": 64, "base_lr": 0.01},
    ]
    while hidden and len(settings) < 15:
        s = {
            "processes": rng.choice([2, 3, 4, 5, 8, 12, 16]),
            "batch_per_process": rng.choice([8, 24, 32, 64, 100]),
            "accumulation": rng.choice([1, 2, 3, 4]),
            "base_batch": rng.choice([32, 128, 200, 512]),
            "base_lr": rng.choice([0.002, 0.05, 0.1, 0.3]),
        }
        if s["processes"] * s["batch_per_process"] * s["accumulation"] not in (
            s["base_batch"],
            4 * s["base_batch"],
        ):
            settings.append(s)
    return settings


def scaled_setting(fn: Callable[..., Any], *, hidden: bool = False) -> Verdict:
    """Exercise 1: ``fn(processes=, batch_per_process=, accumulation=, base_batch=, base_lr=)`` must return the
    effective batch size and the learning rate the linear scaling rule gives, for settings this check chooses."""
    if unanswered(fn):
        return NOT_YET
    if not callable(fn):
        return failed("scaled_setting must be a function (keep its def line).")
    if _is_placeholder(fn):
        unanswered(None)
        return NOT_YET
    for s in _settings(hidden):
        try:
            answer = fn(**s)
        except Exception as exc:  # the learner's code
            return raised(exc)
        if answer is None:
            return failed("scaled_setting returns nothing: return two numbers, (effective_batch, lr).")
        pair = _pair(answer)
        if pair is None:
            return failed(
                f"return two numbers, (effective_batch, lr); it returned {type(answer).__name__} {answer!r}."
            )
        batch, lr = pair
        p, b, k = s["processes"], s["batch_per_process"], s["accumulation"]
        want_batch = p * b * k
        if not _close(batch, want_batch):
            if _close(batch, b) or _close(batch, b * k):
                return failed(
                    "that is one process's batch. Every process takes its own batch at every step, and the "
                    "averaged gradient of all of them makes one update."
                )
            if k > 1 and _close(batch, p * b):
                return failed(
                    "the processes are counted; the accumulated micro-batches add to one update too."
                )
            return failed(
                "count the images behind one weight update: per process, per micro-batch, per accumulation."
            )
        ratio = want_batch / s["base_batch"]
        if _close(lr, s["base_lr"] * ratio):
            continue
        if _close(lr, s["base_lr"]):
            return failed(
                "the batch size is right, but the linear rule changes the learning rate with the batch."
            )
        if _close(lr, s["base_lr"] * math.sqrt(ratio)):
            return failed(
                "that is the square-root rule (often used with Adam); this exercise asks for the linear one."
            )
        if _close(lr, s["base_lr"] / ratio):
            return failed("the learning rate moved the wrong way: a larger batch averages out more noise.")
        return failed(
            "the batch size is right; the linear rule scales the learning rate by how much the batch grew."
        )
    return passed("the effective batch and the linearly scaled learning rate, for every setting tried.")


# ---------------------------------------------------------------------------------------------------------
# Exercise 2: predict what 4 processes hold after three collectives
# ---------------------------------------------------------------------------------------------------------
def predict_collectives(
    after_all_reduce: Any, after_all_gather: Any, after_broadcast: Any, *, hidden: bool = False
) -> Verdict:
    """Exercise 2: 4 processes, process r starts with ``torch.tensor([2.0 * r + 1])``. What process 2 holds after
    ``all_reduce`` (a sum), the list process 0 holds after ``all_gather``, and what process 0 holds after
    ``broadcast(x, src=2)``; each typed in as a value, before running anything."""
    if unanswered(after_all_reduce) or unanswered(after_all_gather) or unanswered(after_broadcast):
        return NOT_YET
    names = ("after_all_reduce", "after_all_gather", "after_broadcast")
    answers = (after_all_reduce, after_all_gather, after_broadcast)
    if any(typed_as_literal(name) is False for name in names) or not _the_names_values(names, answers):
        return failed(
            "type each prediction in as a value (a number, a list of numbers), worked out by hand: a "
            "prediction is not computed."
        )
    verdict = _judge_collectives(*answers)
    if verdict is None:
        return passed("all three predictions match what the collectives do.")
    # The specific hints tell wrong answers apart: after a few different wrong ones, a search for the answer
    # (a loop trying values) learns nothing more from them.
    _WRONG_PREDICTIONS.add(repr(tuple(_numbers(a) for a in answers)))
    if len(_WRONG_PREDICTIONS) > _SPECIFIC_HINTS:
        return failed(
            "not all three predictions match what the collectives do. Work each one out by hand from section 2's "
            "description of all_reduce, all_gather and broadcast."
        )
    return failed(verdict)


_SPECIFIC_HINTS = (
    3  # different wrong predictions in one kernel that get a specific hint; later ones a general one
)
_WRONG_PREDICTIONS: set[str] = set()


def _the_names_values(names: tuple[str, ...], answers: tuple[Any, ...]) -> bool:
    """In IPython, whether the check was given the values its answer names hold (not other values, tried in a
    loop); True elsewhere (plain Python has no namespace of the learner's to compare with)."""
    try:
        namespace = get_ipython().user_ns  # type: ignore[name-defined]  # noqa: F821
    except NameError:
        return True
    return all(
        name in namespace and namespace[name] is value for name, value in zip(names, answers, strict=True)
    )


def _judge_collectives(after_all_reduce: Any, after_all_gather: Any, after_broadcast: Any) -> str | None:
    """The hint for the first wrong prediction, or None when all three are right."""
    start = [torch.tensor([2.0 * r + 1]) for r in range(4)]  # what processes 0, 1, 2, 3 hold before

    reduced = _numbers(after_all_reduce)
    if reduced is None or len(reduced) != 1:
        return "after_all_reduce is one number: what process 2's tensor of one value holds afterwards."
    total = torch.stack(start).sum(dim=0)
    if not _close(reduced[0], total.item()):
        if _close(reduced[0], start[2].item()):
            return "all_reduce changes every process's tensor: each gets the operation over all processes."
        if _close(reduced[0], total.item() / 4):
            return "all_reduce's default operation is a sum, not a mean (DDP divides afterwards)."
        return "all_reduce gives every process the same result: the sum over all processes' tensors."

    gathered = _numbers(after_all_gather)
    want = torch.cat(start).tolist()
    if gathered is None or len(gathered) != 4:
        return "after_all_gather is a list of one number per process, as process 0 holds it afterwards."
    if not all(map(_close, gathered, want)):
        if sorted(gathered) == sorted(want):
            return "all_gather puts the processes' tensors in rank order, process 0's first."
        return "all_gather gives every process every process's tensor, unchanged, in rank order."

    broadcast = _numbers(after_broadcast)
    if broadcast is None or len(broadcast) != 1:
        return "after_broadcast is one number: what process 0's tensor of one value holds afterwards."
    if not _close(broadcast[0], start[2].item()):
        if _close(broadcast[0], start[0].item()):
            return "broadcast copies the tensor of the process named by src into every other process."
        return "broadcast copies one process's tensor, unchanged, into every process: which one is src?"
    return None


# ---------------------------------------------------------------------------------------------------------
# Exercise 3: gradient accumulation
# ---------------------------------------------------------------------------------------------------------
def _record_sizes(model: nn.Module, events: list[tuple[int, int]]) -> None:
    """Note ``(layer index, batch size)`` in ``events`` at every forward pass of each of ``model``'s layers, in any
    mode and however the layer is reached (``model[1:](x)`` too): forward pre-hooks on the layers themselves."""
    for index, layer in enumerate(model):
        layer.register_forward_pre_hook(
            lambda _, args, index=index: events.append(
                (
                    index,
                    args[0].shape[0] if args and isinstance(args[0], torch.Tensor) and args[0].dim() else -1,
                )
            )
        )


_FIRST_LINEAR = 1  # the index of the model's first Linear layer in Exercise 3's checks


def _accumulation_trials(hidden: bool) -> list[dict[str, Any]]:
    trials = [{"seed": 31, "accum": 3, "micro": 4, "batches": 3, "lr": 0.5, "momentum": 0.0}]
    if hidden:
        trials += [
            {"seed": 32, "accum": 2, "micro": 5, "batches": 4, "lr": 0.2, "momentum": 0.9},
            {"seed": 33, "accum": 4, "micro": 3, "batches": 2, "lr": 1.0, "momentum": 0.0},
            {"seed": 34, "accum": 1, "micro": 6, "batches": 3, "lr": 0.3, "momentum": 0.0},
        ]
    return trials


def _one_big_step(
    model: nn.Module, loader: list, lr: float, momentum: float, *, scale: float = 1.0, zero: bool = True
) -> nn.Module:
    """The reference: one step per batch on the whole batch (scale != 1 and zero=False: two classic slips)."""
    model = copy.deepcopy(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    for images, labels in loader:
        if zero:
            optimizer.zero_grad(set_to_none=True)
        (nn.functional.cross_entropy(model(images), labels) * scale).backward()
        optimizer.step()
    return model


def _largest(a: nn.Module, b: nn.Module) -> float:
    return max(
        (p.detach().cpu() - q.detach().cpu()).abs().max().item()
        for p, q in zip(a.parameters(), b.parameters(), strict=True)
    )


def train_accumulated(
    fn: Callable[..., Any], *, device: torch.device | str = "cpu", hidden: bool = False
) -> Verdict:
    """Exercise 3: ``fn(model, loader, optimizer, loss_fn, accum_steps)`` must make, from micro-batches only, the
    updates of one step per whole batch, on models, data and accumulation steps this check chooses."""
    if unanswered(fn):
        return NOT_YET
    if not callable(fn):
        return failed("train_accumulated must be a function (keep its def line).")
    if _is_placeholder(fn):
        unanswered(None)
        return NOT_YET
    for t in _accumulation_trials(hidden):
        generator = torch.Generator().manual_seed(t["seed"])
        batch = t["accum"] * t["micro"]
        loader = [
            (
                torch.randn(batch, 3, 4, generator=generator).to(device),
                torch.randint(0, 4, (batch,), generator=generator).to(device),
            )
            for _ in range(t["batches"])
        ]
        torch.manual_seed(t["seed"])
        model = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.Tanh(), nn.Linear(6, 4)).to(device)
        start = copy.deepcopy(model)
        events: list[tuple[int, int]] = []  # (layer, batch size) per forward pass of a layer; (-1, 0) a step
        _record_sizes(model, events)
        optimizer = torch.optim.SGD(model.parameters(), lr=t["lr"], momentum=t["momentum"])
        optimizer.register_step_post_hook(lambda *_, events=events: events.append((-1, 0)))
        try:
            fn(model, loader, optimizer, nn.CrossEntropyLoss(), t["accum"])
        except Exception as exc:  # the learner's code
            return raised(exc)
        steps = [i for i, (layer, _) in enumerate(events) if layer == -1]
        # The images the first Linear layer (which every route to the output takes) saw before each update
        windows = zip([-1, *steps], steps, strict=False)
        per_step = [[n for layer, n in events[a + 1 : b] if layer == _FIRST_LINEAR] for a, b in windows]
        if not any(layer >= 0 for layer, _ in events):
            return failed("your function never ran the model on the loader's batches.")
        if max(n for layer, n in events if layer >= 0) > t["micro"]:
            return failed(
                "the model ran on more images at once than one micro-batch: accumulation splits every batch "
                "into accum_steps parts and never runs the whole batch at once (that is the memory it saves)."
            )
        if len(steps) != t["batches"]:
            if not steps:
                return failed("the optimizer never stepped: there is one update per batch of the loader.")
            if len(steps) == t["batches"] * t["accum"]:
                return failed(
                    "one update per micro-batch: the micro-batches of a batch add up to one update."
                )
            return failed("make exactly one optimizer step per batch of the loader.")
        if any(sum(sizes) != batch for sizes in per_step):
            return failed(
                "each update comes from the model's passes over its whole batch, micro-batch by micro-batch, "
                "each image once: run the model itself on every micro-batch, and on nothing else."
            )
        if _largest(model, _one_big_step(start, loader, t["lr"], t["momentum"])) <= 1e-5:
            continue
        if _largest(model, _one_big_step(start, loader, t["lr"], t["momentum"], scale=t["accum"])) <= 1e-5:
            return failed(
                "backward() adds the micro-batches' gradients together: each loss needs scaling so that the "
                "sum is the whole batch's mean gradient."
            )
        if _largest(model, _one_big_step(start, loader, t["lr"], t["momentum"], zero=False)) <= 1e-5:
            return failed(
                "the gradients of the previous batch are still in .grad when the next batch starts."
            )
        return failed(
            "each update must equal one step on the whole batch: the mean gradient of all its images."
        )
    return passed("every update equals one step on the whole batch, from micro-batches only.")


# ---------------------------------------------------------------------------------------------------------
# Exercises 4 and 5: the learner's file, run in several processes
# ---------------------------------------------------------------------------------------------------------
_RESULTS: dict[
    tuple[str, str], tuple[list[dict[str, Any]] | None, str | None]
] = {}  # (task, file hash) -> run

_AVERAGE_TRIALS = [  # the first is the visible check's; grade judges all of them
    {"seed": 41, "steps": 4, "batch": 4, "lr": 0.2, "momentum": 0.0, "frozen": False},
    {"seed": 42, "steps": 3, "batch": 5, "lr": 0.1, "momentum": 0.9, "frozen": False},
    {"seed": 43, "steps": 3, "batch": 3, "lr": 0.3, "momentum": 0.0, "frozen": True},
]
_LOSS_TRIALS = [{"seed": 51}, {"seed": 52}, {"seed": 53}]

_BROKEN_LOG_MEAN_LOSS = """
def log_mean_loss(loss: torch.Tensor) -> None:
    rank = dist.get_rank()
    if rank == 0:  # process 0 reports the mean loss of all processes
        dist.all_reduce(loss)
        print(f"mean loss {loss.item() / dist.get_world_size():.3f}", flush=True)
"""


def _loss_values(seed: int, world_size: int) -> list[float]:
    """Each process's loss in a trial of Exercise 5: far enough apart that the mean, the sum and any one differ."""
    rng = random.Random(seed)
    return [round(rng.uniform(0.3, 0.9) + 0.8 * r, 3) for r in range(world_size)]


def _run(task: str, path: Path) -> tuple[list[dict[str, Any]] | None, str | None]:
    """Run ``task`` on the learner's file in PROCESSES processes (once per file content): (per-process results,
    error). The results list each process's dict in rank order; error is the first error a process reported."""
    from course_machinery.launch import launch

    key = (task, hashlib.sha256(path.read_bytes()).hexdigest())
    if key in _RESULTS:
        return _RESULTS[key]
    with tempfile.TemporaryDirectory(prefix="lesson09-check-") as folder, _elapsed(f"{PROCESSES} processes"):
        out = Path(folder)
        try:
            result = launch(
                _WORKER, task, path.resolve(), out, module=True, nproc=PROCESSES, threads=1,
                timeout=LAUNCH_TIMEOUT_S, env={"CUDA_VISIBLE_DEVICES": ""}, echo=False, check=False,
            )  # fmt: skip
        except TimeoutError:
            return None, f"TimeoutError: the processes did not finish within {LAUNCH_TIMEOUT_S} s"
        ranks = [
            json.loads(p.read_text()) if p.exists() else None
            for p in (out / f"rank{r}.json" for r in range(PROCESSES))
        ]
    errors = [r["error"] for r in ranks if r and r.get("error")]
    if errors or not all(ranks):
        lines = [ln for ln in result.output.splitlines() if re.search(r"Error|Exception", ln)]
        found = (
            errors[0]
            if errors
            else (lines[0] if lines else f"torchrun exited with status {result.returncode}")
        )
        run = (None, found)
    else:
        run = (ranks, None)
    _RESULTS[key] = run
    return run


@contextlib.contextmanager
def _elapsed(what: str) -> Iterator[None]:
    """A progress line (tqdm, gone afterwards) with the seconds elapsed while the check's processes run: starting
    them takes a while on a busy machine, and the check's one line of feedback comes only at the end."""
    from tqdm.auto import tqdm

    bar = tqdm(desc=f"checking in {what}", bar_format="{desc}: {elapsed}", leave=False)
    done = threading.Event()

    def tick() -> None:
        while not done.wait(1.0):
            bar.refresh()

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        yield
    finally:
        done.set()
        ticker.join()
        bar.close()


_HANG = ("timed out", "timeout", "connection closed", "connection reset", "broken pipe", "sigterm")


def _hung(error: str) -> bool:
    return any(word in error.lower() for word in _HANG)


def _answer_file(path: Any, name: str) -> tuple[Path | None, ast.FunctionDef | None, Verdict | None]:
    """The learner's file and its last ``def name``; or a verdict (❌) when there is none to run yet."""
    if unanswered(path):
        return None, None, NOT_YET
    path = Path(path)
    if not path.is_file():
        return (
            None,
            None,
            failed(f"there is no {path.name} yet: run the exercise's cell (it writes the file) first."),
        )
    try:
        node = _last_def(path.read_text(encoding="utf-8"), name)
    except SyntaxError as exc:
        return None, None, raised(exc)
    if node is None:
        return None, None, failed(f"{path.name} defines no function {name}: keep its def line.")
    if found := _meddling(path.read_text(encoding="utf-8")):
        return (
            None,
            None,
            failed(
                f"{path.name} uses {found}, which reaches into the program that runs it (its frames, modules "
                f"or profiler): {name} works with its argument and torch.distributed alone."
            ),
        )
    return path, node, None


# What no answer of Exercises 4 and 5 needs, only one that inspects or patches the check's worker (which runs the
# learner's file in its own processes, out of reach of a watch in the notebook's process).
_MEDDLING = re.compile(
    r"_getframe|\bf_locals\b|\bf_back\b|\bf_globals\b|\btb_frame\b|__traceback__|\bgc\s*\.|\bimport\s+gc\b"
    r"|\bfrom\s+gc\b|\bsys\s*\.\s*modules\b|setprofile|settrace|currentframe|\binspect\s*\.|\bimport\s+inspect\b"
    r"|\bfrom\s+inspect\b|__code__|__globals__|\bimportlib\b|__import__|\bimport\s+__main__\b|\bfrom\s+__main__\b"
    r"|\bbuiltins\b|__builtins__"
)


def _meddling(source: str) -> str | None:
    """The first thing in ``source`` (comments left out, strings kept) that only meddling with the worker needs."""
    try:
        tokens = [
            t.string
            for t in tokenize.generate_tokens(io.StringIO(source).readline)
            if t.type != tokenize.COMMENT
        ]
    except (tokenize.TokenError, SyntaxError):
        tokens = [source]
    found = _MEDDLING.search(" ".join(tokens))
    return re.sub(r"\s+", "", found.group()) if found else None


_TAMPERED_HINT = (
    "your file changes the code of the check that runs it: {name} works with its argument and torch.distributed "
    "alone."
)


def _exception(text: str) -> BaseException:
    """An exception that prints as the worker's error line (its type name and message)."""
    name, _, message = text.partition(": ")
    kind = type(name if name.isidentifier() else "Error", (Exception,), {})
    return kind(message if name.isidentifier() else text)


def average_gradients(path: Any, *, hidden: bool = False) -> Verdict:
    """Exercise 4: the file's ``average_gradients(model)``, called after backward() in each of 3 processes, must
    make the same updates as DistributedDataParallel (same seeds, same data), with models and seeds chosen here."""
    path, node, verdict = _answer_file(path, "average_gradients")
    if verdict is not None:
        return verdict
    if _has_stub(node):
        unanswered(None)
        return NOT_YET
    ranks, error = _run("average", path)
    if error is not None and _TAMPERED in error:
        return failed(_TAMPERED_HINT.format(name="average_gradients"))
    if error is not None:
        if _hung(error):
            return failed(
                "a process waited in vain for the others: every process must call the same collectives, in the "
                "same order."
            )
        if "NoneType" in error:
            return failed("a frozen parameter has no gradient (its .grad is None): leave it alone.")
        return raised(_exception(error))
    for trial in range(len(_AVERAGE_TRIALS) if hidden else 1):
        seen = [r["trials"][trial] for r in ranks]
        if any(s["weights_changed"] for s in seen):
            return failed(
                "your function changed the weights: it averages the gradients, the optimizer then updates."
            )
        want = _average_reference(_AVERAGE_TRIALS[trial], PROCESSES)
        if any(_same(s["grads"], want["local"][r]) for r, s in enumerate(seen)) and not all(
            _same(s["grads"], want["mean"]) for s in seen
        ):
            return failed(
                "a process kept its own gradient: the processes must combine their gradients (a collective), so "
                "that every process makes the same update."
            )
        if any(_same(s["grads"], want["sum"]) for s in seen):
            return failed("all_reduce adds the gradients; DDP's update uses their mean over the processes.")
        if not all(
            _same(s["grads"], want["mean"]) and _same(s["weights"], want["weights"], atol=1e-5) for s in seen
        ):
            return failed(
                "after your function every process must hold the mean of all processes' gradients (how many "
                "processes are there?)."
            )
    tried = f"{len(_AVERAGE_TRIALS)} runs" if hidden else "a run"
    return passed(
        f"in {tried} of {PROCESSES} processes, your averaging made the weights of DistributedDataParallel."
    )


def log_mean_loss(path: Any, *, hidden: bool = False) -> Verdict:
    """Exercise 5: the file's ``log_mean_loss(loss)``, called by each of 3 processes with a loss chosen here and
    followed by a barrier, must let every process go on while process 0 alone prints the mean loss."""
    path, node, verdict = _answer_file(path, "log_mean_loss")
    if verdict is not None:
        return verdict
    if _has_stub(node):
        unanswered(None)
        return NOT_YET
    broken = _last_def(_BROKEN_LOG_MEAN_LOSS, "log_mean_loss")
    if _without_docstring(node) == _without_docstring(broken):
        return failed(
            "log_mean_loss is still the broken one: repair it in its cell, run that cell, then this one."
        )
    ranks, error = _run("mean_loss", path)
    if error is not None and _TAMPERED in error:
        return failed(_TAMPERED_HINT.format(name="log_mean_loss"))
    if error is not None:
        if _hung(error):
            return failed(
                "a process still waits for the others: every process must take part in every collective, in "
                "the same order."
            )
        return raised(_exception(error))
    for trial in range(len(_LOSS_TRIALS) if hidden else 1):
        losses = _loss_values(_LOSS_TRIALS[trial]["seed"], PROCESSES)
        printed = [r["trials"][trial]["printed"].strip() for r in ranks]
        if any(printed[1:]):
            return failed("only process 0 prints: the other processes' output would repeat it.")
        if not printed[0]:
            return failed("process 0 printed nothing: it reports the mean loss.")
        shown = [float(n) for n in re.findall(r"-?\d+\.?\d*(?:[eE][-+]?\d+)?", printed[0])]
        if len(shown) != 1:
            return failed(
                "process 0 reports one number at each call, the mean loss: a report with several numbers in it "
                "leaves the reader to guess which one it is."
            )
        mean = sum(losses) / len(losses)
        if any(abs(n - mean) < 6e-4 for n in shown):
            continue
        if any(abs(n - sum(losses)) < 6e-4 for n in shown):
            return failed(
                "process 0 printed the sum of the losses: the mean divides by the number of processes."
            )
        if any(abs(n - losses[0]) < 6e-4 for n in shown):
            return failed("process 0 printed its own loss: the mean is over all processes' losses.")
        return failed(
            "process 0 printed another number than the mean of all processes' losses (how many are there?)."
        )
    return passed(f"all {PROCESSES} processes went on, and process 0 alone printed the mean of their losses.")


# ---------------------------------------------------------------------------------------------------------
# The worker: python -m course_machinery.checks.lesson09 TASK ANSWER_FILE OUT_DIR, under torchrun
# ---------------------------------------------------------------------------------------------------------
def _average_model(t: dict[str, Any]) -> nn.Module:
    """Exercise 4's model for trial ``t``: the same initial weights in every process and in the check."""
    torch.manual_seed(t["seed"])
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
    if t["frozen"]:
        model[0].requires_grad_(False)  # a frozen layer: its parameters have no gradient
    return model


def _average_batches(t: dict[str, Any], world: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The global batch of every step of trial ``t``; process r takes rows r, r + world, ..."""
    generator = torch.Generator().manual_seed(t["seed"] + 1000)
    batches = []
    for _ in range(t["steps"]):
        images = torch.randn(world * t["batch"], 1, 6, 6, generator=generator)
        batches.append((images, torch.randint(0, 5, (world * t["batch"],), generator=generator)))
    return batches


def _sgd(model: nn.Module, t: dict[str, Any]) -> torch.optim.SGD:
    trainable = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(trainable, lr=t["lr"], momentum=t["momentum"])


def _average_trial(average: Callable[[nn.Module], Any], t: dict[str, Any]) -> dict[str, Any]:
    """The worker's part of a trial of Exercise 4: train with the learner's averaging, and report raw numbers
    only (the gradients after the first averaging, the final weights); the check judges them. No reference runs
    in this process, so nothing of it is within reach of the learner's call."""
    import torch.distributed as dist

    rank, world = dist.get_rank(), dist.get_world_size()
    model = _average_model(t)
    optimizer = _sgd(model, t)
    grads, changed = None, False
    for images, labels in _average_batches(t, world):
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(images[rank::world]), labels[rank::world]).backward()
        before = [p.detach().clone() for p in model.parameters()]
        average(model)
        changed |= not all(
            torch.equal(b, p.detach()) for b, p in zip(before, model.parameters(), strict=True)
        )
        if grads is None:
            grads = [
                None if p.grad is None else p.grad.detach().flatten().tolist() for p in model.parameters()
            ]
        optimizer.step()
    weights = [p.detach().flatten().tolist() for p in model.parameters()]
    return {"grads": grads, "weights": weights, "weights_changed": changed}


def _average_reference(t: dict[str, Any], world: int) -> dict[str, Any]:
    """In the check's own process: what DistributedDataParallel does in ``world`` processes, in one. DDP's
    gradient is the mean of the processes' gradients; each process's own (``local``) and their sum are the
    usual slips. Returns the first step's gradients of each kind and the final weights."""
    with torch.random.fork_rng():
        model = _average_model(t)
    optimizer = _sgd(model, t)
    first: dict[str, list[Any]] | None = None
    for images, labels in _average_batches(t, world):
        local = []
        for rank in range(world):
            model.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(images[rank::world]), labels[rank::world]).backward()
            local.append([None if p.grad is None else p.grad.detach().clone() for p in model.parameters()])
        mean = [
            None if g is None else sum(grads[i] for grads in local) / world for i, g in enumerate(local[0])
        ]
        if first is None:
            first = {"mean": mean, "sum": [None if g is None else g * world for g in mean], "local": local}
        for p, g in zip(model.parameters(), mean, strict=True):
            p.grad = g
        optimizer.step()
    return {**first, "weights": [p.detach().clone() for p in model.parameters()]}


def _same(got: list[Any] | None, want: list[torch.Tensor | None], *, atol: float = 1e-6) -> bool:
    """Whether the numbers a worker reported (flat lists, None for no gradient) equal ``want``'s tensors."""
    if got is None or len(got) != len(want):
        return False
    for g, w in zip(got, want, strict=True):
        if (g is None) != (w is None):
            return False
        if w is not None and (
            len(g) != w.numel() or not torch.allclose(torch.tensor(g), w.flatten(), rtol=1e-4, atol=atol)
        ):
            return False
    return True


def _loss_trial(log: Callable[[torch.Tensor], Any], t: dict[str, Any]) -> dict[str, Any]:
    import torch.distributed as dist

    rank, world = dist.get_rank(), dist.get_world_size()
    loss = torch.tensor([_loss_values(t["seed"], world)[rank]])
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown):
        log(loss)
    dist.barrier()  # the rest of the program: every process goes on together
    return {"printed": shown.getvalue()}


_TAMPERED = "AnswerChangedTheWorker"  # the error a worker reports when the answer file changed its code


def _fingerprint(namespace: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """Each name of the worker's module with the identity of its value (and of its code, for a function)."""
    return {k: (id(v), id(getattr(v, "__code__", None))) for k, v in namespace.items()}


def _worker(task: str, answer: Path, out: Path) -> None:
    import importlib.util
    import os
    import traceback

    import torch.distributed as dist

    # Bound before the learner's file runs: a file that replaces this module's functions changes nothing here,
    # and is caught by the fingerprint below.
    trial, trials = {"average": (_average_trial, _AVERAGE_TRIALS), "mean_loss": (_loss_trial, _LOSS_TRIALS)}[
        task
    ]
    name = {"average": "average_gradients", "mean_loss": "log_mean_loss"}[task]
    trials = copy.deepcopy(trials)
    namespace = globals()
    before = _fingerprint(namespace)
    write, dumps = Path.write_text, json.dumps
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=COLLECTIVE_TIMEOUT_S))
    rank = dist.get_rank()
    report: dict[str, Any] = {"rank": rank, "trials": [], "error": None}
    try:
        spec = importlib.util.spec_from_file_location(f"answer_{task}", answer)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if _fingerprint(namespace) != before:
            raise RuntimeError(f"{_TAMPERED}: the answer file changed the check's worker")
        report["trials"] = [trial(getattr(module, name), t) for t in trials]
        if _fingerprint(namespace) != before:
            raise RuntimeError(f"{_TAMPERED}: the answer file changed the check's worker")
    except Exception as exc:  # the learner's code, or a collective that timed out
        report["trials"] = []
        report["error"] = (
            f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        )
        traceback.print_exc()
    write(out / f"rank{rank}.json", dumps(report))
    if report["error"]:
        sys.stdout.flush()
        os._exit(1)  # torchrun then stops the other processes, which may wait in a collective
    dist.destroy_process_group()


if __name__ == "__main__":
    _worker(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
