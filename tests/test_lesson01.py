"""Tests for lesson 01's lesson code: the convolution explorer, defined in notebooks/01_convolution_basics.ipynb.

The explorer works without a browser or a kernel; these tests drive its controls as a learner would.
"""

import base64
import itertools
import re

import ipywidgets
import pytest
import torch
import torch.nn.functional as F
from ipywidgets.embed import dependency_state

from course_machinery.lessons import lesson_code

SHAPE_LINE = re.compile(
    r"([HW])_out = floor\(\((\d+) \+ 2\*(\d+) - (\d+)\*\((\d+)-1\) - 1\) / (\d+)\) \+ 1 = (\d+)"
)


@pytest.fixture(scope="module")
def lesson():
    return lesson_code("01")


def shown_shape(box) -> tuple[int, int]:
    match = re.search(r"output shape: \((\d+), (\d+)\)", box.shape_label.value)
    assert match, box.shape_label.value
    return int(match.group(1)), int(match.group(2))


def torch_shape(box, lesson) -> tuple[int, int]:
    image = box.images[box.image_dropdown.value]
    kernel = lesson.KERNELS[box.kernel_dropdown.value]
    out = F.conv2d(
        image[None, None],
        kernel[None, None],
        stride=box.stride.value,
        padding=box.padding.value,
        dilation=box.dilation.value,
    )
    return tuple(out.shape[-2:])


def test_the_formula_shown_is_the_one_conv2d_follows(lesson):
    """Over a grid of settings, the formula lines the explorer shows, evaluated here, give PyTorch's shape."""
    checked = refused = 0
    # ~200 settings: each new one costs conv2d a few ms of set-up on the CPU, so the grid is kept small.
    for size, k, stride, padding, dilation in itertools.product(
        (5, 8, 11), (1, 2, 3, 5), (1, 2, 3), (0, 2), (1, 2, 3)
    ):
        image, kernel = torch.zeros(size, size + 1), torch.zeros(k, k)  # non-square: H and W differ
        result = lesson.convolve(image, kernel, stride, padding, dilation)
        label = lesson.shape_html(image, k, stride, padding, dilation, result)
        if result is None:  # the explorer says no output exactly where conv2d refuses
            assert "output shape: none" in label
            with pytest.raises(RuntimeError):
                F.conv2d(
                    image[None, None], kernel[None, None], stride=stride, padding=padding, dilation=dilation
                )
            refused += 1
            continue
        lines = SHAPE_LINE.findall(label)
        assert [line[0] for line in lines] == ["H", "W"], label
        for (_, n, p, d, kk, s, shown), expected_n in zip(lines, (size, size + 1), strict=True):
            assert (int(n), int(p), int(d), int(kk), int(s)) == (expected_n, padding, dilation, k, stride)
            assert (int(n) + 2 * int(p) - int(d) * (int(kk) - 1) - 1) // int(s) + 1 == int(shown)
        assert tuple(int(line[-1]) for line in lines) == tuple(result.shape[-2:])
        assert f"output shape: ({result.shape[-2]}, {result.shape[-1]})" in label
        checked += 1
    assert checked > 150 and refused > 0


def test_explorer_exposes_controls_with_css_classes(lesson):
    box = lesson.conv_explorer()
    assert isinstance(box, ipywidgets.VBox) and "cu-conv-explorer" in box._dom_classes
    assert set(box.image_dropdown.options) >= {"Grace Hopper", "checkerboard", "ring"}
    assert list(box.kernel_dropdown.options) == list(lesson.KERNELS)
    assert (box.stride.min, box.stride.max, box.padding.min, box.padding.max) == (1, 4, 0, 4)
    assert (box.dilation.min, box.dilation.max) == (1, 3)
    assert "cu-conv-stride" in box.stride._dom_classes
    assert "cu-conv-shape" in box.shape_label._dom_classes
    assert "cu-conv-output" in box.output._dom_classes
    assert isinstance(box.output, ipywidgets.Output)


