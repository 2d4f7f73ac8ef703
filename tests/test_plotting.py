"""Tests for course_utils.plotting on small synthetic tensors (Agg backend, no windows)."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgba

from course_utils.plotting import plot_history, show_images


def image_axes(fig):
    return [ax for ax in fig.axes if ax.images]


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
    with pytest.raises(ValueError):
        plot_history(run, names=["a", "b"])
    with pytest.raises(ValueError):
        plot_history()
