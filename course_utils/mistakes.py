"""What a model gets wrong: the confusion matrix, and the misclassified images ranked by confidence."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from .plotting import FloatSequence, IntSequence, _int_vector, _name, show_images

__all__ = ["confusion_matrix", "plot_confusion_matrix", "show_misclassified"]


def confusion_matrix(preds: IntSequence, labels: IntSequence, num_classes: int | None = None) -> torch.Tensor:
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
    if num_classes is None:
        num_classes = int(torch.cat([preds_t, labels_t]).max()) + 1 if preds_t.numel() else 0
    both = torch.cat([preds_t, labels_t])
    if both.numel() and (int(both.min()) < 0 or int(both.max()) >= num_classes):
        raise ValueError(
            f"class indices must lie in 0..{num_classes - 1}, got {int(both.min())}..{int(both.max())}"
        )
    index = labels_t * num_classes + preds_t  # one bin per (true, predicted) pair, row-major
    counts = torch.bincount(index, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)  # (K, K)


def plot_confusion_matrix(
    preds: IntSequence,
    labels: IntSequence,
    classes: Sequence[str] | None = None,
    *,
    normalize: bool = False,
    title: str | None = None,
) -> Figure:
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
    if k == 0 or int(cm.sum()) == 0:
        raise ValueError("no predictions to plot: preds and labels are empty")
    counts = cm.double()
    values = counts / counts.sum(dim=1, keepdim=True).clamp_min(1) if normalize else counts
    names = [str(c) for c in classes] if classes is not None else [str(i) for i in range(k)]
    side = min(max(4.5, 0.55 * k + 2.5), 14.0)
    fig, ax = plt.subplots(figsize=(side + 1.2, side), layout="constrained")
    cmap = matplotlib.colormaps["Blues"]
    vmax = 1.0 if normalize else float(values.max()) or 1.0
    im = ax.imshow(values.numpy(), cmap=cmap, vmin=0, vmax=vmax)
    fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of the true class" if normalize else "count")
    if k <= 30:  # beyond that the numbers no longer fit in the cells
        fontsize = 10 if k <= 10 else 7
        for t in range(k):
            for p in range(k):
                v = float(values[t, p])
                r, g, b, _ = cmap(v / vmax)
                # White text on dark cells, black on light ones, judged by perceived brightness.
                colour = "white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.5 else "black"
                ax.text(
                    p,
                    t,
                    f"{v:.2f}" if normalize else str(int(v)),
                    ha="center",
                    va="center",
                    color=colour,
                    fontsize=fontsize,
                )
    rotate = max(len(s) for s in names) > 3
    ax.set_xticks(
        range(k),
        names,
        rotation=45 if rotate else 0,
        ha="right" if rotate else "center",
        rotation_mode="anchor",
    )
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    accuracy = float(cm.diag().sum()) / float(cm.sum())
    ax.set_title(
        title or f"Confusion matrix (accuracy {accuracy:.1%}" + (", rows normalised)" if normalize else ")")
    )
    return fig


def show_misclassified(
    images: torch.Tensor,
    labels: IntSequence,
    preds: IntSequence,
    *,
    classes: Sequence[str] | None = None,
    mean: FloatSequence | None = None,
    std: FloatSequence | None = None,
    probs: torch.Tensor | None = None,
    max_images: int = 16,
    title: str | None = None,
) -> Figure:
    """Show the images the model got wrong, captioned "pred X / true Y".

    With ``probs`` (e.g. ``cu.predict(...).probs``) the mistakes are ranked by the probability the model gave its
    wrong answer, most confident first, and each caption shows it: the mistakes worth looking at first (a wrong
    label in the data, a systematic confusion) rather than whichever come first in the test set.

    Args:
        images: Tensor ``(N, C, H, W)`` or ``(N, H, W)``.
        labels: True class of each image.
        preds: Predicted class of each image.
        classes: Class names indexed by label.
        mean: Per-channel mean used by ``Normalize``, to undo it for display.
        std: Per-channel standard deviation used by ``Normalize``.
        probs: Class probabilities ``(N, num_classes)``; if given, the most confident mistakes come first.
        max_images: Show at most this many (the most confident ones with ``probs``, else the first ones).
        title: Figure title; defaults to one with the error count.

    Returns:
        The matplotlib Figure (a text-only one when nothing is misclassified).
    """
    images = torch.as_tensor(images).detach().cpu()
    labels_t, preds_t = _int_vector(labels, "labels"), _int_vector(preds, "preds")
    n = len(images)
    if len(labels_t) != n or len(preds_t) != n:
        raise ValueError(f"got {n} images, {len(labels_t)} labels and {len(preds_t)} preds; they must match")
    wrong = (preds_t != labels_t).nonzero().flatten()
    if len(wrong) == 0:
        fig, ax = plt.subplots(figsize=(5, 2), layout="constrained")
        ax.text(0.5, 0.5, "no misclassified images", ha="center", va="center", fontsize=12)
        ax.axis("off")
        ax.set_title(title or f"Misclassified: 0 of {n}")
        return fig
    confidence = None
    if probs is not None:
        probs = torch.as_tensor(probs).detach().cpu().float()
        if probs.ndim != 2 or len(probs) != n:
            raise ValueError(
                f"probs must be (N, num_classes) with N = {n} images, got shape {tuple(probs.shape)}; pass "
                "cu.predict(...).probs"
            )
        confidence = probs[torch.arange(n), preds_t]  # the probability of each (wrong) prediction
        wrong = wrong[confidence[wrong].argsort(descending=True, stable=True)]
    shown = wrong[:max_images]
    order = ", most confident first" if confidence is not None else ""
    heading = title or (
        f"Misclassified: {len(wrong)} of {n} ({len(wrong) / n:.1%}), showing {len(shown)}{order}"
    )
    fig = show_images(
        images[shown],
        labels_t[shown],
        preds=preds_t[shown],
        classes=classes,
        mean=mean,
        std=std,
        title=heading,
    )
    if confidence is not None:
        for ax, i in zip(fig.axes, shown.tolist(), strict=False):
            pred = f"pred {_name(int(preds_t[i]), classes)}"
            # set_text keeps the caption's colour and size (set_title would reset them)
            ax.title.set_text(ax.title.get_text().replace(pred, f"{pred} ({confidence[i]:.0%})", 1))
    return fig
