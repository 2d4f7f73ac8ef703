"""Plots: image grids, training curves, confusion matrices, mistakes (pyplot is imported on first use)."""

from collections.abc import Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:  # only for type hints: drawing imports pyplot, so `import course_utils` stays fast
    from matplotlib.figure import Figure

__all__ = ["show_images", "plot_history", "confusion_matrix", "plot_confusion_matrix", "show_misclassified"]


def _subplots(*args: Any, **kwargs: Any) -> Any:
    import matplotlib.pyplot as plt  # on first use only: importing pyplot is slow

    return plt.subplots(*args, layout="constrained", **kwargs)


def _int_vector(values: torch.Tensor | Sequence[int], what: str, n: int | None = None) -> torch.Tensor:
    t = torch.as_tensor(values).detach().cpu()
    if t.numel() and (t.dim() != 1 or t.is_floating_point()):
        raise ValueError(
            f"{what} must be a 1-D sequence of integer class indices, got shape {tuple(t.shape)} and dtype "
            f"{t.dtype}; for model outputs use logits.argmax(dim=1)"
        )
    if n is not None and t.numel() != n:
        raise ValueError(f"got {n} images but {t.numel()} {what}; they must match one to one")
    return t.reshape(-1).long()


def _name(index: int, classes: Sequence[str] | None) -> str:
    if classes is not None and not 0 <= index < len(classes):
        raise ValueError(f"class index {index} is outside classes (which has {len(classes)} names)")
    return str(index if classes is None else classes[index])


def show_images(
    images: torch.Tensor,
    labels: torch.Tensor | Sequence[int] | None = None,
    *,
    preds: torch.Tensor | Sequence[int] | None = None,
    classes: Sequence[str] | None = None,
    mean: torch.Tensor | Sequence[float] | None = None,
    std: torch.Tensor | Sequence[float] | None = None,
    ncols: int = 8,
    title: str | None = None,
    size: float = 1.5,
) -> "Figure":
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
    x = torch.as_tensor(images).detach().cpu()
    x = x.unsqueeze(1) if x.dim() == 3 else x  # (N, H, W) -> (N, 1, H, W)
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, C, H, W) with C = 1 or 3, or (N, H, W), not {tuple(x.shape)}")
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()  # uint8 holds 0-255, float 0-1
    m = torch.as_tensor(0.0 if mean is None else mean, dtype=torch.float32).reshape(-1, 1, 1)
    s = torch.as_tensor(1.0 if std is None else std, dtype=torch.float32).reshape(-1, 1, 1)
    if {len(m), len(s)} - {1, x.shape[1]}:
        raise ValueError(f"mean and std need 1 or {x.shape[1]} values (one per channel)")
    x = (x * s + m).clamp(0, 1)  # undo Normalize (x_norm = (x - mean) / std)
    pixels = (x[:, 0] if x.shape[1] == 1 else x.permute(0, 2, 3, 1)).numpy()  # (N, H, W) or (N, H, W, 3)
    if (n := len(pixels)) == 0:
        raise ValueError("no images to show: images is empty")
    label_list = None if labels is None else _int_vector(labels, "labels", n).tolist()
    pred_list = None if preds is None else _int_vector(preds, "preds", n).tolist()
    if pred_list is not None and label_list is None:
        raise ValueError("preds needs labels to compare with: pass labels too")
    if title is None and pred_list is not None:
        correct = sum(p == t for p, t in zip(pred_list, label_list, strict=True))
        title = f"Predictions: {correct}/{n} correct (green = right, red = wrong)"
    elif title is None:
        title = f"{n} image{'s' if n != 1 else ''}" + (" with labels" if label_list is not None else "")
    ncols = max(1, min(ncols, n))
    nrows = (n + ncols - 1) // ncols
    lines = title.splitlines() or [""]
    width = max(ncols * size, 0.1 * max(len(line) for line in lines), 4.0)  # ~0.1 inch per title character
    height = nrows * (size + 0.4) + 0.25 * len(lines) + 0.2  # 0.4 inch for a two-line caption
    fig, grid = _subplots(nrows, ncols, figsize=(width, height), squeeze=False)
    fig.suptitle(title)
    fontsize = max(6.0, 5.5 * size)
    chars_per_line = size * 72 / (0.56 * fontsize)  # rough width of a caption line in characters
    for ax in grid.flat:
        ax.axis("off")
    for i, ax in enumerate(grid.flat[:n]):
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


