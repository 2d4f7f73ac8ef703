"""Checks for lesson 01 (convolution basics): each judges the learner's answer on inputs it chooses itself.

Exercise 1 builds a convolution by looping over the kernel's entries, exercise 2 designs a vertical-edge kernel of
any size, exercise 3 works out the output size of a stack of conv layers from their settings, exercise 4 predicts
an output shape by hand, exercise 5 counts the parameters of any conv layer. Every check prints one line (✅ or a
❌ hint that never states the expected value) and returns a ``Verdict``; ``grade`` runs it with more inputs.
"""

from __future__ import annotations

import ast
import os
import random
import sys
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from course_utils import count_parameters

from ._feedback import (
    NOT_YET,
    Verdict,
    failed,
    grade,
    number,
    passed,
    raised,
    typed_as_literal,
    unanswered,
    watch_calls,
)

__all__ = [
    "grade",
    "conv2d_manual",
    "vertical_edge_kernel",
    "feature_map_size",
    "predicted_shape",
    "conv_parameter_count",
]


# ---------------------------------------------------------------------------------------------------------------
# Helpers of this lesson
# ---------------------------------------------------------------------------------------------------------------


def _notebook_functions(*names: str) -> dict[str, Any]:
    """The learner's kernel's functions of these names (the lesson's earlier worked versions), where there is one."""
    try:
        namespace = get_ipython().user_ns  # type: ignore[name-defined]  # noqa: F821
    except NameError:
        return {}
    return {name: namespace[name] for name in names if callable(namespace.get(name))}


def _convolution_library() -> dict[str, Any]:
    """The functions that compute a convolution (or its windows) for you: what exercise 1 asks to write by hand."""
    targets: dict[str, Any] = {
        "F.conv2d": F.conv2d,  # the same built-in as torch.conv2d, and what nn.Conv2d runs
        "F.conv1d": F.conv1d,
        "F.conv3d": F.conv3d,
        "torch.convolution": torch.convolution,
        "F.conv_transpose2d": F.conv_transpose2d,
        "F.unfold": F.unfold,  # im2col, the lesson's second way
        "Tensor.unfold": torch.Tensor.unfold,
        "Tensor.as_strided": torch.Tensor.as_strided,
        "torch.as_strided": torch.as_strided,
        "nn.Module.__call__": nn.Module._call_impl,  # running any layer (nn.Conv2d, nn.Unfold)
    }
    import numpy as np

    targets["numpy sliding_window_view"] = np.lib.stride_tricks.sliding_window_view
    signal = sys.modules.get("scipy.signal")
    if signal is not None:  # only where the learner has imported it
        for name in ("correlate2d", "convolve2d", "correlate", "convolve", "fftconvolve", "oaconvolve"):
            if hasattr(signal, name):
                targets[f"scipy.signal.{name}"] = getattr(signal, name)
    return targets


class _CountOps(TorchFunctionMode):
    """Counts torch operations (indexing, arithmetic, attribute reads of tensors) run inside the block."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        self.count += 1
        return func(*args, **(kwargs or {}))


def _call(
    fn: Callable[..., Any],
    targets: dict[str, Any],
    *args: Any,
    ops: dict[str, str] | None = None,
    **kwargs: Any,
) -> tuple[Any, set[str], Any]:
    """Run the learner's ``fn`` while watching ``targets`` (and ATen ``ops``): (its result or None, the names it
    called, its error)."""
    result, error = None, None
    with watch_calls(targets, ops=ops) as seen:
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:  # learner code: reported by the caller, after the watch
            error = exc
    return result, set(seen), error


def _as_tensor(value: Any) -> torch.Tensor | None:
    try:
        return torch.as_tensor(value, dtype=torch.float32).detach().cpu()
    except Exception:  # a string, a ragged list, None
        return None


def _last_assignment(source: str, name: str) -> ast.expr | None:
    """The expression last assigned to ``name`` at the top level of a cell's ``source``."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    value = None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            value = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name:
            value = node.value
    return value


_BY_HAND = (ast.Tuple, ast.List, ast.BinOp, ast.UnaryOp, ast.Constant, ast.operator, ast.unaryop, ast.Load)


def _typed_by_hand(name: str) -> bool | None:
    """Whether ``name`` was typed as a value or as arithmetic on typed numbers (see ``typed_as_literal``)."""
    return typed_as_literal(name)


