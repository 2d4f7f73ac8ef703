"""Tools for the debugging routine: loss at init, overfitting one batch, an LR range test, layer statistics."""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from torch import nn

from ._step import infer_device
from .utils import eval_mode, kept_modes

__all__ = [
    "loss_at_init",
    "overfit_one_batch",
    "OverfitResult",
    "lr_range_test",
    "LRRangeResult",
    "LayerStats",
    "layer_stats",
]

OptimizerLike = torch.optim.Optimizer | Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
# Modules whose output is worth watching although they hold no parameters.
_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid)
_KEYS = ("act_mean", "act_std", "zero_frac", "dead_frac", "grad_norm", "update_ratio")


@contextlib.contextmanager
def _restored(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> Iterator[None]:
    """Put back weights, buffers (BatchNorm statistics), gradients, modes and optimizer state on exit."""
    state = copy.deepcopy(model.state_dict())
    opt_state = copy.deepcopy(optimizer.state_dict()) if optimizer is not None else None
    grads = [(p, None if p.grad is None else p.grad.clone()) for p in model.parameters()]
    with kept_modes(model):
        try:
            yield
        finally:
            model.load_state_dict(state)  # copies in place: the optimizer's references stay valid
            if opt_state is not None:
                optimizer.load_state_dict(opt_state)  # also puts back each group's lr
            for p, g in grads:
                p.grad = g


def _make_optimizer(model: nn.Module, optimizer: OptimizerLike) -> torch.optim.Optimizer:
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    if callable(optimizer):
        return optimizer(model.parameters())
    raise TypeError(
        "optimizer must be a torch optimizer built on model.parameters(), or a function that builds one, e.g. "
        f"lambda params: torch.optim.SGD(params, lr=0.01); got {type(optimizer).__name__}"
    )


def loss_at_init(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, loss_fn: nn.Module, *, verbose: bool = True
) -> float:
    """The loss on a batch in eval mode, beside ln(C), the loss of a uniform guess over C classes.

    Args:
        model: The freshly built classifier (its modes are kept).
        images: A batch of inputs, prepared as for training.
        labels: Their class indices.
        loss_fn: The training loss, e.g. ``nn.CrossEntropyLoss()``.
        verbose: Print the loss beside ln(C).

    Returns:
        The mean loss on the batch.
    """
    device = infer_device(model, None)
    with eval_mode(model), torch.no_grad():
        outputs = model(images.to(device))  # (batch, num_classes)
        loss = float(loss_fn(outputs, labels.to(device)))
    if verbose:
        chance = math.log(outputs.shape[1])
        print(f"loss at init {loss:.4f}; ln({outputs.shape[1]}) = {chance:.4f}; ratio {loss / chance:.2f}")
    return loss


class OverfitResult(NamedTuple):
    """What :func:`overfit_one_batch` saw; ``fits`` is its rule of thumb: every image right, loss below 5% of
    where it started."""

    losses: list[float]
    acc: float
    fits: bool


def overfit_one_batch(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    loss_fn: nn.Module,
    optimizer: OptimizerLike,
    *,
    steps: int = 100,
    verbose: bool = True,
) -> OverfitResult:
    """Train on one small batch again and again: a sound setup drives its loss to about 0.

    Turn off what is meant to prevent this first (dropout, weight decay, label smoothing). The model,
    its gradients and modes, and the optimizer are restored afterwards.

    Args:
        model: The classifier.
        images: One small batch (e.g. 32 images), prepared as for training.
        labels: Their class indices.
        loss_fn: The training loss.
        optimizer: An optimizer built on ``model.parameters()``, or a function ``params -> optimizer``.
        steps: Training steps on the batch.
        verbose: Print the first and last loss, the final accuracy and the verdict.

    Returns:
        An OverfitResult (``losses``, ``acc``, ``fits``).
    """
    device = infer_device(model, None)
    images, labels = images.to(device), labels.to(device)
    optimizer = _make_optimizer(model, optimizer)
    losses = []
    with _restored(model, optimizer):
        model.train()
        for _ in range(steps):
            loss = loss_fn(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        with eval_mode(model), torch.no_grad():
            acc = float((model(images).argmax(dim=1) == labels).float().mean())
    result = OverfitResult(losses, acc, acc == 1.0 and losses[-1] < 0.05 * losses[0])
    if verbose:
        verdict = "it fits one batch" if result.fits else "it does NOT fit one batch: find out why first"
        print(f"{steps} steps on {len(labels)} images: loss {losses[0]:.4f} -> {losses[-1]:.4f}, ", end="")
        print(f"accuracy {acc:.0%}: {verdict}")
    return result


@dataclass
class LRRangeResult:
    """The learning rates tried, the smoothed loss at each, the raw losses and a suggestion (a heuristic)."""

    lrs: list[float]
    losses: list[float]
    raw_losses: list[float]
    suggestion: float

    def plot(self, *, mark: dict[str, float] | None = None, ax: Any = None) -> Figure:
        """Loss against learning rate (log scale); the suggestion dashed and ``mark``'s lrs dotted."""
        if ax is None:
            _, ax = plt.subplots(figsize=(7, 3.8), layout="constrained")
        ax.plot(self.lrs, self.losses, color="C0", label="smoothed training loss")
        ax.axvline(self.suggestion, color="C2", ls="--", label=f"suggestion {self.suggestion:.2g} (min / 10)")
        for i, (name, lr) in enumerate((mark or {}).items()):
            ax.axvline(lr, color=f"C{3 + i}", ls=":", lw=2, label=f"{name}: {lr:.2g}")
        ax.set(xscale="log", xlabel="learning rate", ylabel="loss", title="Learning-rate range test")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        return ax.figure


def lr_range_test(
    model: nn.Module,
    train_loader: Iterable,
    loss_fn: nn.Module,
    optimizer: OptimizerLike,
    *,
    start_lr: float = 1e-5,
    end_lr: float = 10.0,
    steps: int = 100,
    beta: float = 0.9,
    stop_factor: float = 4.0,
) -> LRRangeResult:
    """Train briefly while the learning rate grows exponentially from ``start_lr`` to ``end_lr``.

    The loss barely moves (lr too small), then falls, then explodes (too large); the test stops when the
    smoothed loss exceeds ``stop_factor`` times its minimum or is NaN. The suggestion (the lr of the lowest
    loss / 10, fastai v1's rule) is a heuristic to confirm with a short run. The model (weights, BatchNorm
    statistics, gradients, modes) and the optimizer (state, lrs) are restored; only the loader's shuffling
    and the random generators move on.

    Args:
        model: The network to test.
        train_loader: Training batches ``(images, labels)``; passes restart as needed.
        loss_fn: The training loss.
        optimizer: An optimizer built on ``model.parameters()``, or a function ``params -> optimizer``.
        start_lr: The first learning rate.
        end_lr: The last learning rate (if the loss has not blown up before).
        steps: Number of training steps (batches).
        beta: Smoothing of the loss curve (exponential moving average, bias-corrected).
        stop_factor: Stop when the smoothed loss exceeds this multiple of its minimum.

    Returns:
        An LRRangeResult with ``lrs``, smoothed ``losses``, ``raw_losses`` and ``suggestion``.
    """
    if not 0 < start_lr < end_lr or steps < 2:
        raise ValueError(f"need 0 < start_lr < end_lr and steps >= 2; got {start_lr}, {end_lr}, {steps}")
    if hasattr(train_loader, "__len__") and len(train_loader) == 0:
        raise ValueError("the training loader yields no batches; is the dataset empty?")
    device = infer_device(model, None)
    optimizer = _make_optimizer(model, optimizer)
    factor = (end_lr / start_lr) ** (1 / (steps - 1))
    batches = itertools.islice(itertools.chain.from_iterable(itertools.repeat(train_loader)), steps)
    lrs, losses, raw, average = [], [], [], 0.0
    with _restored(model, optimizer):
        model.train()
        for step, (images, labels) in enumerate(batches):
            lr = start_lr * factor**step
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = loss_fn(model(images.to(device)), labels.to(device))
            value = loss.item()
            if not math.isfinite(value):
                break
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            average = beta * average + (1 - beta) * value
            lrs.append(lr)
            raw.append(value)
            losses.append(average / (1 - beta ** (step + 1)))  # bias-corrected: early values not pulled to 0
            if losses[-1] > stop_factor * min(losses):
                break
    if len(losses) < 2:
        raise ValueError(
            "the loss was NaN or infinite from the first steps: check the inputs and the loss at init first, "
            "then lower start_lr"
        )
    best = min(range(len(losses)), key=losses.__getitem__)
    return LRRangeResult(lrs, losses, raw, lrs[best] / 10)


class LayerStats:
    """Record each layer's output and weight-gradient statistics at every training step, with hooks.

    A context manager around any training code; its hooks are removed when the block ends, even after an
    error. Only forward passes with gradients enabled count (``no_grad`` evaluation is skipped). Hooks see
    modules only: ``F.relu(x)`` is invisible, ``nn.ReLU()`` is not. Per layer and step,
    ``records[name][key]`` holds ``act_mean`` and ``act_std`` (of the output), ``zero_frac`` (outputs exactly
    0: after a ReLU, inactive), ``dead_frac`` (units, i.e. channels or features, 0 for every image of the
    batch), ``grad_norm`` (of the weight's ``.grad`` as the optimizer uses it, after any accumulation) and
    ``update_ratio`` (the change a step's update made to the weight / the weight's norm, measured at the next
    forward pass, so the last step has none; around 1e-3 is healthy by Karpathy's rule of thumb).

    Args:
        model: The network to watch.
        modules: ``{name: module}`` to watch; default: every leaf module with parameters, and activations.
        loss_fn: If given, also record the loss at every step (``losses``) and the first batch as training
            saw it (``first_batch``: the model's input and the loss's targets).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        modules: dict[str, nn.Module] | None = None,
        loss_fn: nn.Module | None = None,
    ) -> None:
        if modules is None:
            modules = {
                name: m
                for name, m in model.named_modules()
                if not list(m.children())
                and (list(m.parameters(recurse=False)) or isinstance(m, _ACTIVATIONS))
            }
        if not modules:
            raise ValueError("found no layer to watch: pass modules={name: module}")
        self.model, self.modules, self.loss_fn = model, modules, loss_fn
        self.records: dict[str, dict[str, list[float]]] = {n: {k: [] for k in _KEYS} for n in modules}
        self.losses: list[float] = []
        self.first_batch: tuple[torch.Tensor, torch.Tensor | None] | None = None
        self._previous: dict[str, torch.Tensor] = {}
        self._handles: list[Any] = []

    def __enter__(self) -> LayerStats:
        try:
            self._handles.append(self.model.register_forward_pre_hook(self._model_input))
            for name, module in self.modules.items():
                self._handles.append(module.register_forward_hook(self._forward(name)))
                weight = getattr(module, "weight", None)
                if isinstance(weight, nn.Parameter) and weight.requires_grad:
                    self._handles.append(weight.register_post_accumulate_grad_hook(self._gradient(name)))
            if self.loss_fn is not None:
                self._handles.append(self.loss_fn.register_forward_hook(self._loss))
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove every hook (``with`` does it on exit); the statistics stay."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _model_input(self, module: nn.Module, args: tuple) -> None:
        if torch.is_grad_enabled() and self.first_batch is None and args:
            self.first_batch = (args[0].detach().cpu().clone(), None)

    def _forward(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            if not (torch.is_grad_enabled() and isinstance(output, torch.Tensor)):
                return
            out, rec = output.detach().float(), self.records[name]
            zero = out == 0
            units = tuple(d for d in range(out.ndim) if d != 1) if out.ndim > 1 else (0,)  # all but channels
            std = out.std() if out.numel() > 1 else out.new_zeros(())
            values = torch.stack([out.mean(), std, zero.float().mean(), zero.all(dim=units).float().mean()])
            for key, value in zip(_KEYS[:4], values.tolist(), strict=True):  # one transfer to the host
                rec[key].append(value)
            weight = getattr(module, "weight", None)
            if isinstance(weight, torch.Tensor):  # the change since the previous step is the last update
                if name in self._previous:
                    change = (weight.detach() - self._previous[name]).norm() / (
                        weight.detach().norm() + 1e-12
                    )
                    rec["update_ratio"].append(float(change))
                self._previous[name] = weight.detach().clone()

        return hook

    def _gradient(self, name: str) -> Callable[[torch.Tensor], None]:
        def hook(param: torch.Tensor) -> None:
            self.records[name]["grad_norm"].append(float(param.grad.norm()))

        return hook

    def _loss(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        if torch.is_grad_enabled():
            self.losses.append(float(output.detach()))
            if self.first_batch is not None and self.first_batch[1] is None and len(args) > 1:
                self.first_batch = (self.first_batch[0], args[1].detach().cpu().clone())

    def table(self, step: int = -1) -> str:
        """One line per layer with its statistics at ``step`` (default: the last one); '-' where none."""

        def cell(values: list[float], fmt: str) -> str:
            return format(values[step], fmt) if -len(values) <= step < len(values) else "-"

        head = f"{'layer':<20}{'act mean':>10}{'act std':>10}{'zeros':>7}{'dead':>7}{'grad norm':>11}{'update':>9}"
        lines = [head]
        for name, r in self.records.items():
            lines.append(
                f"{name + ' ' + type(self.modules[name]).__name__:<20}{cell(r['act_mean'], '.3f'):>10}"
                f"{cell(r['act_std'], '.3f'):>10}{cell(r['zero_frac'], '.0%'):>7}{cell(r['dead_frac'], '.0%'):>7}"
                f"{cell(r['grad_norm'], '.2e'):>11}{cell(r['update_ratio'], '.1e'):>9}"
            )
        return "\n".join(lines)

    def plot(self, keys: tuple[str, ...] = ("act_std", "dead_frac", "grad_norm", "update_ratio")) -> Figure:
        """One panel per statistic, one line per layer, against the training step."""
        fig, axes = plt.subplots(
            1, len(keys), figsize=(3.6 * len(keys), 3.4), layout="constrained", squeeze=False
        )
        for ax, key in zip(axes[0], keys, strict=True):
            for i, (name, r) in enumerate(self.records.items()):
                if r[key]:
                    ax.plot(r[key], color=f"C{i % 10}", label=f"{name} {type(self.modules[name]).__name__}")
            if key in ("grad_norm", "update_ratio") and any(
                v > 0 for r in self.records.values() for v in r[key]
            ):
                ax.set_yscale("log")  # these span orders of magnitude
            ax.set(title=key, xlabel="step")
            ax.grid(alpha=0.3)
        handles, names = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, names, loc="outside lower center", ncols=min(6, len(names)), fontsize=8)
        return fig


def layer_stats(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, loss_fn: nn.Module
) -> LayerStats:
    """Layer statistics of one forward and backward pass on one batch, leaving the model as it was.

    Args:
        model: The network, in the mode to inspect (train mode shows what training sees).
        images: A batch of inputs.
        labels: Their class indices.
        loss_fn: The training loss.

    Returns:
        A LayerStats holding one step (print its ``table()``); its hooks are already removed.
    """
    device = infer_device(model, None)
    with _restored(model), LayerStats(model) as stats:  # puts back gradients and BatchNorm statistics too
        loss_fn(model(images.to(device)), labels.to(device)).backward()
    return stats
