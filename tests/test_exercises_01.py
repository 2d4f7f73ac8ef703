"""Lesson 01's exercise checks: each accepts the notebook's own solution, refuses the student edition's placeholder,
and refuses the ways of passing without understanding (a library call, an earlier worked function, a copied value,
a prediction computed by running the layer)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from support.exercises import accepted, answer_source, in_ipython, rejected
from torch import nn

import course_utils as cu
from course_machinery.checks import lesson01 as checks


def _answer_source(exercise: int, *, student: bool = False) -> str:
    return answer_source(f"01-e{exercise}-answer", student=student)


def _run(source: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"torch": torch, "F": F, "nn": nn, "cu": cu}
    exec(compile(source, "<answer cell>", "exec"), namespace)
    return namespace


def solution(exercise: int, name: str) -> Any:
    """What the teacher's edition's answer cell defines."""
    return _run(_answer_source(exercise))[name]


def placeholder(exercise: int, name: str) -> Any:
    """What the student edition's answer cell defines: nbgrader's `# YOUR CODE HERE` and `...` in the region."""
    return _run(_answer_source(exercise, student=True))[name]


# The lesson's earlier worked functions (cell-07), as the notebook defines them.
def conv_loops(img, ker):
    out = torch.zeros(img.shape[0] - ker.shape[0] + 1, img.shape[1] - ker.shape[1] + 1)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = (img[i : i + ker.shape[0], j : j + ker.shape[1]] * ker).sum()
    return out


def conv_unfold(img, ker):
    cols = F.unfold(img[None, None], kernel_size=tuple(ker.shape))
    out_h, out_w = img.shape[0] - ker.shape[0] + 1, img.shape[1] - ker.shape[1] + 1
    return (ker.reshape(1, -1) @ cols).reshape(out_h, out_w)


# ---- Exercise 1: conv2d_manual


def test_01_e1_solution_and_placeholder():
    accepted(checks.conv2d_manual, solution(1, "conv2d_manual"))
    assert "no answer yet" in rejected(checks.conv2d_manual, placeholder(1, "conv2d_manual"))


def test_cheat_01_e1():
    library = lambda image, kernel: F.conv2d(image[None, None], kernel[None, None])[0, 0]  # noqa: E731
    as_layer = lambda image, kernel: nn.functional.conv2d(image[None, None], kernel[None, None]).squeeze()  # noqa: E731
    for cheat in (library, as_layer, conv_unfold, conv_loops):
        assert "❌" in rejected(checks.conv2d_manual, cheat)
    assert "step per output pixel" in rejected(checks.conv2d_manual, conv_loops)
    assert "unfold" in rejected(checks.conv2d_manual, conv_unfold)

    def windows(image, kernel):  # im2col again, through Tensor.unfold
        patches = image.unfold(0, kernel.shape[0], 1).unfold(1, kernel.shape[1], 1)
        return (patches * kernel).sum(dim=(-2, -1))

    assert "Tensor.unfold" in rejected(checks.conv2d_manual, windows)
    # Copying the 6 × 6 worked example's output: right for one image only.
    shown = torch.tensor([[0.0, 3, 3, 0]] * 4)
    rejected(checks.conv2d_manual, lambda image, kernel: shown)


def _e1_cheats() -> dict[str, Any]:
    """Ways past the check that the hostile review found: each computes the convolution without the exercise's loop."""
    import numpy as np

    def aten_conv2d(image, kernel):
        return torch.ops.aten.conv2d(image[None, None], kernel[None, None])[0, 0]

    def aten_convolution(image, kernel):
        x, w = image[None, None], kernel[None, None]
        return torch.ops.aten.convolution(x, w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1)[0, 0]

    def private_convolution(image, kernel):
        x, w = image[None, None], kernel[None, None]
        out = torch._convolution(
            x, w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, False, False, True, True
        )
        return out[0, 0]

    def im2col(image, kernel):
        cols = torch._C._nn.im2col(image[None, None], tuple(kernel.shape), (1, 1), (0, 0), (1, 1))
        out_h, out_w = image.shape[0] - kernel.shape[0] + 1, image.shape[1] - kernel.shape[1] + 1
        return (kernel.reshape(1, -1) @ cols).reshape(out_h, out_w)

    def numpy_strides(image, kernel):
        img, ker = image.detach().numpy(), kernel.detach().numpy()
        out_h, out_w = img.shape[0] - ker.shape[0] + 1, img.shape[1] - ker.shape[1] + 1
        windows = np.lib.stride_tricks.as_strided(
            img, (out_h, out_w, *ker.shape), img.strides * 2, writeable=False
        )
        return torch.from_numpy(np.einsum("ijab,ab->ij", windows, ker).copy())

    def fft(image, kernel):
        h, w = image.shape
        kh, kw = kernel.shape
        spectrum = torch.fft.rfft2(image) * torch.fft.rfft2(kernel.flip(0, 1), s=(h, w))
        return torch.fft.irfft2(spectrum, s=(h, w))[kh - 1 :, kw - 1 :]

    def conv_tbc(image, kernel):  # a 1-D convolution per kernel row, summed: (time, batch, channels)
        out_h, out_w = image.shape[0] - kernel.shape[0] + 1, image.shape[1] - kernel.shape[1] + 1
        out = torch.zeros(out_h, out_w)
        for a in range(kernel.shape[0]):
            rows = image[a : a + out_h].T[:, :, None]  # (W, out_h, 1)
            out = out + torch.conv_tbc(rows, kernel[a].reshape(-1, 1, 1), torch.zeros(1)).squeeze(-1).T
        return out

    def numpy_loop(image, kernel):  # a loop over output pixels the torch counter does not see
        img, ker = image.tolist(), kernel.tolist()
        kh, kw = len(ker), len(ker[0])
        out = [
            [
                sum(img[i + a][j + b] * ker[a][b] for a in range(kh) for b in range(kw))
                for j in range(len(img[0]) - kw + 1)
            ]
            for i in range(len(img) - kh + 1)
        ]
        return torch.tensor(out)

    class Agreeable(torch.Tensor):  # a tensor whose comparisons all say "equal"
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            if func in (torch.allclose, torch.equal):
                return True
            return super().__torch_function__(func, types, args, kwargs or {})

    def agreeable(image, kernel):
        out_h, out_w = image.shape[0] - kernel.shape[0] + 1, image.shape[1] - kernel.shape[1] + 1
        return torch.zeros(out_h, out_w).as_subclass(Agreeable)

    return {
        "convolution operator": aten_conv2d,
        "convolution operator ": aten_convolution,
        "convolution operator  ": private_convolution,
        "im2col": im2col,
        "numpy": numpy_strides,
        "FFT": fft,
        "conv_tbc": conv_tbc,
        "tolist": numpy_loop,
        "torch.Tensor": agreeable,
    }