def _fresh_seed() -> int:
    """A seed drawn anew on every run (from the operating system): hidden inputs no answer can tabulate."""
    return int.from_bytes(os.urandom(8), "little")


def _refused(seen: set[str], what: str) -> str:
    """The hint for an answer that called something it must not: what it called, and what the exercise asks."""
    meta = sorted(name for name in seen if name.startswith(("sys.", "inspect.", "gc.")))
    if meta:
        return (
            f"your function calls {', '.join(meta)}: it inspects or switches off the check that runs it. "
            f"{what}"
        )
    return f"your function calls {', '.join(sorted(seen))}. {what}"


def _fresh_conv(*args: Any, **kwargs: Any) -> nn.Conv2d:
    """An ``nn.Conv2d`` made without touching the learner's random number generator (their seed stays theirs)."""
    with torch.random.fork_rng(devices=[]):
        return nn.Conv2d(*args, **kwargs)


# ---------------------------------------------------------------------------------------------------------------
# Exercise 1: conv2d_manual, a convolution with a loop over the kernel's entries
# ---------------------------------------------------------------------------------------------------------------

_E1_CASES = [((9, 11), (2, 3)), ((12, 7), (4, 1)), ((6, 6), (3, 3))]
_E1_HIDDEN = [((5, 8), (1, 1)), ((7, 5), (7, 5)), ((20, 3), (5, 2)), ((10, 13), (3, 6)), ((16, 16), (5, 5))]
_E1_TIMING_CASE = ((34, 37), (3, 2))  # 32 × 36 output pixels, 6 kernel entries

# The ATen operators that compute a convolution, its windows or its spectrum for you, however they are reached
# (torch.ops.aten.*, torch._convolution, torch._C._nn.im2col, a disabled function hook): none of them runs in a
# loop over the kernel's entries made of slicing, multiplying and adding.
_E1_OPS = {
    "convolution": "a convolution operator",
    "_convolution": "a convolution operator",
    "conv_tbc": "a convolution operator (conv_tbc)",
    "im2col": "im2col (unfold)",
    "unfold": "Tensor.unfold",
    "as_strided": "as_strided (a view of the windows)",
    "_fft_r2c": "an FFT",
    "_fft_c2r": "an FFT",
    "_fft_c2c": "an FFT",
}


def _numpy_routes() -> dict[str, Any]:
    """Ways out of torch: an answer computed in NumPy (or element by element in Python) is no torch computation of
    the input, and the check's counter of torch operations would not see its loop over output pixels."""
    import numpy as np

    return {
        "Tensor.numpy": torch.Tensor.numpy,
        "Tensor.__array__": torch.Tensor.__array__,
        "Tensor.tolist": torch.Tensor.tolist,
        "np.asarray": np.asarray,
        "np.array": np.array,
        "numpy as_strided": np.lib.stride_tricks.as_strided,
        "np.einsum": np.einsum,
    }


