"""Checks for lesson 08 (debugging training): a hook written by hand, and the repaired runs of the bug hunt.

A repaired run is judged in two ways. Short probes, on training data the check chooses (other sizes, seeds and,
for run D, other pixel values), watch the run from outside with hooks: which optimizer steps and with what
settings, what the model receives, what the loss receives, whether the optimizer steps with this batch's
gradient, how the learning rate moves. They make sure that the repaired function is still *that* run, with its
own choices kept and its fault gone (another run of the notebook, such as the worked example's, does not
pass). Then the run trains on the notebook's budget and must reach the target.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from ._feedback import NOT_YET, Verdict, failed, grade, passed, raised, unanswered

__all__ = [
    "grade",
    "fixed_run",
    "dead_channels",
    "run_b",
    "run_c",
    "run_d",
    "run_e",
    "run_g",
]

_ROUTINE = (
    "run the routine on your version (a batch with its labels, the loss at init, one batch, the learning "
    "rate, the layer statistics) and compare what it shows with a healthy run"
)
_KEEP = "repair only what is broken and keep the rest of the run as it was written"

MEAN, STD, BATCH_SIZE = 0.1307, 0.3081, 64  # the notebook's constants (section 7)


# ---------------------------------------------------------------------------------------------------------
# Exercise 1: dead channels, with hooks
# ---------------------------------------------------------------------------------------------------------
class _Branches(nn.Module):
    """A network that is not an nn.Sequential: two branches, ReLU modules called in a non-obvious order."""

    def __init__(self, channels: int, hidden: int, size: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, channels, 3, padding=1)
        self.act_stem = nn.ReLU()
        self.side = nn.Conv2d(channels, channels, 1)
        self.act_side = nn.ReLU()
        self.head = nn.Linear(channels * size * size, hidden)
        self.act_head = nn.ReLU()
        self.out = nn.Linear(hidden, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act_stem(self.stem(x))
        x = x + self.act_side(self.side(x))
        return self.out(self.act_head(self.head(x.flatten(1))))


def _kill(layer: nn.Module, units: list[int]) -> None:
    """Make the given output units of `layer` negative for every input: the ReLU after them is dead there."""
    with torch.no_grad():
        layer.weight[units] = 0.0
        layer.bias[units] = -1.0


def _expected_dead(model: nn.Module, images: torch.Tensor) -> dict[str, float]:
    found: dict[str, float] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, nn.ReLU):

            def hook(module: nn.Module, args: Any, output: torch.Tensor, name: str = name) -> None:
                dims = [d for d in range(output.ndim) if d != 1]
                found[name] = (output == 0).all(dim=dims).float().mean().item()

            handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(images)
    finally:
        for handle in handles:
            handle.remove()
    return found


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def dead_channels(fn: Callable[..., Any] | None, *, hidden: bool = False) -> Verdict:
    """Exercise 1: ``fn(model, images)`` returns {name: share of dead channels} for every nn.ReLU of the model."""
    if unanswered(fn):
        return NOT_YET
    if not callable(fn):
        return failed(f"give your function itself (its name, without parentheses); got {type(fn).__name__}.")
    cases = [(0, 6, 5, 8, True), (1, 4, 7, 6, False)] + (
        [(2, 8, 9, 10, True), (3, 5, 4, 12, True)] if hidden else []
    )
    for seed, channels, width, size, train_mode in cases:
        gen = torch.Generator().manual_seed(100 + seed)
        with torch.random.fork_rng(devices=[]):  # the learner's random state is left as it was
            torch.manual_seed(100 + seed)
            model = _Branches(channels, width, size)
        for layer, n in ((model.stem, channels), (model.side, channels), (model.head, width)):
            dead = torch.randperm(n, generator=gen)[: int(torch.randint(0, n, (1,), generator=gen))]
            _kill(layer, dead.tolist())
        model.train(train_mode)
        images = torch.randn(int(torch.randint(3, 9, (1,), generator=gen)), 1, size, size, generator=gen)
        expected = _expected_dead(model, images)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        try:
            answer = fn(model, images)
        except Exception as exc:  # the learner's code failed: one line, never raise
            return raised(exc)
        if _hooks(model):
            return failed(
                "your function left hooks on the model: remove every hook it attached (handle.remove())."
            )
        if model.training != train_mode or any(
            not torch.equal(before[k], v) for k, v in model.state_dict().items()
        ):
            return failed(
                "your function changed the model (its weights or its train/eval mode); only watch it."
            )
        if not isinstance(answer, dict):
            return failed(
                f"return a dict {{name of the ReLU module: share of dead channels}}; got {type(answer).__name__}."
            )
        if set(answer) != set(expected):
            return failed(
                "return one entry per nn.ReLU module, keyed by its name in model.named_modules(), for any model "
                "(not only an nn.Sequential), and nothing else."
            )
        for name, value in expected.items():
            got = answer[name]
            got = got.item() if isinstance(got, torch.Tensor) and got.numel() == 1 else got
            if not isinstance(got, (int, float)) or not math.isclose(float(got), value, abs_tol=1e-6):
                return failed(
                    "a channel counts as dead only when it outputs 0 at every position of every image of the "
                    "batch; the share is over the channels (dimension 1) of each ReLU's output."
                )
    return passed(
        "your hooks find the dead channels of every ReLU, on networks and batches you did not choose."
    )


# ---------------------------------------------------------------------------------------------------------
# The bug hunt: watching a run from outside
# ---------------------------------------------------------------------------------------------------------
class _Trace:
    """What a run did, seen through hooks."""

    def __init__(self) -> None:
        self.optimizers: list[torch.optim.Optimizer] = []
        self.lrs: list[float] = []  # the first parameter group's learning rate at every optimizer step
        self.batch_sizes: list[int] = []
        self.inputs: list[torch.Tensor] = []  # the model's input at its first training passes
        self.losses: list[float] = []
        self.probabilities = False  # the loss received rows that are probabilities
        self.stale = False  # the optimizer stepped with a gradient that is not this step's alone
        self.preds: Any = None
        self.error: BaseException | None = None


def _trace(
    run: Callable[..., Any],
    data: Any,
    *,
    make_model: Callable[[], nn.Module],
    train: slice,
    steps: int,
    seed: int,
    pixels: Callable[[torch.Tensor], torch.Tensor] | None = None,
    val_size: int = 2000,
    progress: str | None = None,
) -> _Trace:
    """Call ``run`` on a fresh model and the given slice of the training data, watching it with hooks.

    With ``progress``, a progress bar (tqdm, gone afterwards) counts the run's training steps under that name.
    """
    trace = _Trace()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=progress, unit="step", leave=False)
    train_images, train_labels = data.train.images[train], data.train.labels[train]
    if pixels is not None:
        train_images = pixels(train_images)
    val_images = data.val.images[:val_size]
    devices = [train_images.get_device()] if train_images.is_cuda else []
    with torch.random.fork_rng(devices=devices):  # the learner's random state is left as it was
        torch.manual_seed(seed)
        model = make_model().to(train_images.device)
        own = {id(p) for p in model.parameters()}
        watched = [p for p in model.parameters() if p.requires_grad][-2:]  # the last layer's weight and bias
        fresh: dict[int, torch.Tensor | None] = {}
        loss_fn = nn.CrossEntropyLoss()

        def model_input(module: nn.Module, args: tuple) -> None:
            if torch.is_grad_enabled() and args and isinstance(args[0], torch.Tensor):
                trace.batch_sizes.append(len(args[0]))
                if len(trace.inputs) < 3:
                    trace.inputs.append(args[0].detach().float().clone())

        def loss_seen(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            if torch.is_grad_enabled():
                trace.losses.append(float(output.detach()))
                if bar is not None:
                    bar.update()
                scores = args[0].detach() if args and isinstance(args[0], torch.Tensor) else None
                if scores is not None and scores.ndim == 2 and bool((scores >= 0).all()):
                    rows = scores.sum(dim=1)
                    if torch.allclose(rows, torch.ones_like(rows), atol=1e-3):
                        trace.probabilities = True

        def grad_seen(index: int) -> Callable[[torch.Tensor], None]:
            def hook(grad: torch.Tensor) -> None:
                fresh[index] = grad.detach().clone()  # this backward pass's gradient, before accumulation

            return hook

        def before_step(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            params = [p for group in optimizer.param_groups for p in group["params"]]
            if not any(id(p) in own for p in params):
                return  # an optimizer of some other model
            if not trace.optimizers or trace.optimizers[-1] is not optimizer:
                trace.optimizers.append(optimizer)
            trace.lrs.append(float(optimizer.param_groups[0]["lr"]))
            for i, p in enumerate(watched):
                used, new = p.grad, fresh.get(i)
                # compared on the CPU: the hook's gradient and .grad may be told apart by device tracking
                if (
                    used is None
                    or new is None
                    or not torch.allclose(used.cpu(), new.cpu(), rtol=1e-4, atol=1e-7)
                ):
                    trace.stale = True
                fresh[i] = None

        handles = [
            model.register_forward_pre_hook(model_input),
            loss_fn.register_forward_hook(loss_seen),
            register_optimizer_step_pre_hook(before_step),
            *(p.register_hook(grad_seen(i)) for i, p in enumerate(watched)),
        ]
        try:
            trace.preds = run(
                model, loss_fn, train_images.clone(), train_labels.clone(), val_images.clone(), steps
            )
        except Exception as exc:  # the learner's code failed: reported on one line by the check
            trace.error = exc
        finally:
            for handle in handles:
                handle.remove()
            if bar is not None:
                bar.close()
    return trace


def _setting(optimizer: torch.optim.Optimizer, key: str) -> Any:
    return optimizer.param_groups[0].get(key, optimizer.defaults.get(key))


def _same_optimizer(trace: _Trace, kind: str, settings: dict[str, Any], run: str) -> str | None:
    """A hint when the run no longer steps with its own optimizer and settings (learning rate included if given)."""
    if not trace.optimizers:
        return "your run never called optimizer.step(): it must train the model it is given."
    opt = trace.optimizers[0]
    ok = type(opt).__name__ == kind and len(trace.optimizers) == 1
    for key, value in settings.items():
        got = trace.lrs[0] if key == "lr" else _setting(opt, key)
        ok = ok and (
            tuple(got) == tuple(value) if isinstance(value, tuple) else math.isclose(float(got), value)
        )
    if not ok:
        return f"your repair changed run {run}'s optimizer or its settings; {_KEEP}."
    return None


def _inputs_match(
    trace: _Trace, train_images: torch.Tensor, expected: Callable[[torch.Tensor], torch.Tensor]
) -> bool:
    """Whether every image the model received first is one of ``expected(train_images)`` (any order)."""
    if not trace.inputs:
        return False
    table = expected(train_images.float()).flatten(1).cpu()
    for batch in trace.inputs[:2]:
        rows = batch.flatten(1).cpu()
        if rows.shape[1] != table.shape[1]:
            return False
        nearest = torch.cdist(rows, table, compute_mode="donot_use_mm_for_euclid_dist").min(dim=1).values
        if bool((nearest > 1e-3 * math.sqrt(rows.shape[1])).any()):
            return False
    return True


def _mnist(pixels: torch.Tensor) -> torch.Tensor:
    return (pixels / 255 - MEAN) / STD


def _common(trace: _Trace, steps: int) -> str | None:
    if trace.error is not None:
        return "raised"
    if len(trace.losses) > steps:
        return f"your run computed the loss {len(trace.losses)} times; it may train for {steps} steps only."
    if trace.losses and max(trace.batch_sizes, default=0) > BATCH_SIZE:
        return f"your run trains on batches of more than {BATCH_SIZE} images; {_KEEP}."
    return None


def _accuracy(trace: _Trace, data: Any, val_size: int) -> float | str:
    val_labels = data.val.labels[:val_size]
    preds = trace.preds
    if not isinstance(preds, torch.Tensor) or preds.shape != val_labels.shape or preds.is_floating_point():
        got = tuple(preds.shape) if isinstance(preds, torch.Tensor) else type(preds).__name__
        return (
            f"return one predicted class index per validation image, a tensor of shape ({len(val_labels)},) "
            f"(outputs.argmax(dim=1)); got {got}."
        )
    return float((preds.to(val_labels.device) == val_labels).float().mean())


_FULL_RUNS: dict[tuple, _Trace] = {}  # the last run trained on the full budget
Judge = Callable[[_Trace, torch.Tensor, int], str | None]  # (trace, the run's training images, steps) -> hint


def _judge_run(
    run: Any,
    data: Any,
    *,
    make_model: Callable[[], nn.Module],
    steps: int,
    target: float,
    hidden: bool,
    judge: Judge,
    probes: list[tuple[int, int, int]],
    more_probes: list[tuple[int, int, int]],
    pixels: Callable[[torch.Tensor], torch.Tensor] | None = None,
    train_size: int = 8192,
    val_size: int = 2000,
) -> Verdict:
    """Probe the run on short trainings of the check's choosing (offset, size, steps), then train it to the target."""
    if unanswered(run):
        return NOT_YET
    if not callable(run):
        return failed(f"give your function itself (its name, without parentheses); got {type(run).__name__}.")
    available = len(data.train.images)
    for i, (offset, size, probe_steps) in enumerate(probes + (more_probes if hidden else [])):
        offset = min(offset, max(0, available - size))
        train = slice(offset, offset + size)
        trace = _trace(
            run,
            data,
            make_model=make_model,
            train=train,
            steps=probe_steps,
            seed=10 + i,
            pixels=pixels,
            val_size=32,
        )
        hint = _common(trace, probe_steps)
        if hint == "raised":
            return raised(trace.error)  # type: ignore[arg-type]
        images = data.train.images[train]
        hint = hint or judge(trace, pixels(images) if pixels is not None else images, probe_steps)
        if hint:
            return failed(hint)
    key = (run, id(data), make_model, steps, train_size, val_size)
    trace = _FULL_RUNS.get(
        key
    )  # the hidden test, right after the visible check, need not train the same run again
    if trace is None:
        trace = _trace(
            run,
            data,
            make_model=make_model,
            train=slice(0, train_size),
            steps=steps,
            seed=0,
            val_size=val_size,
            progress=f"training your run for {steps} steps",
        )
        _FULL_RUNS.clear()
        _FULL_RUNS[key] = trace
    hint = _common(trace, steps)
    if hint == "raised":
        return raised(trace.error)  # type: ignore[arg-type]
    hint = hint or judge(trace, data.train.images[:train_size], steps)
    if hint:
        return failed(hint)
    acc = _accuracy(trace, data, val_size)
    if isinstance(acc, str):
        return failed(acc)
    if acc < target - 1e-9:
        if not all(math.isfinite(v) for v in trace.losses):
            end = "its training loss became NaN or infinite"
        elif trace.losses:
            end = f"its training loss ended at {trace.losses[-1]:.3f}"
        else:
            end = "it never called loss_fn"
        return failed(
            f"your run reached {acc:.1%} validation accuracy in {steps} steps, below the {target:.0%} target "
            f"({end}); {_ROUTINE}."
        )
    kept = "keeps its own choices and " if probes else ""
    return passed(
        f"your repaired run {kept}reached {acc:.1%} validation accuracy in {steps} steps "
        f"(target {target:.0%})."
    )


