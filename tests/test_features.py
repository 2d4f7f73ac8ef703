"""Tests for course_utils.features: conv filters and feature maps (Agg backend, no windows)."""

import numpy as np
import pytest
import torch
from torch import nn

from course_utils.features import show_feature_maps, show_filters


def image_axes(fig):
    return [ax for ax in fig.axes if ax.images]


def test_show_filters_grey_uses_symmetric_diverging_map():
    conv = nn.Conv2d(2, 5, 3)
    fig = show_filters(conv, ncols=4)
    axes = image_axes(fig)
    assert len(axes) == 5 and axes[4].get_title() == "filter 4"
    im = axes[2].images[0]
    assert im.get_cmap().name == "RdBu_r"
    lo, hi = im.get_clim()
    assert lo == pytest.approx(-hi) and hi == pytest.approx(conv.weight[2, 0].abs().max().item())
    np.testing.assert_allclose(im.get_array(), conv.weight[2, 0].detach().numpy())


def test_show_filters_rgb_scaled_per_filter_and_rejects_bad_shapes():
    weight = torch.randn(3, 3, 5, 5)
    weight[1] *= 100  # scaling one filter must not change how it looks
    axes = image_axes(show_filters(weight))
    shown = [np.asarray(ax.images[0].get_array()) for ax in axes]
    assert shown[1].shape == (5, 5, 3) and shown[1].min() == 0 and shown[1].max() == pytest.approx(1)
    with pytest.raises(ValueError):
        show_filters(torch.randn(3, 5, 5))


class Tiny(nn.Module):
    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.head = nn.Linear(6, 2)
        self.fail = fail

    def forward(self, x):
        x = self.bn(self.conv(x))  # (batch, 6, H, W)
        if self.fail:
            raise RuntimeError("boom")
        return self.head(x.mean(dim=(2, 3)))


def test_show_feature_maps_shows_channels_and_restores_state():
    model = Tiny()
    model.train()
    model.bn.eval()  # a frozen submodule must stay frozen
    running_mean = model.bn.running_mean.clone()
    fig = show_feature_maps(model, model.conv, torch.rand(1, 10, 12), max_maps=4)
    axes = image_axes(fig)
    assert [ax.get_title() for ax in axes] == [f"channel {i}" for i in range(4)]
    assert axes[0].images[0].get_array().shape == (10, 12)
    assert "(1, 6, 10, 12)" in fig._suptitle.get_text()
    assert model.training and model.conv.training and not model.bn.training
    assert not model.conv._forward_hooks
    assert torch.equal(model.bn.running_mean, running_mean)


def test_show_feature_maps_cleans_up_on_error_and_checks_inputs():
    model = Tiny(fail=True).train()
    with pytest.raises(RuntimeError, match="boom"):
        show_feature_maps(model, model.conv, torch.rand(1, 1, 8, 8))
    assert model.training and model.bn.training and not model.conv._forward_hooks
    with pytest.raises(ValueError, match="not part of model"):
        show_feature_maps(model, nn.Conv2d(1, 1, 3), torch.rand(1, 8, 8))
    ok = Tiny()
    with pytest.raises(ValueError, match="feature maps"):
        show_feature_maps(ok, ok.head, torch.rand(1, 8, 8))  # a Linear layer has no maps