def conv2d_manual(fn: Callable[[torch.Tensor, torch.Tensor], Any], *, hidden: bool = False) -> Verdict:
    """Exercise 1: ``fn(image, kernel)`` computes PyTorch's 2-D convolution (no padding, stride 1) by looping over
    the kernel's entries, on random non-square images and kernels this check draws anew on every run.

    Args:
        fn: The learner's function, taking 2-D tensors ``(H, W)`` and ``(kH, kW)``.
        hidden: Try more shapes (as the grading does).

    Returns:
        A true Verdict when it matches ``F.conv2d`` everywhere (values and gradients), computed with torch
        operations on the inputs, without calling a convolution (or unfold, as_strided, an FFT, NumPy) and
        without a loop over output pixels.
    """
    gen = torch.Generator().manual_seed(_fresh_seed())  # own generator, fresh values on every run
    targets = _convolution_library() | _numpy_routes() | _notebook_functions("conv_unfold", "conv_loops")
    cases = _E1_CASES + (_E1_HIDDEN if hidden else []) + [_E1_TIMING_CASE]
    for (h, w), (kh, kw) in cases:
        image, kernel = torch.randn(h, w, generator=gen), torch.randn(kh, kw, generator=gen)
        refuse = (
            "This exercise asks you to compute the convolution yourself, with torch operations in a loop over "
            "the kernel's entries."
        )
        counter = _CountOps()
        with counter:
            output, seen, error = _call(fn, targets, image.clone(), kernel.clone(), ops=_E1_OPS)
        if seen:
            return failed(_refused(seen, refuse))
        if error is not None:
            return raised(error)
        if unanswered(output):
            return NOT_YET
        if type(output) is not torch.Tensor:
            return failed(f"return a torch.Tensor; your function returned a {type(output).__name__}.")
        out_shape = (h - kh + 1, w - kw + 1)
        if tuple(output.shape) != out_shape:
            return failed(
                f"for an image of shape {(h, w)} and a kernel of shape {(kh, kw)} your output has shape "
                f"{tuple(output.shape)}. Without padding the kernel may only sit where it fits entirely "
                "inside the image, along each axis separately."
            )
        # Once more on inputs that track gradients: the answer must be a torch computation of them, whose
        # gradient is the convolution's too (with gradients, writing into a view runs as_strided: allowed here).
        given = (image.clone().requires_grad_(True), kernel.clone().requires_grad_(True))
        weights = torch.randn(out_shape, generator=gen)
        grads: tuple[Any, ...] = (None, None)
        ops = {k: v for k, v in _E1_OPS.items() if k != "as_strided"}
        with watch_calls(targets, ops=ops) as seen_again:
            try:
                tracked = fn(*given)
                if type(tracked) is torch.Tensor and tracked.requires_grad:
                    grads = torch.autograd.grad(tracked, given, weights, allow_unused=True)
            except Exception:  # noqa: BLE001  # no graph back to the inputs: judged below
                grads = (None, None)
        if seen_again:
            return failed(_refused(set(seen_again), refuse))
        # What the check expects, computed only now: nothing of it existed while the answer ran.
        ref_image, ref_kernel = image.clone().requires_grad_(True), kernel.clone().requires_grad_(True)
        expected = F.conv2d(ref_image[None, None], ref_kernel[None, None])[0, 0]
        expected_grads = torch.autograd.grad(expected, (ref_image, ref_kernel), weights)
        expected = expected.detach()
        result = (
            output.detach().float()
        )  # (detach: an output of inputs without gradients may still track some)
        if not torch.allclose(result, expected, atol=1e-4):
            flipped = F.conv2d(image[None, None], kernel.flip(0, 1)[None, None])[0, 0]
            if torch.allclose(result, flipped, atol=1e-4):
                return failed(
                    "you flipped the kernel. PyTorch's convolution is a cross-correlation: kernel[a, b] "
                    "multiplies the pixel a rows down and b columns right of the window's corner."
                )
            return failed(
                f"the shape is right but the values differ (image {(h, w)}, kernel {(kh, kw)}). Each output "
                "pixel is the sum over all kernel entries of kernel[a, b] times one image pixel: which block "
                "of the image does kernel[a, b] meet, over all output positions?"
            )
        if any(
            g is None or g.shape != e.shape or not torch.allclose(g.float(), e, atol=1e-3)
            for g, e in zip(grads, expected_grads, strict=True)
        ):
            return failed(
                "the values are right, but they were not computed from the image and the kernel with torch "
                "operations (no gradient flows back to them). Compute the output with torch: slices of the "
                "image, times kernel entries, added up."
            )
        if counter.count > 10 * kh * kw + 60 and counter.count > expected.numel():
            return failed(
                "the values are right, but your function runs a step per output pixel. The exercise asks for "
                "a loop over the kernel's entries only: each one handles every output position at once."
            )
    return passed("your loop over the kernel's entries matches F.conv2d on random images and kernels.")


# ---------------------------------------------------------------------------------------------------------------
# Exercise 2: vertical_edge_kernel(size), a vertical-edge detector of any size
# ---------------------------------------------------------------------------------------------------------------

_E2_SIZES = [5, 4]
_E2_HIDDEN = [2, 3, 6, 7, 9]


