"""Plots for the course: image grids and training curves (mistakes: see ``mistakes``; filters: ``features``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = ["show_images", "plot_history"]

IntSequence = torch.Tensor | Sequence[int]
FloatSequence = torch.Tensor | Sequence[float]

# Every function makes its figure with pyplot, so Jupyter's inline backend shows it at the end of the cell
# even when the learner assigns the result (`fig = cu.show_images(...)`). Ending a notebook line with `;`
# avoids a second copy when the call is the last expression of the cell.


def _grid(n: int, ncols: int, size: float, title: str) -> tuple[Figure, list[Axes]]:
    """A figure of ``n`` small square axes in rows of ``ncols``, with a title; used by features.py too."""
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    # Wide enough for the longest title line (about 0.1 inch per character at the default font size),
    # with room for a two-line caption above each image and for the title lines.
    lines = title.splitlines() or [""]
    width = max(ncols * size, 0.1 * max(len(line) for line in lines), 4.0)
    height = nrows * (size + 0.4) + 0.25 * len(lines) + 0.2
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(title)
    return fig, list(axes.flat)[:n]


def _to_display(images: torch.Tensor, mean: FloatSequence | None, std: FloatSequence | None) -> np.ndarray:
    x = torch.as_tensor(images).detach().cpu()
    if x.dim() == 3:
        x = x.unsqueeze(1)  # (N, 1, H, W)
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(
            f"images must have shape (N, C, H, W) with C = 1 or 3, or (N, H, W); got {tuple(x.shape)}"
        )
    # uint8 images (as stored on disk) hold 0-255; float images hold 0-1 once un-normalised.
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    if mean is not None or std is not None:
        channels = x.shape[1]
        m = torch.as_tensor(0.0 if mean is None else mean, dtype=torch.float32).reshape(-1, 1, 1)
        s = torch.as_tensor(1.0 if std is None else std, dtype=torch.float32).reshape(-1, 1, 1)
        if m.shape[0] not in (1, channels) or s.shape[0] not in (1, channels):
            raise ValueError(f"mean and std need 1 or {channels} values (one per channel)")
        x = x * s + m  # undo Normalize: x_norm = (x - mean) / std
    x = x.clamp(0, 1)
    if x.shape[1] == 1:
        return x[:, 0].numpy()  # (N, H, W)
    return x.permute(0, 2, 3, 1).numpy()  # (N, H, W, 3)


def _int_vector(values: IntSequence, what: str) -> torch.Tensor:
    t = torch.as_tensor(values).detach().cpu()
    if t.numel() == 0:
        return t.reshape(0).long()
    if t.dim() != 1 or t.is_floating_point():
        raise ValueError(
            f"{what} must be a 1-D sequence of integer class indices, got shape {tuple(t.shape)} and dtype "
            f"{t.dtype}; for model outputs use logits.argmax(dim=1)"
        )
    return t.long()


def _name(index: int, classes: Sequence[str] | None) -> str:
    if classes is None:
        return str(index)
    if not 0 <= index < len(classes):
        raise ValueError(f"class index {index} is outside classes (which has {len(classes)} names)")
    return str(classes[index])


def show_images(
    images: torch.Tensor,
    labels: IntSequence | None = None,
    *,
    preds: IntSequence | None = None,
    classes: Sequence[str] | None = None,
    mean: FloatSequence | None = None,
    std: FloatSequence | None = None,
    ncols: int = 8,
    title: str | None = None,
    size: float = 1.5,
) -> Figure:
    """Show a grid of images with their labels, or with predictions coloured right (green) / wrong (red).

    Args:
        images: Tensor ``(N, C, H, W)`` with C = 1 (grey) or 3 (RGB), or ``(N, H, W)``; float or uint8.
        labels: True class of each image, shown as caption.
        preds: Predicted class of each image; captions become "pred X / true Y" (needs ``labels``).
        classes: Class names indexed by label; without them the numbers are shown.
        mean: Per-channel mean used by ``Normalize``, to undo it for display.
        std: Per-channel standard deviation used by ``Normalize``.
        ncols: Images per row.
        title: Figure title; a sensible one is chosen when omitted.
        size: Side of each image in inches.

    Returns:
        The matplotlib Figure.
    """
    pixels = _to_display(images, mean, std)
    n = len(pixels)
    if n == 0:
        raise ValueError("no images to show: images is empty")
    label_list = None if labels is None else _int_vector(labels, "labels").tolist()
    pred_list = None if preds is None else _int_vector(preds, "preds").tolist()
    for what, values in (("labels", label_list), ("preds", pred_list)):
        if values is not None and len(values) != n:
            raise ValueError(f"got {n} images but {len(values)} {what}; they must match one to one")
    if pred_list is not None and label_list is None:
        raise ValueError("preds needs labels to compare with: pass labels too")
    if title is None:
        if pred_list is not None:
            correct = sum(p == t for p, t in zip(pred_list, label_list, strict=True))
            title = f"Predictions: {correct}/{n} correct (green = right, red = wrong)"
        else:
            title = f"{n} image{'s' if n != 1 else ''}" + (" with labels" if label_list is not None else "")
    fig, axes = _grid(n, ncols, size, title)
    fontsize = max(6.0, 5.5 * size)
    chars_per_line = size * 72 / (0.56 * fontsize)  # rough width of a caption line in characters
    for i, ax in enumerate(axes):
        ax.imshow(pixels[i], cmap="gray" if pixels.ndim == 3 else None, vmin=0, vmax=1)
        if pred_list is not None:
            pred, true = pred_list[i], label_list[i]
            caption = f"pred {_name(pred, classes)} / true {_name(true, classes)}"
            if len(caption) > chars_per_line:  # long class names: two lines instead of overlapping neighbours
                caption = caption.replace(" / ", "\n")
            ax.set_title(caption, fontsize=fontsize, color="green" if pred == true else "red")
        elif label_list is not None:
            ax.set_title(_name(label_list[i], classes), fontsize=fontsize)
    return fig


def _history_lists(history: Any) -> dict[str, list[float]]:
    lists = {}
    for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
        value = history.get(key) if isinstance(history, Mapping) else getattr(history, key, None)
        lists[key] = [] if value is None else [float(v) for v in value]
    if not any(lists.values()):
        raise ValueError("a history needs train_loss, train_acc, val_loss and val_acc lists; this has none")
    return lists


def plot_history(*histories: Any, names: Sequence[str] | None = None, title: str | None = None) -> Figure:
    """Plot loss and accuracy per epoch of one or more training runs (train solid, validation dashed).

    Args:
        *histories: ``History`` objects (or dicts) with ``train_loss``, ``train_acc``, ``val_loss`` and
            ``val_acc`` lists; accuracies as fractions; validation lists may be empty.
        names: A name per run for the legend; else each history's ``name``, else "run 1", "run 2", ...
        title: Figure title.

    Returns:
        The matplotlib Figure with two panels: loss and accuracy (%).
    """
    if not histories:
        raise ValueError("pass at least one history, e.g. plot_history(history)")
    if names is not None and len(names) != len(histories):
        raise ValueError(f"got {len(histories)} histories but {len(names)} names")
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    for i, history in enumerate(histories):
        data = _history_lists(history)
        own = history.get("name") if isinstance(history, Mapping) else getattr(history, "name", None)
        name = names[i] if names is not None else (own or f"run {i + 1}")
        colour = f"C{i % 10}"  # one colour per run in both panels
        for ax, metric in ((ax_loss, "loss"), (ax_acc, "acc")):
            for split, style in (("train", "-"), ("val", "--")):
                values = data[f"{split}_{metric}"]
                if not values:
                    continue
                # Accuracy comes as a fraction; values above 1 can only be percentages already.
                scale = 100.0 if metric == "acc" and max(values) <= 1.0 else 1.0
                epochs = range(1, len(values) + 1)
                ax.plot(
                    epochs,
                    [v * scale for v in values],
                    linestyle=style,
                    color=colour,
                    marker="o" if len(values) <= 30 else None,
                    markersize=3,
                    label=f"{name} ({split})",
                )
    for ax, name, unit in ((ax_loss, "Loss", "loss"), (ax_acc, "Accuracy", "accuracy (%)")):
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(unit)
        longest = max((len(line.get_xdata()) for line in ax.get_lines()), default=1)
        if longest <= 20:  # label every epoch; a one-epoch run would otherwise get ticks like 0.95
            ax.set_xticks(range(1, longest + 1))
            ax.set_xlim(0.5, longest + 0.5)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.grid(alpha=0.3)
    handles, legend_names = ax_loss.get_legend_handles_labels()
    fig.legend(
        handles,
        legend_names,
        loc="outside lower center",
        ncols=min(4, len(legend_names)),
        fontsize=9,
        title="solid = train, dashed = validation",
        title_fontsize=9,
    )
    fig.suptitle(title or "Training history")
    return fig