def plot_history(*histories: Any, names: Sequence[str] | None = None, title: str | None = None) -> "Figure":
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
    fig, (ax_loss, ax_acc) = _subplots(1, 2, figsize=(11, 4.2))
    for i, history in enumerate(histories):
        get = history.get if isinstance(history, Mapping) else partial(getattr, history)
        keys = ("train_loss", "train_acc", "val_loss", "val_acc")
        lists = {k: [] if get(k, None) is None else [float(v) for v in get(k, None)] for k in keys}
        if not any(lists.values()):
            raise ValueError(f"a history needs {', '.join(keys)} lists; this has none")
        name = names[i] if names is not None else (get("name", None) or f"run {i + 1}")
        for (split, metric), values in ((k.split("_"), v) for k, v in lists.items() if v):  # skip empty lists
            if metric == "acc" and max(values) <= 1.0:  # fractions; above 1 they can only be percentages
                values = [100 * v for v in values]
            ax, epochs = (ax_acc if metric == "acc" else ax_loss), range(1, len(values) + 1)
            style, marker = ("-" if split == "train" else "--"), ("o" if len(values) <= 30 else None)
            ax.plot(epochs, values, style, color=f"C{i % 10}", marker=marker, ms=3, label=f"{name} ({split})")
    for ax, heading, unit in ((ax_loss, "Loss", "loss"), (ax_acc, "Accuracy", "accuracy (%)")):
        ax.set(title=heading, xlabel="epoch", ylabel=unit)
        ax.locator_params(axis="x", integer=True)  # epochs are whole numbers
        longest = max((len(line.get_xdata()) for line in ax.get_lines()), default=1)
        if longest <= 20:  # label every epoch; a one-epoch run would otherwise get ticks like 0.95
            ax.set(xticks=range(1, longest + 1), xlim=(0.5, longest + 0.5))
        ax.grid(alpha=0.3)
    lines, labels = ax_loss.get_legend_handles_labels()  # one colour per run, the same in both panels
    style = {"fontsize": 9, "title": "solid = train, dashed = validation", "title_fontsize": 9}
    fig.legend(lines, labels, loc="outside lower center", ncols=min(4, len(lines)), **style)
    fig.suptitle(title or "Training history")
    return fig


def confusion_matrix(
    preds: torch.Tensor | Sequence[int], labels: torch.Tensor | Sequence[int], num_classes: int | None = None
) -> torch.Tensor:
    """Count how often each true class was predicted as each class.

    Args:
        preds: Predicted class indices, 1-D.
        labels: True class indices, 1-D, same length as ``preds``.
        num_classes: Number of classes K; inferred from the largest index when omitted.

    Returns:
        int64 tensor ``(K, K)``: entry ``[t, p]`` counts samples of true class t predicted as p.
    """
    preds_t, labels_t = _int_vector(preds, "preds"), _int_vector(labels, "labels")
    if preds_t.shape != labels_t.shape:
        raise ValueError(f"preds has {preds_t.numel()} entries but labels has {labels_t.numel()}")
    both = torch.cat([preds_t, labels_t])
    k = (int(both.max()) + 1 if both.numel() else 0) if num_classes is None else num_classes
    if both.numel() and (int(both.min()) < 0 or int(both.max()) >= k):
        raise ValueError(f"class indices must lie in 0..{k - 1}, got {int(both.min())}..{int(both.max())}")
    pairs = labels_t * k + preds_t  # bin t * K + p counts the samples of true class t predicted as p
    return torch.bincount(pairs, minlength=k * k).reshape(k, k)  # (K, K)