_PROBES = [
    (0, 256, 6)
]  # (offset into the training images, how many, steps): short runs of the check's choosing
_MORE = [(1000, 192, 5), (3000, 320, 7)]


# ---------------------------------------------------------------------------------------------------------
# Run A (the worked example): the target only
# ---------------------------------------------------------------------------------------------------------
def fixed_run(
    run: Callable[..., Any] | None,
    data: Any,
    *,
    make_model: Callable[[], nn.Module],
    steps: int,
    target: float,
    hidden: bool = False,
) -> Verdict:
    """The worked example's check: train ``run`` on the budget and score its predictions against the target."""
    return _judge_run(
        run, data, make_model=make_model, steps=steps, target=target, hidden=hidden,
        judge=lambda trace, images, steps: None, probes=[], more_probes=[],
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------------------
# Exercises 2 to 5: runs B, C, D and E
# ---------------------------------------------------------------------------------------------------------
def _judge_b(trace: _Trace, images: torch.Tensor, steps: int) -> str | None:
    settings = {"lr": 0.02, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}
    hint = _same_optimizer(trace, "SGD", settings, "B")
    if hint:
        return hint
    if not _inputs_match(trace, images, _mnist):
        return f"your repair changed how run B prepares its images; {_KEEP}."
    if trace.stale:
        return (
            "at some step your optimizer did not step with the gradient of that step's batch alone: compare "
            "grad_norm step after step with the healthy run's."
        )
    return None


def run_b(
    run: Any,
    data: Any,
    *,
    make_model: Callable[[], nn.Module],
    steps: int,
    target: float,
    hidden: bool = False,
) -> Verdict:
    """Exercise 2: run B repaired, its optimizer (SGD, Nesterov, weight decay) and its images as they were."""
    return _judge_run(
        run, data, make_model=make_model, steps=steps, target=target, hidden=hidden,
        judge=_judge_b, probes=_PROBES, more_probes=_MORE,
    )  # fmt: skip


def _pm1(pixels: torch.Tensor) -> torch.Tensor:
    return (pixels / 255 - 0.5) / 0.5


def _judge_c(trace: _Trace, images: torch.Tensor, steps: int) -> str | None:
    hint = _same_optimizer(trace, "SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": False}, "C")
    if hint:
        return hint
    if not _inputs_match(trace, images, _pm1):
        return f"your repair changed how run C scales its images; {_KEEP}."
    if trace.probabilities:
        return (
            "what your loss function receives is still not what nn.CrossEntropyLoss expects: read what it does "
            "to its input first."
        )
    return None


