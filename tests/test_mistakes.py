"""Tests for course_utils.mistakes: confusion matrices and misclassified images (Agg backend, no windows)."""

import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgba

from course_utils.mistakes import confusion_matrix, plot_confusion_matrix, show_misclassified


def image_axes(fig):
    return [ax for ax in fig.axes if ax.images]


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
    assert "75.0%" in ax.get_title()
    normalised = plot_confusion_matrix(preds, labels, normalize=True).axes[0]
    values = {t.get_text() for t in normalised.texts}
    assert {"1.00", "0.50"} <= values


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