def test_changing_stride_updates_label_and_plot(lesson):
    box = lesson.conv_explorer()
    box.image_dropdown.value = "checkerboard"  # 64 x 64
    box.kernel_dropdown.value = "box blur 3x3"
    assert shown_shape(box) == (62, 62)
    before_label, before_png = box.shape_label.value, box.output.outputs[0]["data"]["image/png"]
    box.stride.value = 2
    assert box.shape_label.value != before_label
    assert shown_shape(box) == (31, 31) == torch_shape(box, lesson) == tuple(box.result.shape[-2:])
    assert "floor((64 + 2*0 - 1*(3-1) - 1) / 2) + 1 = 31" in box.shape_label.value
    assert box.output.outputs[0]["data"]["image/png"] != before_png
    assert "31×31" in box.figure.axes[2].get_title()


def test_every_slider_updates_the_shape(lesson):
    box = lesson.conv_explorer()
    box.kernel_dropdown.value = "gaussian blur 5x5"
    for control, value in (("padding", 3), ("dilation", 3), ("stride", 4)):
        before = shown_shape(box)
        getattr(box, control).value = value
        assert shown_shape(box) != before, control
        assert shown_shape(box) == torch_shape(box, lesson), control


def test_non_square_photo_and_kernel_numbers(lesson):
    box = lesson.conv_explorer()
    box.image_dropdown.value = "Grace Hopper"
    h, w = box.images["Grace Hopper"].shape
    assert h != w and max(h, w) <= 160
    box.kernel_dropdown.value = "Sobel x"
    assert shown_shape(box) == (h - 2, w - 2)
    kernel_texts = [t.get_text() for t in box.figure.axes[1].texts]
    assert kernel_texts == ["-1", "0", "1", "-2", "0", "2", "-1", "0", "1"]
    box.kernel_dropdown.value = "box blur 3x3"  # 1/9 each: shown as ones with the factor in the title
    assert [t.get_text() for t in box.figure.axes[1].texts] == ["1"] * 9
    assert "numbers × 1/9" in box.figure.axes[1].get_title()


def test_a_given_image_is_offered_first_and_a_too_large_kernel_is_explained(lesson):
    box = lesson.conv_explorer(torch.rand(1, 6, 7), name="MNIST digit 7")
    assert box.image_dropdown.value == "MNIST digit 7" == box.image_dropdown.options[0]
    assert shown_shape(box) == (4, 5)  # Sobel x, 3x3, on 6 x 7
    box.kernel_dropdown.value = "gaussian blur 5x5"
    box.dilation.value = 3  # spans 13 pixels: more than the image
    assert "none" in box.shape_label.value and "13×13" in box.shape_label.value and box.result is None
    assert box.figure.axes[2].get_title() == "output: none"
    assert lesson.conv_explorer(torch.full((5, 5), 255, dtype=torch.uint8)).images["your image"].max() == 1
    with pytest.raises(ValueError):
        lesson.conv_explorer(torch.rand(3, 8, 8))


def test_saved_widget_state_holds_what_the_website_draws(lesson):
    """The website draws the explorer from its saved widget state: controls, shape label and picture."""
    box = lesson.conv_explorer()
    box.stride.value = 2
    state = dependency_state(box, drop_defaults=False)
    models = {model_id: model["model_name"] for model_id, model in state.items()}
    assert models[box.model_id] == "VBoxModel"
    assert state[box.stride.model_id]["state"]["value"] == 2
    kernel = state[box.kernel_dropdown.model_id]["state"]
    assert kernel["_options_labels"][kernel["index"]] == "Sobel x"
    assert "output shape: (" in state[box.shape_label.model_id]["state"]["value"]
    (picture,) = state[box.output.model_id]["state"]["outputs"]
    assert base64.b64decode(picture["data"]["image/png"]).startswith(b"\x89PNG")
    assert "Sobel x" in picture["data"]["text/plain"]


def test_kernels_are_square_and_odd(lesson):
    assert {
        "identity",
        "box blur 3x3",
        "gaussian blur 5x5",
        "sharpen",
        "Sobel x",
        "Sobel y",
        "Laplacian",
        "emboss",
    } == set(lesson.KERNELS)
    for kernel in lesson.KERNELS.values():
        assert kernel.dim() == 2 and kernel.shape[0] == kernel.shape[1] and kernel.shape[0] % 2 == 1
    assert lesson.KERNELS["gaussian blur 5x5"].sum().item() == pytest.approx(1.0)