def run_c(
    run: Any,
    data: Any,
    *,
    make_model: Callable[[], nn.Module],
    steps: int,
    target: float,
    hidden: bool = False,
) -> Verdict:
    """Exercise 3: run C repaired, its images still scaled to [-1, 1]."""
    return _judge_run(
        run, data, make_model=make_model, steps=steps, target=target, hidden=hidden,
        judge=_judge_c, probes=_PROBES, more_probes=_MORE,
    )  # fmt: skip


def _own_statistics(train_images: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Run D's intent: normalise with the mean and std of the training images it is given, whatever they are."""
    scaled = train_images.float() / 255
    mean, std = scaled.mean(), scaled.std()
    return lambda pixels: (pixels / 255 - mean) / std


def _judge_d(trace: _Trace, images: torch.Tensor, steps: int) -> str | None:
    hint = _same_optimizer(trace, "SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": False}, "D")
    if hint:
        return hint
    if not _inputs_match(trace, images, _own_statistics(images)):
        return (
            "on training images of the check's choosing, what reaches your model is not those images normalised "
            "to mean 0 and std 1 with the statistics of the very data it was given; follow the pixels from the "
            "file to the model, in numbers."
        )
    return None


def _other_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """The check's own images: darker and on a grey background, so that MNIST's statistics no longer fit them."""
    return (pixels.float() * 0.6 + 70).round().to(torch.uint8)


