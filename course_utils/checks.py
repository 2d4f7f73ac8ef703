"""Friendly checks for the notebook exercises: they print ✅ or a ❌ hint and return True or False."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._feedback import failed, number, passed, raised, run_on_zeros, same, unanswered
from .models import conv_output_size

__all__ = [
    "check_conv_output_size",
    "check_output_shape",
    "check_conv_params",
    "check_flatten_features",
    "check_conv2d_manual",
    "check_kernel",
    "check_trainable",
    "check_accuracy",
    "check_equal",
]

# A check never raises for a wrong answer: learners should see a hint, not a traceback. Only mistakes by
# the notebook author (an unknown kernel name, say) raise.


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


def check_conv_output_size(fn: Callable[..., Any]) -> bool:
    """Check a learner's ``fn(size, kernel_size, stride=1, padding=0, dilation=1)`` on several cases.

    Args:
        fn: The learner's function.

    Returns:
        True when every case matches PyTorch's formula.
    """
    defaults = {"stride": 1, "padding": 0, "dilation": 1}
    for size, k, stride, padding, dilation in _CONV_CASES:
        try:
            answer = fn(size, k, stride, padding, dilation)
        except Exception as exc:  # learner code: report, do not raise
            return raised(exc)
        if unanswered(answer):
            return False
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


def check_output_shape(answer: Sequence[int], layer: nn.Module, input_shape: Sequence[int]) -> bool:
    """Check a predicted output shape by running ``layer`` on zeros of ``input_shape``.

    Args:
        answer: The learner's shape, e.g. ``(1, 16, 14, 14)``.
        layer: The module (layer or model) to run.
        input_shape: Shape of the input, including the batch dimension.

    Returns:
        True when the shape matches.
    """
    if unanswered(answer):
        return False
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
) -> bool:
    """Check the number of parameters of ``nn.Conv2d(in_channels, out_channels, kernel_size, bias=bias)``.

    Args:
        answer: The learner's count.
        in_channels: Input channels.
        out_channels: Output channels (number of filters).
        kernel_size: Kernel side, or (height, width).
        bias: Whether the layer has a bias.

    Returns:
        True when the count is right.
    """
    if unanswered(answer):
        return False
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
) -> bool:
    """Check the number of features after flattening the output of some layers (per image).

    Args:
        answer: The learner's number of features (the ``in_features`` of the next ``nn.Linear``).
        model_or_layers: A module, or a list of layers run one after the other.
        input_shape: Input shape ``(C, H, W)`` or ``(batch, C, H, W)``.

    Returns:
        True when the number is right.
    """
    if unanswered(answer):
        return False
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


def check_conv2d_manual(fn: Callable[[torch.Tensor, torch.Tensor], Any]) -> bool:
    """Check a learner's ``fn(image, kernel)`` that computes a 2-D cross-correlation (no padding, stride 1).

    Args:
        fn: The learner's function, taking 2-D tensors ``(H, W)`` and ``(kH, kW)``.

    Returns:
        True when it matches ``F.conv2d`` on random inputs.
    """
    gen = torch.Generator().manual_seed(0)  # own generator: the learner's global seed is left alone
    for (h, w), (kh, kw) in (((6, 7), (3, 3)), ((8, 8), (2, 4)), ((5, 5), (1, 1)), ((9, 6), (5, 3))):
        image, kernel = torch.randn(h, w, generator=gen), torch.randn(kh, kw, generator=gen)
        expected = F.conv2d(image[None, None], kernel[None, None])[0, 0]  # (h - kh + 1, w - kw + 1)
        try:
            output = fn(image.clone(), kernel.clone())
            if unanswered(output):
                return False
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


def check_kernel(answer: Any, name: str) -> bool:
    """Check a hand-designed kernel by its properties.

    Args:
        answer: A 2-D kernel (tensor or nested list).
        name: ``"vertical_edges"``, ``"horizontal_edges"`` or ``"blur"``.

    Returns:
        True when the kernel has the properties that kind of kernel needs.
    """
    if unanswered(answer):
        return False
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


def check_trainable(model: nn.Module, expected_trainable_names: Sequence[str]) -> bool:
    """Check which parameters are trainable (``requires_grad``), by name prefix.

    Args:
        model: The learner's model.
        expected_trainable_names: Prefixes of the parameters that should train, e.g. ``["fc"]``.

    Returns:
        True when exactly the parameters under those prefixes are trainable.
    """
    prefixes = list(expected_trainable_names)

    def under(name: str, prefix: str) -> bool:
        return name == prefix or name.startswith(prefix + ".")

    params = list(model.named_parameters())
    missing = [p for p in prefixes if not any(under(n, p) for n, _ in params)]
    if missing:
        return failed(f"the model has no parameters under {missing}; did you replace or rename that layer?")
    frozen = sorted({p for p in prefixes for n, t in params if under(n, p) and not t.requires_grad})
    extra = sorted(
        {n.split(".")[0] for n, t in params if t.requires_grad and not any(under(n, p) for p in prefixes)}
    )
    if not frozen and not extra:
        count = sum(t.numel() for _, t in params if t.requires_grad)
        total = sum(t.numel() for _, t in params)
        return passed(f"{count:,} of {total:,} parameters are trainable ({', '.join(prefixes)}).")
    problems = []
    if frozen:
        problems.append(f"{frozen} should be trainable but some of their parameters are frozen")
    if extra:
        problems.append(f"{extra} should be frozen but still have requires_grad=True")
    return failed(
        "; ".join(problems) + ". Set requires_grad on the parameters, e.g. with a loop over "
        "model.named_parameters() (a newly created layer is trainable by default)."
    )


def check_accuracy(acc: float, threshold: float) -> bool:
    """Check that an accuracy (a fraction) reaches a target.

    Args:
        acc: Accuracy as a fraction between 0 and 1.
        threshold: The target fraction.

    Returns:
        True when ``acc >= threshold``.
    """
    if unanswered(acc):
        return False
    value = number(acc)
    if value is None or not 0.0 <= value <= 1.0:
        return failed(f"give the accuracy as a fraction between 0 and 1 (0.9 for 90%); you gave {acc!r}.")
    if value >= threshold - 1e-6:  # float32 accuracies such as 0.9 are stored as 0.8999999762
        return passed(f"accuracy {value:.1%} reaches the {threshold:.1%} target.")
    return failed(
        f"accuracy {value:.1%} is below the {threshold:.1%} target. Try training longer, another "
        "learning rate, or the improvements from this notebook."
    )


def check_equal(answer: Any, expected: Any, *, hint: str) -> bool:
    """Compare an answer with the expected value (floats with a small tolerance) and show ``hint`` if wrong.

    Args:
        answer: The learner's answer.
        expected: The right answer (never printed).
        hint: What to print after "❌ Not yet:" when the answer is wrong.

    Returns:
        True when the answer is right.
    """
    if unanswered(answer):
        return False
    return passed("that's right.") if same(answer, expected) else failed(hint)