def plot_confusion_matrix(
    preds: torch.Tensor | Sequence[int],
    labels: torch.Tensor | Sequence[int],
    classes: Sequence[str] | None = None,
    *,
    normalize: bool = False,
    title: str | None = None,
) -> "Figure":
    """Plot the confusion matrix: true class on rows, predicted class on columns, values in the cells.

    Args:
        preds: Predicted class indices, 1-D.
        labels: True class indices, 1-D.
        classes: Class names; also fixes the number of classes.
        normalize: Show each row as fractions of its true class instead of counts.
        title: Axes title; defaults to one that states the accuracy.

    Returns:
        The matplotlib Figure.
    """
    cm = confusion_matrix(preds, labels, len(classes) if classes is not None else None)
    k = cm.shape[0]
    if int(cm.sum()) == 0:
        raise ValueError("no predictions to plot: preds and labels are empty")
    values = (cm.double() / cm.sum(dim=1, keepdim=True).clamp_min(1) if normalize else cm.double()).numpy()
    names = [_name(i, classes) for i in range(k)]
    side = min(max(4.5, 0.55 * k + 2.5), 14.0)
    fig, ax = _subplots(figsize=(side + 1.2, side))
    vmax = 1.0 if normalize else float(values.max()) or 1.0
    im = ax.imshow(values, cmap="Blues", vmin=0, vmax=vmax)
    fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of the true class" if normalize else "count")
    if k <= 30:  # beyond that the numbers no longer fit in the cells
        for (t, p), v in np.ndenumerate(values):
            r, g, b, _ = im.cmap(v / vmax)
            colour = "white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.5 else "black"  # perceived brightness
            text = f"{v:.2f}" if normalize else str(int(v))
            ax.text(p, t, text, ha="center", va="center", color=colour, fontsize=10 if k <= 10 else 7)
    rotate = {"rotation": 45, "ha": "right"} if max(len(s) for s in names) > 3 else {}
    ax.set_xticks(range(k), names, rotation_mode="anchor", **rotate)
    ax.set(yticks=range(k), yticklabels=names, xlabel="predicted label", ylabel="true label")
    note = ", rows normalised" if normalize else ""
    ax.set_title(title or f"Confusion matrix (accuracy {float(cm.diag().sum()) / float(cm.sum()):.1%}{note})")
    return fig


def show_misclassified(
    images: torch.Tensor,
    labels: torch.Tensor | Sequence[int],
    preds: torch.Tensor | Sequence[int],
    *,
    classes: Sequence[str] | None = None,
    mean: torch.Tensor | Sequence[float] | None = None,
    std: torch.Tensor | Sequence[float] | None = None,
    probs: torch.Tensor | None = None,
    max_images: int = 16,
    title: str | None = None,
) -> "Figure":
    """Show the images the model got wrong, captioned "pred X / true Y".

    Args:
        images: Tensor ``(N, C, H, W)`` or ``(N, H, W)``.
        labels: True class of each image.
        preds: Predicted class of each image.
        classes: Class names indexed by label.
        mean: Per-channel mean used by ``Normalize``, to undo it for display.
        std: Per-channel standard deviation used by ``Normalize``.
        probs: ``(N, num_classes)`` probabilities (``cu.predict(...).probs``): most confident mistakes first.
        max_images: Show at most this many (the most confident ones with ``probs``, else the first ones).
        title: Figure title; defaults to one with the error count.

    Returns:
        The matplotlib Figure (a text-only one when nothing is misclassified).
    """
    images = torch.as_tensor(images).detach().cpu()
    n = len(images)
    labels_t, preds_t = _int_vector(labels, "labels", n), _int_vector(preds, "preds", n)
    wrong = (preds_t != labels_t).nonzero().flatten()
    if len(wrong) == 0:
        fig, ax = _subplots(figsize=(5, 2))
        ax.text(0.5, 0.5, "no misclassified images", ha="center", va="center", fontsize=12)
        ax.axis("off")
        ax.set_title(title or f"Misclassified: 0 of {n}")
        return fig
    confidence = None
    if probs is not None:
        probs = torch.as_tensor(probs).detach().cpu().float()
        if probs.ndim != 2 or len(probs) != n:
            raise ValueError(f"probs must be ({n}, num_classes) from cu.predict, not {tuple(probs.shape)}")
        confidence = probs[torch.arange(n), preds_t]  # the probability of each (wrong) prediction
        wrong = wrong[confidence[wrong].argsort(descending=True, stable=True)]
    shown = wrong[:max_images]
    order = ", most confident first" if confidence is not None else ""
    title = title or f"Misclassified: {len(wrong)} of {n} ({len(wrong) / n:.1%}), showing {len(shown)}{order}"
    images, labels_t, preds_t = images[shown], labels_t[shown], preds_t[shown]
    fig = show_images(images, labels_t, preds=preds_t, classes=classes, mean=mean, std=std, title=title)
    if confidence is not None:
        for ax, pred, conf in zip(fig.axes, preds_t.tolist(), confidence[shown].tolist(), strict=False):
            caption = f"pred {_name(pred, classes)}"
            # set_text keeps the caption's colour and size (set_title would reset them)
            ax.title.set_text(ax.title.get_text().replace(caption, f"{caption} ({conf:.0%})", 1))
    return fig
