"""What training returns: History (per-epoch metrics, like Keras' History) and Predictions."""

from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import torch


@dataclass
class History:
    """Per-epoch metrics of one :func:`fit` run, like Keras' ``History``.

    Attributes:
        train_loss: Mean training loss of each epoch (weighted by sample count).
        train_acc: Training accuracy of each epoch, as a fraction.
        val_loss: Validation loss of each epoch (empty without a validation loader).
        val_acc: Validation accuracy of each epoch (empty without a validation loader).
        epoch_time: Wall-clock seconds of each epoch (training and validation).
        lr: Learning rate of each epoch's last training step.
        interrupted: True when training was stopped early with Ctrl-C.
        precision: The precision training used (``"fp32"`` or ``"bf16"``; ``"auto"`` resolved).
        name: The run's name, for plots and tables.
    """

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    epoch_time: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    interrupted: bool = False
    precision: str = "fp32"
    name: str = ""

    @property
    def epochs(self) -> int:
        """Number of completed epochs."""
        return len(self.train_loss)

    @property
    def best_epoch(self) -> int | None:
        """1-based epoch with the best validation accuracy (the first of ties); None without validation."""
        return max(range(len(self.val_acc)), key=self.val_acc.__getitem__) + 1 if self.val_acc else None

    @property
    def total_time(self) -> float:
        """Seconds spent in all epochs together."""
        return sum(self.epoch_time)

    def record(
        self, train: dict[str, float], val: dict[str, float] | None, *, lr: float, seconds: float
    ) -> None:
        """Append one completed epoch: ``train``/``val`` (or None) as train_one_epoch/evaluate return them."""
        self.train_loss.append(train["loss"])
        self.train_acc.append(train["acc"])
        if val is not None:
            self.val_loss.append(val["loss"])
            self.val_acc.append(val["acc"])
        self.lr.append(lr)
        self.epoch_time.append(seconds)

    def epoch_line(self, i: int) -> str:
        """One line of metrics for epoch index ``i`` (0-based)."""
        line = f"train_loss {self.train_loss[i]:.4f}  train_acc {self.train_acc[i]:.2%}"
        if i < len(self.val_acc):
            line += f"  val_loss {self.val_loss[i]:.4f}  val_acc {self.val_acc[i]:.2%}"
        return line + (f"  ({self.epoch_time[i]:.1f} s)" if i < len(self.epoch_time) else "")

    def to_dict(self) -> dict[str, Any]:
        """The metrics as plain lists (safe to store in a checkpoint), with ``best_epoch``."""
        return asdict(self) | {"best_epoch": self.best_epoch}

    def plot(self, title: str | None = None) -> Any:
        """Plot loss and accuracy curves; see :func:`cu.plots.plot_history`."""
        from .plots import plot_history

        return plot_history(self, title=title)

    def __repr__(self) -> str:
        epochs, interrupted = (
            f"{self.epochs} epoch" + "s" * (self.epochs != 1),
            ", interrupted" * self.interrupted,
        )
        head = f"History({self.name or 'run'}: {epochs}, {self.total_time:.1f} s{interrupted})"
        return "\n".join([head] + [f"  epoch {i + 1}: {self.epoch_line(i)}" for i in range(self.epochs)])


class Predictions(NamedTuple):
    """Model outputs for a whole loader, on the CPU: predicted class, true label (or None), probabilities."""

    preds: torch.Tensor
    labels: torch.Tensor | None
    probs: torch.Tensor
