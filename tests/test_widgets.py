"""Tests for course_utils.widgets: the convolution explorer works without a browser."""

import itertools
import re

import ipywidgets
import matplotlib
import pytest
import torch
import torch.nn.functional as F

from course_utils.models import conv_output_size
from course_utils.widgets import KERNELS, conv_explorer

matplotlib.use("Agg")  # draw off-screen: no windows, works on CI


def shown_shape(box) -> tuple[int, int]:
    match = re.search(r"output shape: \((\d+), (\d+)\)", box.shape_label.value)
    assert match, box.shape_label.value
    return int(match.group(1)), int(match.group(2))


def torch_shape(box) -> tuple[int, int]:
    image = box.images[box.image_dropdown.value]
    kernel = KERNELS[box.kernel_dropdown.value]
    out = F.conv2d(
        image[None, None],
        kernel[None, None],
        stride=box.stride.value,
        padding=box.padding.value,
        dilation=box.dilation.value,
    )
    return tuple(out.shape[-2:])


def test_conv_output_size_matches_conv2d():
    checked = 0
    # ~200 settings: each new one costs conv2d a few ms of set-up on the CPU, so the grid is kept small.
    for size, k, stride, padding, dilation in itertools.product(
        (5, 8, 11), (1, 2, 3, 5), (1, 2, 3), (0, 2), (1, 2, 3)
    ):
        expected_positive = size + 2 * padding - dilation * (k - 1) >= 1
        if not expected_positive:
            continue  # conv2d refuses kernels larger than the padded input
        out = F.conv2d(
            torch.zeros(1, 1, size, size + 1),
            torch.zeros(1, 1, k, k),
            stride=stride,
            padding=padding,
            dilation=dilation,
        )
        assert out.shape[-2:] == (
            conv_output_size(size, k, stride, padding, dilation),
            conv_output_size(size + 1, k, stride, padding, dilation),
        )
        checked += 1
    assert checked > 150


def test_explorer_exposes_controls_with_css_classes():
    box = conv_explorer()
    assert isinstance(box, ipywidgets.VBox)
    assert set(box.image_dropdown.options) >= {"Grace Hopper", "checkerboard", "digit"}
    assert list(box.kernel_dropdown.options) == list(KERNELS)
    assert (box.stride.min, box.stride.max, box.padding.min, box.padding.max) == (1, 4, 0, 4)
    assert (box.dilation.min, box.dilation.max) == (1, 3)
    assert "cu-conv-stride" in box.stride._dom_classes
    assert "cu-conv-shape" in box.shape_label._dom_classes
    assert isinstance(box.output, ipywidgets.Output)


def test_changing_stride_updates_label_and_plot():
    box = conv_explorer()
    box.image_dropdown.value = "checkerboard"  # 64 x 64
    box.kernel_dropdown.value = "box blur 3x3"
    assert shown_shape(box) == (62, 62)
    before_label, before_png = box.shape_label.value, box.output.outputs[0]["data"]["image/png"]
    box.stride.value = 2
    assert box.shape_label.value != before_label
    assert shown_shape(box) == (31, 31) == torch_shape(box) == tuple(box.result.shape[-2:])
    assert "floor((64 + 2*0 - 1*(3-1) - 1) / 2) + 1 = 31" in box.shape_label.value
    assert box.output.outputs[0]["data"]["image/png"] != before_png
    assert "31×31" in box.figure.axes[2].get_title()


def test_every_slider_updates_the_shape():
    box = conv_explorer()
    box.kernel_dropdown.value = "gaussian blur 5x5"
    for control, value in (("padding", 3), ("dilation", 3), ("stride", 4)):
        before = shown_shape(box)
        getattr(box, control).value = value
        assert shown_shape(box) != before, control
        assert shown_shape(box) == torch_shape(box), control


def test_non_square_photo_and_kernel_numbers():
    box = conv_explorer()
    box.image_dropdown.value = "Grace Hopper"
    h, w = box.images["Grace Hopper"].shape
    assert h != w and max(h, w) <= 160
    box.kernel_dropdown.value = "Sobel x"
    assert shown_shape(box) == (h - 2, w - 2)
    kernel_texts = [t.get_text() for t in box.figure.axes[1].texts]
    assert kernel_texts == ["-1", "0", "1", "-2", "0", "2", "-1", "0", "1"]


def test_your_image_is_offered_and_a_too_large_kernel_is_explained():
    box = conv_explorer(torch.rand(1, 6, 7))
    assert box.image_dropdown.value == "your image"
    assert shown_shape(box) == (4, 5)  # Sobel x, 3x3, on 6 x 7
    box.kernel_dropdown.value = "gaussian blur 5x5"
    box.dilation.value = 3  # spans 13 pixels: more than the image
    assert "none" in box.shape_label.value and box.result is None
    with pytest.raises(ValueError):
        conv_explorer(torch.rand(3, 8, 8))


def test_kernels_are_square_and_odd():
    assert {
        "identity",
        "box blur 3x3",
        "gaussian blur 5x5",
        "sharpen",
        "Sobel x",
        "Sobel y",
        "Laplacian",
        "emboss",
    } == set(KERNELS)
    for kernel in KERNELS.values():
        assert kernel.dim() == 2 and kernel.shape[0] == kernel.shape[1] and kernel.shape[0] % 2 == 1
    assert KERNELS["gaussian blur 5x5"].sum().item() == pytest.approx(1.0)