def vertical_edge_kernel(fn: Callable[[int], Any], *, hidden: bool = False) -> Verdict:
    """Exercise 2: ``fn(size)`` returns a ``(size, size)`` kernel that gives 0 on flat regions and on horizontal
    structure, and a positive response (never a negative one) where brightness rises from left to right.

    Args:
        fn: The learner's function of the kernel size.
        hidden: Try more sizes (as the grading does).

    Returns:
        A true Verdict when every size the check tries gives such a kernel.
    """
    gen = torch.Generator().manual_seed(202)
    for size in _E2_SIZES + (_E2_HIDDEN if hidden else []):
        try:
            output = fn(size)
        except Exception as exc:
            return raised(exc)
        if unanswered(output):
            return NOT_YET
        k = _as_tensor(output)
        if k is None or k.shape != (size, size):
            shape = "no tensor" if k is None else f"shape {tuple(k.shape)}"
            return failed(
                f"for size={size} your function returned {shape}; the kernel should be size × size."
            )
        magnitude = float(k.abs().sum())
        if magnitude == 0:
            return failed(f"for size={size} your kernel is all zeros, so it responds to nothing.")
        tolerance = 1e-4 * magnitude
        n = size + 14  # every position of the kernel across an edge fits inside the test images
        column = int(torch.randint(size, n - size, (1,), generator=gen))
        row_profile = torch.rand(n, 1, generator=gen).expand(
            n, n
        )  # brightness changes only from top to bottom
        flat = torch.full((n, n), float(torch.rand(1, generator=gen)) + 0.2)
        rising = (torch.arange(n) >= column).float().expand(n, n)  # dark on the left, bright on the right
        respond = {
            name: F.conv2d(img[None, None], k[None, None])[0, 0]
            for name, img in [
                ("flat", flat),
                ("rows", row_profile),
                ("rising", rising),
                ("falling", 1 - rising),
            ]
        }
        if respond["flat"].abs().max() > tolerance:
            return failed(
                f"for size={size} your kernel responds to a flat region; an edge detector gives 0 there."
            )
        if respond["rows"].abs().max() > tolerance:
            return failed(
                f"for size={size} your kernel responds to horizontal edges. A vertical-edge detector compares "
                "left with right, so nothing that changes only from top to bottom may reach its output."
            )
        if respond["rising"].max() < 0.2 * magnitude:
            if respond["rising"].min() < -0.2 * magnitude:
                return failed(
                    f"for size={size} your kernel gives negative values where brightness rises from left to "
                    "right. Which side should get the positive weights? (PyTorch does not flip the kernel.)"
                )
            return failed(
                f"for size={size} your kernel barely responds to a vertical edge: compare the pixels on one "
                "side of it with those on the other."
            )
        if respond["rising"].min() < -tolerance or respond["falling"].max() > tolerance:
            return failed(
                f"for size={size} your kernel gives both positive and negative values on the same edge (a "
                "double outline, like the Laplacian). Make it answer one sign for dark-to-bright, left to right."
            )
    return passed(
        "your kernels find vertical edges, positive from dark to bright, and ignore everything else."
    )


# ---------------------------------------------------------------------------------------------------------------
# Exercise 3: feature_map_size(layers, height, width), worked out from the layers' settings
# ---------------------------------------------------------------------------------------------------------------

_E3_CASES = [  # (layers as Conv2d arguments, height, width)
    ([dict(in_channels=3, out_channels=8, kernel_size=(3, 5), stride=(2, 1), padding=(1, 2))], 37, 50),
    (
        [
            dict(in_channels=1, out_channels=4, kernel_size=5, padding=2),
            dict(in_channels=4, out_channels=8, kernel_size=3, stride=2, dilation=2),
            dict(in_channels=8, out_channels=8, kernel_size=(1, 3), stride=(1, 3)),
        ],
        64,
        45,
    ),
]