@pytest.mark.parametrize("says", list(_e1_cheats()))
def test_cheat_01_e1_operators_numpy_and_subclasses(says):
    line = rejected(checks.conv2d_manual, _e1_cheats()[says])
    assert says.strip() in line, line


def test_cheat_01_e1_reading_the_check():
    import sys

    def peek(image, kernel):  # the expected output, looked up in the check's frame
        frame = sys._getframe(1)
        while frame is not None:
            if "expected" in frame.f_locals:
                return frame.f_locals["expected"]
            frame = frame.f_back
        return None

    assert "sys._getframe" in rejected(checks.conv2d_manual, peek)

    def switch_off(image, kernel):  # the watch switched off, then the library
        sys.setprofile(None)
        return F.conv2d(image[None, None], kernel[None, None])[0, 0]

    assert "sys.setprofile" in rejected(checks.conv2d_manual, switch_off)
    # The inputs are drawn anew on every run: a table of the last run's outputs is useless on the next.
    right = solution(1, "conv2d_manual")
    seen: dict[tuple, torch.Tensor] = {}

    def remember(image, kernel):
        seen[tuple(image.shape) + tuple(kernel.shape)] = right(image, kernel).detach()
        return right(image, kernel)

    accepted(checks.conv2d_manual, remember)
    table = dict(seen)
    rejected(checks.conv2d_manual, lambda image, kernel: table[tuple(image.shape) + tuple(kernel.shape)])


def test_01_e1_hints_point_at_the_idea():
    right = solution(1, "conv2d_manual")
    assert "flipped" in rejected(checks.conv2d_manual, lambda image, kernel: right(image, kernel.flip(0, 1)))
    square = lambda image, kernel: right(image, kernel)[: kernel.shape[0], : kernel.shape[0]]  # noqa: E731
    assert "shape" in rejected(checks.conv2d_manual, square)
    assert "raised" in rejected(checks.conv2d_manual, lambda image, kernel: image @ torch.ones(2, 2))


# ---- Exercise 2: vertical_edge_kernel


def test_01_e2_solution_and_placeholder():
    accepted(checks.vertical_edge_kernel, solution(2, "vertical_edge_kernel"))
    rejected(checks.vertical_edge_kernel, placeholder(2, "vertical_edge_kernel"))


def test_cheat_01_e2():
    prewitt = torch.tensor([[-1.0, 0.0, 1.0]] * 3)  # the notebook's "right minus left", section 1
    sobel_x = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])  # section 2
    for kernel in (prewitt, sobel_x):
        assert "size × size" in rejected(checks.vertical_edge_kernel, lambda size, k=kernel: k)
    # Only right for 3 × 3, as graded: the visible check already tries other sizes.
    rejected(checks.vertical_edge_kernel, lambda size: prewitt if size == 3 else torch.zeros(size, size))


