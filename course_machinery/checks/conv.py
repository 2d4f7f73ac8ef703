"""Checks for the convolution exercises (notebooks 01 and 02): sizes, shapes, parameter counts, kernels."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._feedback import NOT_YET, Verdict, failed, number, passed, raised, run_on_zeros, unanswered

# the notebook author (an unknown kernel name, say) raise.


def conv_output_size(
    size: int, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1
) -> int:
    """The reference the learner's formula is compared with (the formula in PyTorch's ``Conv2d`` docs)."""
    return math.floor((size + 2 * padding - dilation * (kernel_size - 1) - 1) / stride) + 1


_CONV_CASES = [  # (size, kernel_size, stride, padding, dilation)
    (28, 3, 1, 0, 1),
    (28, 5, 1, 2, 1),
    (28, 5, 2, 0, 1),
    (32, 3, 2, 1, 1),
    (224, 7, 2, 3, 1),
    (7, 3, 1, 1, 1),
    (10, 3, 3, 0, 1),
    (15, 3, 1, 0, 2),
    (16, 3, 2, 2, 2),
    (5, 5, 1, 0, 1),
]


def check_conv_output_size(fn: Callable[..., Any]) -> Verdict:
    """Check a learner's ``fn(size, kernel_size, stride=1, padding=0, dilation=1)`` on several cases.

    Args:
        fn: The learner's function.

    Returns:
        A true Verdict when every case matches PyTorch's formula.
    """
    defaults = {"stride": 1, "padding": 0, "dilation": 1}
    for size, k, stride, padding, dilation in _CONV_CASES:
        try:
            answer = fn(size, k, stride, padding, dilation)
        except Exception as exc:  # learner code: report, do not raise
            return raised(exc)
        if unanswered(answer):
            return NOT_YET
        if number(answer) != conv_output_size(size, k, stride, padding, dilation):
            extras = {"stride": stride, "padding": padding, "dilation": dilation}
            args = ", ".join(
                [f"size={size}", f"kernel_size={k}"]
                + [f"{key}={v}" for key, v in extras.items() if v != defaults[key]]
            )
            return failed(
                f"for {args} you returned {answer!r}. Remember that padding is added on both "
                "sides, dilation spreads the kernel over dilation*(k-1)+1 pixels, and the "
                "division by the stride is rounded down."
            )
    return passed(f"your formula matches PyTorch on all {len(_CONV_CASES)} cases.")


def check_output_shape(answer: Sequence[int], layer: nn.Module, input_shape: Sequence[int]) -> Verdict:
    """Check a predicted output shape by running ``layer`` on zeros of ``input_shape``.

    Args:
        answer: The learner's shape, e.g. ``(1, 16, 14, 14)``.
        layer: The module (layer or model) to run.
        input_shape: Shape of the input, including the batch dimension.

    Returns:
        A true Verdict when the shape matches.
    """
    if unanswered(answer):
        return NOT_YET
    try:
        expected = tuple(run_on_zeros(layer, input_shape).shape)
    except Exception as exc:  # the layer may be the learner's own and fail on this input
        return raised(exc)
    try:
        given = tuple(int(v) for v in answer)
    except (TypeError, ValueError):
        return failed(
            f"give the shape as a tuple of integers, like {tuple(input_shape)}; you gave {answer!r}."
        )
    if given == expected:
        return passed(f"the output shape is {expected}.")
    if len(given) != len(expected):
        return failed(
            f"your shape has {len(given)} dimensions but the output has {len(expected)}; "
            "remember the batch dimension comes first."
        )
    wrong = [i for i, (g, e) in enumerate(zip(given, expected, strict=True)) if g != e]
    names = {0: "batch", 1: "channels"}
    where = ", ".join(names.get(i, f"dimension {i} (spatial)") for i in wrong)
    return failed(
        f"{where} not right yet. The batch size does not change, the channels come from the "
        "layer's out_channels, and height/width follow the output-size formula."
    )


def check_conv_params(
    answer: int, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], bias: bool = True
) -> Verdict:
    """Check the number of parameters of ``nn.Conv2d(in_channels, out_channels, kernel_size, bias=bias)``.

    Args:
        answer: The learner's count.
        in_channels: Input channels.
        out_channels: Output channels (number of filters).
        kernel_size: Kernel side, or (height, width).
        bias: Whether the layer has a bias.

    Returns:
        A true Verdict when the count is right.
    """
    if unanswered(answer):
        return NOT_YET
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    weights = out_channels * in_channels * kh * kw
    expected = weights + (out_channels if bias else 0)
    value = number(answer)
    if value == expected:
        return passed(
            f"{out_channels} filters × {in_channels}×{kh}×{kw} weights"
            + (f" + {out_channels} biases" if bias else "")
            + f" = {expected:,} parameters."
        )
    if bias and value == weights:
        return failed("the weights look right; did you count the biases (one per output channel)?")
    if not bias and value == expected + out_channels:
        return failed("this layer has bias=False, so there are no bias parameters to count.")
    return failed(
        f"each output channel has one filter with in_channels × {kh} × {kw} weights (one per "
        "input channel and kernel position), plus one bias when bias=True."
    )


def check_flatten_features(
    answer: int, model_or_layers: nn.Module | Iterable[nn.Module], input_shape: Sequence[int]
) -> Verdict:
    """Check the number of features after flattening the output of some layers (per image).

    Args:
        answer: The learner's number of features (the ``in_features`` of the next ``nn.Linear``).
        model_or_layers: A module, or a list of layers run one after the other.
        input_shape: Input shape ``(C, H, W)`` or ``(batch, C, H, W)``.

    Returns:
        A true Verdict when the number is right.
    """
    if unanswered(answer):
        return NOT_YET
    module = model_or_layers if isinstance(model_or_layers, nn.Module) else nn.Sequential(*model_or_layers)
    shape = tuple(input_shape)
    shape = (1, *shape) if len(shape) == 3 else shape  # a single image gets a batch dimension
    try:
        out = run_on_zeros(module, shape)
    except Exception as exc:
        return raised(exc)
    expected = math.prod(out.shape[1:])  # nn.Flatten keeps the batch dimension
    value = number(answer)
    if value == expected:
        return passed(f"the output {tuple(out.shape)} flattens to {expected:,} features per image.")
    if value == out.numel() and shape[0] != 1:
        return failed("count the features of one image: the batch dimension stays separate when flattening.")
    return failed(
        "the flattened size is channels × height × width of the last feature maps. Work out the "
        "shape after each layer (pooling divides height and width), or print the shape of a dummy "
        "input passed through the layers."
    )


def check_conv2d_manual(fn: Callable[[torch.Tensor, torch.Tensor], Any]) -> Verdict:
    """Check a learner's ``fn(image, kernel)`` that computes a 2-D cross-correlation (no padding, stride 1).

    Args:
        fn: The learner's function, taking 2-D tensors ``(H, W)`` and ``(kH, kW)``.

    Returns:
        A true Verdict when it matches ``F.conv2d`` on random inputs.
    """
    gen = torch.Generator().manual_seed(0)  # own generator: the learner's global seed is left alone
    for (h, w), (kh, kw) in (((6, 7), (3, 3)), ((8, 8), (2, 4)), ((5, 5), (1, 1)), ((9, 6), (5, 3))):
        image, kernel = torch.randn(h, w, generator=gen), torch.randn(kh, kw, generator=gen)
        expected = F.conv2d(image[None, None], kernel[None, None])[0, 0]  # (h - kh + 1, w - kw + 1)
        try:
            output = fn(image.clone(), kernel.clone())
            if unanswered(output):
                return NOT_YET
            result = torch.as_tensor(output, dtype=torch.float32)
        except Exception as exc:
            return raised(exc)
        if result.shape != expected.shape:
            return failed(
                f"for an image {(h, w)} and a kernel {(kh, kw)} your output has shape "
                f"{tuple(result.shape)}. Without padding the kernel may only sit where it fits "
                "entirely inside the image."
            )
        if not torch.allclose(result, expected, atol=1e-5):
            flipped = F.conv2d(image[None, None], kernel.flip(0, 1)[None, None])[0, 0]
            if torch.allclose(result, flipped, atol=1e-5):
                return failed(
                    "you flipped the kernel. PyTorch's conv2d computes a cross-correlation: it "
                    "does not flip the kernel."
                )
            return failed(
                "the shape is right but the values differ. At each position multiply the window "
                "under the kernel element by element with the kernel and sum (PyTorch's conv2d "
                "does not flip the kernel)."
            )
    return passed("your function matches F.conv2d.")


def check_kernel(answer: Any, name: str) -> Verdict:
    """Check a hand-designed kernel by its properties.

    Args:
        answer: A 2-D kernel (tensor or nested list).
        name: ``"vertical_edges"``, ``"horizontal_edges"`` or ``"blur"``.

    Returns:
        A true Verdict when the kernel has the properties that kind of kernel needs.
    """
    if unanswered(answer):
        return NOT_YET
    if name not in ("vertical_edges", "horizontal_edges", "blur"):
        raise ValueError(f"unknown kernel kind {name!r}; use 'vertical_edges', 'horizontal_edges' or 'blur'")
    try:
        k = torch.as_tensor(answer, dtype=torch.float32)
    except Exception as exc:
        return raised(exc)
    if k.dim() != 2 or min(k.shape) < 1 or k.numel() < 2:
        return failed(f"give a 2-D kernel such as a 3×3 tensor; yours has shape {tuple(k.shape)}.")
    total, magnitude = float(k.sum()), float(k.abs().sum())
    if name == "blur":
        if (k < 0).any():
            return failed("a blur averages neighbouring pixels, so no weight should be negative.")
        if not math.isclose(total, 1.0, abs_tol=1e-4):
            return failed(f"your weights add up to {total:.3g}; a blur should keep the overall brightness.")
        if int((k > 0).sum()) < 2:
            return failed("only one weight is non-zero, which copies pixels instead of mixing neighbours.")
        return passed("non-negative weights that add up to 1: a blur.")
    if magnitude == 0:
        return failed("your kernel is all zeros, so it responds to nothing.")
    if abs(total) > 1e-3 * magnitude:
        return failed(f"your weights add up to {total:.3g}; an edge detector gives 0 on a flat region.")
    step = (torch.arange(16) >= 8).float().expand(16, 16)  # dark left half, bright right half
    vertical, horizontal = step, step.T
    if name == "horizontal_edges":
        vertical, horizontal = horizontal, vertical  # the edge to find, and the one to ignore
    # Strongest response anywhere on each step image (valid positions only, so borders add no edges).
    wanted, other = (
        float(F.conv2d(img[None, None], k[None, None]).abs().max()) for img in (vertical, horizontal)
    )
    edge = "vertical" if name == "vertical_edges" else "horizontal"
    if wanted < 0.2 * magnitude:
        return failed(
            f"your kernel barely responds to a {edge} edge: it should compare the pixels on one "
            "side of the edge with those on the other."
        )
    if other > 0.25 * wanted:
        return failed(
            f"your kernel also responds to edges that are not {edge}; make it change in one "
            "direction only and stay the same along the edge."
        )
    return passed(f"it sums to 0 and responds to {edge} edges but not to the others.")
