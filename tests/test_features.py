"""Tests for notebook 02's lesson code: show_filters and show_feature_maps (Agg backend, no windows)."""

import numpy as np
import pytest
import torch
from torch import nn

from course_machinery.lessons import lesson_code

ns = lesson_code("02")


def image_axes(fig):
    return [ax for ax in fig.axes if ax.images]


def test_show_filters_grey_uses_symmetric_diverging_map():
    conv = nn.Conv2d(2, 5, 3)
    fig = ns.show_filters(conv, ncols=4)
    axes = image_axes(fig)
    assert len(axes) == 5 and axes[4].get_title() == "filter 4"
    im = axes[2].images[0]
    assert im.get_cmap().name == "RdBu_r"
    lo, hi = im.get_clim()
    assert lo == pytest.approx(-hi) and hi == pytest.approx(conv.weight[2, 0].abs().max().item())
    np.testing.assert_allclose(im.get_array(), conv.weight[2, 0].detach().numpy())
    assert "(5, 2, 3, 3)" in fig._suptitle.get_text()


def test_show_filters_rgb_scaled_per_filter_and_rejects_bad_shapes():
    weight = torch.randn(3, 3, 5, 5)
    weight[1] *= 100  # scaling one filter must not change how it looks
    axes = image_axes(ns.show_filters(weight))
    shown = [np.asarray(ax.images[0].get_array()) for ax in axes]
    assert shown[1].shape == (5, 5, 3) and shown[1].min() == 0 and shown[1].max() == pytest.approx(1)
    f = weight[1].permute(1, 2, 0) / 100  # (5, 5, 3), the filter before scaling it up
    np.testing.assert_allclose(shown[1], ((f - f.min()) / (f.max() - f.min())).numpy(), atol=1e-6)
    assert len(image_axes(ns.show_filters(torch.randn(70, 3, 3, 3)))) == 64  # max_filters
    with pytest.raises(ValueError):
        ns.show_filters(torch.randn(3, 5, 5))


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


def test_show_feature_maps_shows_the_layers_output_and_restores_state():
    model = Tiny()
    model.train()
    model.bn.eval()  # a frozen submodule must stay frozen
    running_mean = model.bn.running_mean.clone()
    image = torch.rand(1, 10, 12)  # (C, H, W)
    fig = ns.show_feature_maps(model, model.conv, image, max_maps=4)
    axes = image_axes(fig)
    assert [ax.get_title() for ax in axes] == [str(i) for i in range(4)]
    assert "(1, 6, 10, 12)" in fig._suptitle.get_text()
    with torch.no_grad():
        maps = model.conv(image[None])[0]  # (6, 10, 12)
    for i, ax in enumerate(axes):  # each map on its own scale: 0 at its minimum, 1 at its maximum
        expected = (maps[i] - maps[i].min()) / (maps[i].max() - maps[i].min())
        np.testing.assert_allclose(ax.images[0].get_array(), expected.numpy(), atol=1e-5)
    assert model.training and model.conv.training and not model.bn.training
    assert not model.conv._forward_hooks
    assert torch.equal(model.bn.running_mean, running_mean)


def test_show_feature_maps_cleans_up_on_error_and_checks_inputs():
    model = Tiny(fail=True).train()
    with pytest.raises(RuntimeError, match="boom"):
        ns.show_feature_maps(model, model.conv, torch.rand(1, 1, 8, 8))
    assert model.training and model.bn.training and not model.conv._forward_hooks
    with pytest.raises(ValueError, match="not part of model"):
        ns.show_feature_maps(model, nn.Conv2d(1, 1, 3), torch.rand(1, 8, 8))
    ok = Tiny()
    with pytest.raises(ValueError, match="feature maps"):
        ns.show_feature_maps(ok, ok.head, torch.rand(1, 8, 8))  # a Linear layer has no maps
    assert not ok.head._forward_hooks
