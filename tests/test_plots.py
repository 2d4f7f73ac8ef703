"""Tests for course_utils.plots on small synthetic tensors (Agg backend, no windows)."""

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgba

import course_utils as cu
from course_utils.plots import (
    confusion_matrix,
    plot_confusion_matrix,
    plot_history,
    show_images,
    show_misclassified,
)


def image_axes(fig):
    return [ax for ax in fig.axes if ax.images]


def test_cu_plots_is_the_public_namespace_and_loads_pyplot_lazily():
    assert cu.plots.__all__ == [
        "show_images",
        "plot_history",
        "confusion_matrix",
        "plot_confusion_matrix",
        "show_misclassified",
    ]
    assert cu.plots.show_images is show_images
    code = "import sys, course_utils as cu; cu.plots; print('matplotlib.pyplot' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False", "importing cu.plots must not import matplotlib.pyplot"


# show_images


def test_show_images_grey_captions_use_class_names():
    images = torch.rand(5, 1, 8, 8)
    fig = show_images(images, torch.tensor([0, 1, 2, 1, 0]), classes=["cat", "dog", "eel"], ncols=3)
    axes = image_axes(fig)
    assert [ax.get_title() for ax in axes] == ["cat", "dog", "eel", "dog", "cat"]
    assert axes[0].images[0].get_cmap().name == "gray"
    assert axes[0].images[0].get_array().shape == (8, 8)
    assert fig._suptitle is not None and fig._suptitle.get_text()


def test_show_images_unnormalises_and_clips():
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.1, 0.5)
    raw = torch.rand(2, 3, 4, 4)
    normalised = (raw - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    fig = show_images(normalised, mean=mean, std=std)
    shown = np.asarray(image_axes(fig)[1].images[0].get_array())
    assert shown.shape == (4, 4, 3)  # RGB, channels last
    np.testing.assert_allclose(shown, raw[1].permute(1, 2, 0).numpy(), atol=1e-5)
    fig = show_images(torch.full((1, 8, 8), 3.0))  # (N, H, W), out of range
    assert np.asarray(image_axes(fig)[0].images[0].get_array()).max() == pytest.approx(1.0)
    fig = show_images(torch.full((2, 1, 3, 3), 255, dtype=torch.uint8))  # uint8 holds 0-255
    assert np.asarray(image_axes(fig)[0].images[0].get_array()).min() == pytest.approx(1.0)


def test_show_images_preds_are_coloured_by_correctness():
    fig = show_images(torch.rand(3, 1, 6, 6), [0, 1, 2], preds=[0, 2, 2], classes=["a", "b", "c"])
    axes = image_axes(fig)
    assert [ax.get_title() for ax in axes] == ["pred a / true a", "pred c / true b", "pred c / true c"]
    colours = [ax.title.get_color() for ax in axes]
    assert [to_rgba(c) for c in colours] == [to_rgba("green"), to_rgba("red"), to_rgba("green")]
    assert "2/3" in fig._suptitle.get_text()


def test_show_images_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="labels"):
        show_images(torch.rand(4, 1, 5, 5), [0, 1, 2])
    with pytest.raises(ValueError, match="C = 1 or 3"):
        show_images(torch.rand(4, 2, 5, 5))
    with pytest.raises(ValueError, match="mean and std"):
        show_images(torch.rand(2, 3, 5, 5), mean=(0.5, 0.5), std=(0.2, 0.2))
    with pytest.raises(ValueError, match="needs labels"):
        show_images(torch.rand(2, 1, 5, 5), preds=[0, 1])


# plot_history


def test_plot_history_two_runs_objects_and_dicts():
    first = SimpleNamespace(
        train_loss=[1.0, 0.5, 0.25],
        train_acc=[0.5, 0.7, 0.9],
        val_loss=[1.1, 0.6, 0.4],
        val_acc=[0.4, 0.6, 0.8],
        name="small",
    )
    second = {"train_loss": [2.0, 1.0], "train_acc": [0.1, 0.2], "val_loss": [], "val_acc": []}
    fig = plot_history(first, second)
    ax_loss, ax_acc = fig.axes[:2]
    assert ax_loss.get_title() == "Loss" and ax_acc.get_title() == "Accuracy"
    assert ax_loss.get_xlabel() == "epoch" and "%" in ax_acc.get_ylabel()
    assert len(ax_loss.lines) == 3 and len(ax_acc.lines) == 3  # run 2 has no validation curves
    train, val, other = ax_acc.lines
    assert list(train.get_xdata()) == [1, 2, 3]  # epochs are 1-based
    np.testing.assert_allclose(train.get_ydata(), [50, 70, 90])  # fractions shown as percent
    assert train.get_linestyle() == "-" and val.get_linestyle() == "--"
    assert train.get_color() == val.get_color() != other.get_color()
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["small (train)", "small (val)", "run 2 (train)"]