def _random_stack(gen: torch.Generator, height: int, width: int) -> list[dict[str, Any]]:
    """One to four conv layers with random settings, each leaving at least one output pixel along each axis."""
    layers: list[dict[str, Any]] = []
    channels = 2
    for _ in range(int(torch.randint(2, 5, (1,), generator=gen))):
        settings = {
            "kernel_size": tuple(int(v) for v in torch.randint(1, 6, (2,), generator=gen)),
            "stride": tuple(int(v) for v in torch.randint(1, 4, (2,), generator=gen)),
            "padding": tuple(int(v) for v in torch.randint(0, 3, (2,), generator=gen)),
            "dilation": tuple(int(v) for v in torch.randint(1, 3, (2,), generator=gen)),
        }
        sizes = []
        for axis, size in enumerate((height, width)):
            k, s, p, d = (settings[key][axis] for key in ("kernel_size", "stride", "padding", "dilation"))
            sizes.append((size + 2 * p - d * (k - 1) - 1) // s + 1)
        if min(sizes) < 1:
            break
        height, width = sizes
        layers.append(dict(in_channels=channels, out_channels=channels, **settings))
    return layers


def feature_map_size(fn: Callable[..., Any], *, hidden: bool = False) -> Verdict:
    """Exercise 3: ``fn(layers, height, width)`` gives the ``(height, width)`` after a list of ``nn.Conv2d``
    layers, from their settings, without running them; on stacks with non-square settings the check builds.

    Args:
        fn: The learner's function.
        hidden: Try random stacks and an empty one too (as the grading does).

    Returns:
        A true Verdict when every stack's size matches what the layers really output.
    """
    gen = torch.Generator().manual_seed(_fresh_seed())  # random stacks drawn anew on every run
    cases = list(_E3_CASES)
    cases.append((_random_stack(gen, 41, 36), 41, 36))
    if hidden:
        cases.append(([], 19, 23))
        for height, width in ((28, 28), (51, 40), (100, 77), (33, 64)):
            cases.append((_random_stack(gen, height, width), height, width))
    targets = {
        "a layer (running it)": nn.Module._call_impl,
        "F.conv2d": F.conv2d,
        "torch.convolution": torch.convolution,
        "F.unfold": F.unfold,
    }
    ops = {name: "a convolution" for name in ("convolution", "_convolution", "conv_tbc", "im2col")}
    for specs, height, width in cases:
        layers = [_fresh_conv(**spec) for spec in specs]
        answer, seen, error = _call(fn, targets, list(layers), height, width, ops=ops)
        if seen:
            if seen <= set(targets) | set(ops.values()):
                return failed(
                    "your function runs the layers (or a convolution) to measure the size. Work it out from "
                    "each layer's settings with the output-size formula instead."
                )
            return failed(_refused(seen, "Work the size out from each layer's settings instead."))
        with torch.no_grad():  # what the layers really output, measured only after the answer has run
            x = torch.zeros(1, specs[0]["in_channels"] if specs else 1, height, width)
            expected = tuple(nn.Sequential(*layers)(x).shape[-2:]) if layers else (height, width)
        if error is not None:
            return raised(error)
        if unanswered(answer):
            return NOT_YET
        try:
            given = tuple(number(v) for v in answer)
        except TypeError:
            given = ()
        if len(given) != 2 or None in given:
            return failed("return the size as a pair of numbers, (height, width).")
        if given == expected:
            continue
        square = (height, width)
        for layer in layers:  # what reading only the first entry of each setting gives
            k, s, p, d = (getattr(layer, key)[0] for key in ("kernel_size", "stride", "padding", "dilation"))
            square = tuple((n + 2 * p - d * (k - 1) - 1) // s + 1 for n in square)
        if given == square and square != expected:
            return failed(
                "the height looks right but not the width: a Conv2d stores each setting as a pair, "
                "(for the height, for the width)."
            )
        return failed(
            f"for a stack of {len(layers)} conv layers on a {height}×{width} input your size is not what the "
            "layers output. Apply the output-size formula layer after layer (each layer's output is the next "
            "one's input); padding is added on both sides, and the division by the stride rounds down."
        )
    return passed("your sizes match what the layers output, worked out without running them.")


# ---------------------------------------------------------------------------------------------------------------
# Exercise 4: predict an output shape by hand
# ---------------------------------------------------------------------------------------------------------------

_E4_LAYER = dict(in_channels=3, out_channels=16, kernel_size=5, stride=2, padding=1)
_E4_INPUT = (4, 3, 32, 20)  # 4 colour images, 32 high and 20 wide


def predicted_shape(answer: Any, *, hidden: bool = False) -> Verdict:
    """Exercise 4: the shape of ``nn.Conv2d(3, 16, kernel_size=5, stride=2, padding=1)``'s output on a batch of
    shape ``(4, 3, 32, 20)``, typed by hand (a value, or arithmetic on typed numbers).

    Args:
        answer: The learner's shape, a tuple ``(batch, channels, height, width)``.
        hidden: Unused: a prediction has one question (kept for ``grade``).

    Returns:
        A true Verdict when the shape is right and was typed, not computed by running the layer.
    """
    if unanswered(answer):
        return NOT_YET
    if _typed_by_hand("predicted_shape") is False:
        return failed(
            "type your prediction as a value worked out by hand, such as (1, 2, 3, 4), not as code that runs "
            "the layer or a helper."
        )
    with torch.no_grad():
        expected = tuple(_fresh_conv(**_E4_LAYER)(torch.zeros(_E4_INPUT)).shape)
    try:
        given = tuple(number(v) for v in answer)
    except TypeError:
        given = ()
    if len(given) != len(expected) or None in given:
        return failed("give the shape as a tuple of four numbers: (batch, channels, height, width).")
    if given == expected:
        return passed("your prediction is the shape the layer outputs.")
    wrong = [
        name
        for name, g, e in zip(("batch", "channels", "height", "width"), given, expected, strict=True)
        if g != e
    ]
    return failed(
        f"{', '.join(wrong)}: not right yet. The batch size does not change, the channels are the number of "
        "filters, and height and width each follow the output-size formula with their own input size."
    )


# ---------------------------------------------------------------------------------------------------------------
# Exercise 5: conv_parameter_count(in_channels, out_channels, kernel_size, bias=True)
# ---------------------------------------------------------------------------------------------------------------

_E5_CASES = [((5, 7, 3), True), ((2, 6, (3, 5)), True), ((4, 9, 1), False)]
_E5_HIDDEN = [((1, 1, 1), True), ((64, 128, 3), True), ((3, 10, (7, 1)), False), ((12, 5, (2, 4)), True)]


def _parameters(in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], bias: bool) -> int:
    """The count the check expects: the size of the weight (out, in, kH, kW), plus the bias when there is one."""
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    return out_channels * in_channels * kh * kw + (out_channels if bias else 0)


def _random_setting(rng: random.Random) -> tuple[tuple[int, int, int | tuple[int, int]], bool]:
    """Random Conv2d settings: channel counts, a square or non-square kernel size, with or without a bias."""
    k = rng.randint(1, 7)
    kernel: int | tuple[int, int] = (
        k if rng.random() < 0.5 else (k, rng.choice([v for v in range(1, 8) if v != k]))
    )
    return (rng.randint(1, 300), rng.randint(1, 300), kernel), rng.random() < 0.6


def conv_parameter_count(fn: Callable[..., Any], *, hidden: bool = False) -> Verdict:
    """Exercise 5: ``fn(in_channels, out_channels, kernel_size, bias=True)`` counts the parameters of
    ``nn.Conv2d`` with those settings (``kernel_size`` an int or a pair), without building the layer.

    Args:
        fn: The learner's function.
        hidden: Try more settings (as the grading does).

    Returns:
        A true Verdict when every count is right.
    """
    targets = {
        "nn.Conv2d (building the layer)": nn.modules.conv._ConvNd.__init__,
        "count_parameters": count_parameters,
        "Module.parameters": nn.Module.parameters,
        "Module.named_parameters": nn.Module.named_parameters,
    }
    rng = random.Random(_fresh_seed())  # settings drawn anew on every run: nothing to tabulate
    cases = list(_E5_CASES) + [_random_setting(rng)]
    if hidden:
        cases += _E5_HIDDEN + [_random_setting(rng) for _ in range(6)]
    for (c_in, c_out, k), bias in cases:
        answer, seen, error = _call(fn, targets, c_in, c_out, k, bias=bias)
        if seen and not seen <= set(targets):
            return failed(_refused(seen, "Count from the layer's settings alone."))
        if seen:
            return failed(
                "your function builds a layer and counts what it holds. Count from the settings: what shape "
                "is the weight, and how many biases are there?"
            )
        if error is not None:
            return raised(error)
        if unanswered(answer):
            return NOT_YET
        value, expected = number(answer), _parameters(c_in, c_out, k, bias)
        setting = f"Conv2d({c_in}, {c_out}, kernel_size={k}, bias={bias})"
        if value == expected:
            continue
        if bias and value == _parameters(c_in, c_out, k, False):
            return failed(f"for {setting} the weights look right; did you count the biases?")
        if not bias and value == _parameters(c_in, c_out, k, True):
            return failed(f"for {setting}: with bias=False the layer has no bias to count.")
        if isinstance(k, tuple) and value in (
            _parameters(c_in, c_out, k[0], bias),
            _parameters(c_in, c_out, k[1], bias),
        ):
            return failed(f"for {setting}: a kernel_size given as a pair is (height, width), not a square.")
        return failed(
            f"for {setting} your count is not right. Each output channel has one filter with a kernel per "
            "input channel, plus one bias when bias=True."
        )
    return passed("your counts match nn.Conv2d's for every setting tried, without building a layer.")