def run_d(
    run: Any,
    data: Any,
    *,
    make_model: Callable[[], nn.Module],
    steps: int,
    target: float,
    hidden: bool = False,
) -> Verdict:
    """Exercise 4: run D repaired, still normalising with the statistics of whatever data it is given."""
    return _judge_run(
        run, data, make_model=make_model, steps=steps, target=target, hidden=hidden,
        judge=_judge_d, probes=_PROBES, more_probes=_MORE, pixels=_other_pixels,
    )  # fmt: skip


def _judge_e(trace: _Trace, images: torch.Tensor, steps: int) -> str | None:
    hint = _same_optimizer(trace, "Adam", {"betas": (0.9, 0.999), "weight_decay": 0.0}, "E")
    if hint:
        return hint
    if not _inputs_match(trace, images, _mnist):
        return f"your repair changed how run E prepares its images; {_KEEP}."
    if len(set(trace.lrs)) > 1:
        return f"your repair changes the learning rate during the run; {_KEEP}: one setting is wrong."
    return None


def run_e(
    run: Any,
    data: Any,
    *,
    make_model: Callable[[], nn.Module],
    steps: int,
    target: float,
    hidden: bool = False,
) -> Verdict:
    """Exercise 5: run E repaired, still training with Adam."""
    return _judge_run(
        run, data, make_model=make_model, steps=steps, target=target, hidden=hidden,
        judge=_judge_e, probes=_PROBES, more_probes=_MORE,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------------------
# Exercise 6: run G, a fault of a kind no earlier cell shows
# ---------------------------------------------------------------------------------------------------------
def _judge_g(trace: _Trace, images: torch.Tensor, steps: int) -> str | None:
    hint = _same_optimizer(trace, "SGD", {"momentum": 0.9, "nesterov": False}, "G")
    if hint:
        return hint
    if not _inputs_match(trace, images, _mnist):
        return f"your repair changed how run G prepares its images; {_KEEP}."
    first = trace.lrs[0]
    if not math.isclose(first, 0.05):
        return f"your repair changed the learning rate run G starts with; {_KEEP}."
    per_pass = len(images) / BATCH_SIZE  # steps in one pass over the training images
    for k, lr in enumerate(trace.lrs):
        halvings = math.log2(first / lr) if lr > 0 else math.inf
        if (
            not math.isclose(halvings, round(halvings), abs_tol=1e-3)
            or abs(halvings - k / per_pass) >= 1 + 1e-9
        ):
            return (
                "run G's plan for its learning rate, as its comment states it, is not what your run does; watch "
                "the size of every update (and optimizer.param_groups[0]['lr']) step after step, on training sets "
                "of other sizes too."
            )
    return None


def run_g(
    run: Any,
    data: Any,
    *,
    make_model: Callable[[], nn.Module],
    steps: int,
    target: float,
    hidden: bool = False,
) -> Verdict:
    """Exercise 6: run G repaired, its learning rate following the plan its comment states, for any data size."""
    return _judge_run(
        run, data, make_model=make_model, steps=steps, target=target, hidden=hidden,
        judge=_judge_g, probes=[(0, 256, 10)], more_probes=[(500, 200, 9), (2000, 448, 16)],
    )  # fmt: skip