def test_plot_history_names_override_and_errors():
    run = {"train_loss": [1.0], "train_acc": [0.5], "val_loss": [0.9], "val_acc": [0.6]}
    fig = plot_history(run, names=["baseline"], title="My runs")
    assert fig._suptitle.get_text() == "My runs"
    assert fig.legends[0].get_texts()[0].get_text() == "baseline (train)"
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["1"]  # one epoch, one whole tick
    with pytest.raises(ValueError):
        plot_history(run, names=["a", "b"])
    with pytest.raises(ValueError):
        plot_history()
    with pytest.raises(ValueError, match="has none"):
        plot_history({"train_loss": []})


# confusion matrices


def test_confusion_matrix_matches_a_loop():
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (200,), generator=gen)
    preds = torch.randint(0, 4, (200,), generator=gen)
    expected = torch.zeros(4, 4, dtype=torch.int64)
    for t, p in zip(labels.tolist(), preds.tolist(), strict=True):
        expected[t, p] += 1
    cm = confusion_matrix(preds, labels)
    assert cm.dtype == torch.int64 and torch.equal(cm, expected)
    assert confusion_matrix([1], [1], num_classes=5).shape == (5, 5)
    assert confusion_matrix([0, 2], [1, 2]).tolist() == [[0, 0, 0], [1, 0, 0], [0, 0, 1]]
    assert confusion_matrix([], []).shape == (0, 0)


def test_confusion_matrix_rejects_logits_and_bad_indices():
    with pytest.raises(ValueError, match="argmax"):
        confusion_matrix(torch.rand(5, 3), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError):
        confusion_matrix([0, 3], [0, 1], num_classes=3)
    with pytest.raises(ValueError):
        confusion_matrix([0, 1, 1], [0, 1])


def test_plot_confusion_matrix_writes_counts_with_readable_colours():
    preds = [0, 0, 0, 0, 1, 1, 2, 0]
    labels = [0, 0, 0, 0, 1, 2, 2, 1]
    fig = plot_confusion_matrix(preds, labels, ["ant", "bee", "cat"])
    ax = fig.axes[0]
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t for t in ax.texts}
    assert [cells[(0, 0)].get_text(), cells[(1, 0)].get_text(), cells[(0, 2)].get_text()] == ["4", "1", "0"]
    assert to_rgba(cells[(0, 0)].get_color()) == to_rgba("white")  # darkest cell
    assert to_rgba(cells[(0, 2)].get_color()) == to_rgba("black")  # empty cell
    assert ax.get_xlabel() == "predicted label" and ax.get_ylabel() == "true label"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["ant", "bee", "cat"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["ant", "bee", "cat"]
    assert "75.0%" in ax.get_title()
    normalised = plot_confusion_matrix(preds, labels, normalize=True).axes[0]
    values = {t.get_text() for t in normalised.texts}
    assert {"1.00", "0.50"} <= values
    with pytest.raises(ValueError, match="empty"):
        plot_confusion_matrix([], [])


# show_misclassified


def test_show_misclassified_picks_only_wrong_predictions():
    images = torch.rand(6, 1, 5, 5)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    preds = torch.tensor([0, 2, 2, 1, 1, 0])
    fig = show_misclassified(images, labels, preds, classes=["x", "y", "z"])
    axes = image_axes(fig)
    assert [ax.get_title() for ax in axes] == ["pred z / true y", "pred y / true x", "pred x / true z"]
    np.testing.assert_allclose(axes[0].images[0].get_array(), images[1, 0].numpy())
    assert len(image_axes(show_misclassified(images, labels, preds, max_images=2))) == 2


def test_show_misclassified_none_wrong_says_so():
    fig = show_misclassified(torch.rand(3, 1, 4, 4), [0, 1, 2], [0, 1, 2])
    assert not image_axes(fig)
    assert "no misclassified images" in [t.get_text() for t in fig.axes[0].texts]


def test_show_misclassified_ranks_the_most_confident_mistakes_first():
    images = (torch.arange(5.0) / 4).reshape(5, 1, 1, 1).expand(5, 1, 4, 4)  # image i is filled with i/4
    labels = torch.tensor([0, 0, 1, 1, 0])
    preds = torch.tensor([1, 0, 0, 0, 1])  # wrong: images 0, 2, 3, 4
    probs = torch.tensor([[0.4, 0.6], [0.9, 0.1], [0.99, 0.01], [0.7, 0.3], [0.05, 0.95]])
    fig = show_misclassified(images, labels, preds, probs=probs, classes=["a", "b"])
    axes = image_axes(fig)
    shown = [round(float(ax.images[0].get_array()[0, 0]) * 4) for ax in axes]
    assert shown == [2, 4, 3, 0], "ordered by the probability of the wrong answer: 0.99, 0.95, 0.70, 0.60"
    assert [ax.get_title() for ax in axes][:2] == ["pred a (99%) / true b", "pred b (95%) / true a"]
    assert to_rgba(axes[0].title.get_color()) == to_rgba("red")  # the caption keeps its colour
    assert "most confident first" in fig._suptitle.get_text()
    with pytest.raises(ValueError, match="probs must be"):
        show_misclassified(images, labels, preds, probs=probs[:3])