def test_01_e2_hints_point_at_the_idea():
    right = solution(2, "vertical_edge_kernel")
    assert "PyTorch does not flip" in rejected(checks.vertical_edge_kernel, lambda size: -right(size))
    assert "horizontal" in rejected(checks.vertical_edge_kernel, lambda size: right(size).T)
    assert "flat" in rejected(checks.vertical_edge_kernel, lambda size: right(size) + 0.1)
    second_derivative = lambda size: torch.tensor([[1.0] + [-2.0] + [1.0] + [0.0] * (size - 3)] * size)  # noqa: E731
    assert "double outline" in rejected(checks.vertical_edge_kernel, second_derivative)
    line = rejected(checks.vertical_edge_kernel, lambda size: right(size)[:, :-1])
    assert "size × size" in line


# ---- Exercise 3: feature_map_size


def test_01_e3_solution_and_placeholder():
    accepted(checks.feature_map_size, solution(3, "feature_map_size"))
    rejected(checks.feature_map_size, placeholder(3, "feature_map_size"))


def test_cheat_01_e3():
    def run_them(layers, height, width):  # measuring instead of working it out
        x = torch.zeros(1, layers[0].in_channels, height, width)
        return tuple(nn.Sequential(*layers)(x).shape[-2:])

    def run_functional(layers, height, width):
        x = torch.zeros(1, layers[0].in_channels, height, width)
        for layer in layers:
            x = F.conv2d(x, layer.weight, None, layer.stride, layer.padding, layer.dilation)
        return tuple(x.shape[-2:])

    for cheat in (run_them, run_functional):
        assert "runs the layers" in rejected(checks.feature_map_size, cheat)

    def square(layers, height, width):  # one formula per layer, the first entry of each setting only
        for layer in layers:
            k, s, p, d = layer.kernel_size[0], layer.stride[0], layer.padding[0], layer.dilation[0]
            height, width = ((n + 2 * p - d * (k - 1) - 1) // s + 1 for n in (height, width))
        return height, width

    assert "pair" in rejected(checks.feature_map_size, square)


def test_cheat_01_e3_operators_meta_tensors_and_tables():
    import sys

    def aten_folded(layers, height, width):  # the convolution operator itself, folded over the layers
        x = torch.zeros(1, layers[0].in_channels if layers else 1, height, width)
        for layer in layers:
            x = torch.ops.aten.convolution(
                x, layer.weight, None, layer.stride, layer.padding, layer.dilation, False, [0, 0], 1
            )
        return tuple(x.shape[-2:])

    def on_meta(layers, height, width):  # no computation at all, only shapes: still running the layers
        x = torch.empty(1, layers[0].in_channels if layers else 1, height, width, device="meta")
        for layer in layers:
            w = torch.empty(layer.weight.shape, device="meta")
            x = torch.ops.aten.conv2d(x, w, None, layer.stride, layer.padding, layer.dilation)
        return tuple(x.shape[-2:])

    for cheat in (aten_folded, on_meta):
        assert "runs the layers" in rejected(checks.feature_map_size, cheat)

    def switch_off(layers, height, width):
        sys.setprofile(None)
        x = torch.zeros(1, layers[0].in_channels if layers else 1, height, width)
        return tuple(nn.Sequential(*layers)(x).shape[-2:]) if layers else (height, width)

    assert "sys.setprofile" in rejected(checks.feature_map_size, switch_off)
    # A table of the sizes the check asked for: the random stacks are drawn anew on every run.
    right, table = solution(3, "feature_map_size"), {}

    def key(layers, height, width):
        settings = ("kernel_size", "stride", "padding", "dilation")
        return (height, width, tuple(tuple(getattr(layer, s) for s in settings) for layer in layers))

    def remember(layers, height, width):
        table[key(layers, height, width)] = right(layers, height, width)
        return table[key(layers, height, width)]

    accepted(checks.feature_map_size, remember)
    known = dict(table)
    rejected(checks.feature_map_size, lambda *args: known.get(key(*args), (1, 1)))


def test_01_e3_hints_point_at_the_idea():
    def padding_once(layers, height, width):
        size = [height, width]
        for layer in layers:
            for axis in (0, 1):
                k, s, p, d = (
                    getattr(layer, a)[axis] for a in ("kernel_size", "stride", "padding", "dilation")
                )
                size[axis] = (size[axis] + p - d * (k - 1) - 1) // s + 1
        return tuple(size)

    assert "padding is added on both sides" in rejected(checks.feature_map_size, padding_once)
    assert "pair" in rejected(checks.feature_map_size, lambda layers, height, width: height)


# ---- Exercise 4: predicted_shape

SETUP = "from course_machinery.checks import lesson01 as checks\nimport torch\nfrom torch import nn"


def test_01_e4_solution_and_placeholder():
    value = solution(4, "predicted_shape")
    accepted(checks.predicted_shape, value)
    rejected(checks.predicted_shape, placeholder(4, "predicted_shape"))
    # In a kernel, as the learner runs it: the answer cell's own source, then the check.
    assert in_ipython(SETUP, _answer_source(4), "checks.predicted_shape(predicted_shape)").startswith("✅")
    by_hand = "predicted_shape = (4, 16, (32 + 2 - 4 - 1) // 2 + 1, (20 + 2 - 4 - 1) // 2 + 1)"
    assert in_ipython(SETUP, by_hand, "checks.predicted_shape(predicted_shape)").startswith("✅")
    in_ipython(SETUP, by_hand, "checks.grade(checks.predicted_shape, predicted_shape)")  # does not raise


def test_cheat_01_e4():
    run_it = (
        "layer = nn.Conv2d(3, 16, kernel_size=5, stride=2, padding=1)\n"
        "predicted_shape = tuple(layer(torch.zeros(4, 3, 32, 20)).shape)"
    )
    line = in_ipython(SETUP, run_it, "checks.predicted_shape(predicted_shape)")
    assert line.startswith("❌") and "by hand" in line
    with pytest.raises(AssertionError):
        in_ipython(SETUP, run_it, "checks.grade(checks.predicted_shape, predicted_shape)")
    from_a_name = "h = (32 + 2 - 4 - 1) // 2 + 1\npredicted_shape = (4, 16, h, 9)"
    assert in_ipython(SETUP, from_a_name, "checks.predicted_shape(predicted_shape)").startswith("❌")
    # The 32 × 32 question of an older edition, or a shape with the input's channels: wrong values.
    assert "width: not right" in rejected(checks.predicted_shape, (4, 16, 15, 15))
    assert "channels: not right" in rejected(checks.predicted_shape, (4, 3, 15, 9))


# ---- Exercise 5: conv_parameter_count


def test_01_e5_solution_and_placeholder():
    accepted(checks.conv_parameter_count, solution(5, "conv_parameter_count"))
    rejected(checks.conv_parameter_count, placeholder(5, "conv_parameter_count"))


def test_cheat_01_e5():
    def build_and_count(in_channels, out_channels, kernel_size, bias=True):
        return cu.count_parameters(nn.Conv2d(in_channels, out_channels, kernel_size, bias=bias))

    def build_and_sum(in_channels, out_channels, kernel_size, bias=True):
        layer = nn.Conv2d(in_channels, out_channels, kernel_size, bias=bias)
        return layer.weight.numel() + (layer.bias.numel() if bias else 0)

    for cheat in (build_and_count, build_and_sum):
        assert "builds a layer" in rejected(checks.conv_parameter_count, cheat)
    # The old exercise's one number, whatever the settings.
    rejected(checks.conv_parameter_count, lambda *args, **kwargs: 32 * 16 * 3 * 3 + 32)

    def switch_off(in_channels, out_channels, kernel_size, bias=True):  # the watch switched off first
        import sys

        sys.setprofile(None)
        return cu.count_parameters(nn.Conv2d(in_channels, out_channels, kernel_size, bias=bias))

    assert "sys.setprofile" in rejected(checks.conv_parameter_count, switch_off)
    # A table of the counts the check asked for: its settings are drawn anew on every run.
    right, table = solution(5, "conv_parameter_count"), {}

    def remember(c_in, c_out, k, bias=True):
        table[(c_in, c_out, k, bias)] = right(c_in, c_out, k, bias=bias)
        return table[(c_in, c_out, k, bias)]

    accepted(checks.conv_parameter_count, remember)
    known = dict(table)
    rejected(checks.conv_parameter_count, lambda c_in, c_out, k, bias=True: known.get((c_in, c_out, k, bias)))


def test_01_e5_hints_point_at_the_idea():
    right = solution(5, "conv_parameter_count")
    no_bias = lambda c_in, c_out, k, bias=True: right(c_in, c_out, k, bias=False)  # noqa: E731
    assert "biases" in rejected(checks.conv_parameter_count, no_bias)

    def square(c_in, c_out, k, bias=True):
        k = k if isinstance(k, int) else k[0]
        return right(c_in, c_out, k, bias=bias)

    assert "pair" in rejected(checks.conv_parameter_count, square)


def test_checks_leave_the_learners_random_state_alone():
    torch.manual_seed(5)
    before = torch.random.get_rng_state()
    accepted(checks.feature_map_size, solution(3, "feature_map_size"))
    accepted(checks.predicted_shape, (4, 16, 15, 9))
    accepted(checks.conv2d_manual, solution(1, "conv2d_manual"))
    assert torch.equal(torch.random.get_rng_state(), before)
