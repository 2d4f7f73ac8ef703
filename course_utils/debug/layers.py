"""Per-layer statistics while training: activations, dead units, gradient norms and update ratios, with hooks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from torch import nn

from .._step import infer_device
from .routine import _restored

# Modules whose output is worth watching although they hold no parameters.
_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid)
_KEYS = ("act_mean", "act_std", "zero_frac", "dead_frac", "grad_norm", "update_ratio")


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
