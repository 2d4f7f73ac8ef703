"""Checks for notebook 07's exercises: a residual block, a residual block's size, SimpleCNN with a global
average pooling head, and a small ResNet that starts as the identity.

Each check prints one ✅ line or one ❌ hint and returns a Verdict; ``hidden=True`` (through ``grade``) tries more
inputs. The lesson's own ``ResidualBlock`` and ``SmallResNet`` come after the exercises that ask for them; the
checks refuse them (the class itself, a subclass, a copy of its code, or an instance of it inside the answer), and
the course's models (``cu.SimpleCNN``) where an exercise asks for a network of one's own.
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from course_utils import _models

from ._feedback import NOT_YET, Verdict, failed, grade, passed, run_watched, unanswered, watch_calls
from .lesson06 import _code_key, _count_prediction, _first_line, _fresh_rng, _small_tensors

__all__ = ["grade", "residual_block", "block_parameters", "gap_cnn", "my_resnet"]

_REFERENCES = (
    "ResidualBlock",
    "SmallResNet",
)  # the lesson's classes, shown after the exercises that build them


# ---------------------------------------------------------------------------------------------------------
# Helpers: recognising the lesson's own classes and the course's models, skeletons
# ---------------------------------------------------------------------------------------------------------
def _method_keys(cls: type) -> set[tuple]:
    keys = set()
    for name in ("__init__", "forward"):
        function = cls.__dict__.get(name)
        code = getattr(function, "__code__", None)
        if code is not None:
            keys.add((name, _code_key(code)))
    return keys


def _reference_classes() -> list[type]:
    """The lesson's ResidualBlock and SmallResNet: as the running notebook defines them, and as the lesson stores them."""
    found: list[type] = []
    namespaces: list[dict] = []
    try:
        namespaces.append(get_ipython().user_ns)  # type: ignore[name-defined]  # noqa: F821
    except NameError:
        pass
    main = sys.modules.get("__main__")
    if main is not None:
        namespaces.append(vars(main))
    try:
        from course_machinery.lessons import lesson_code

        namespaces.append(vars(lesson_code("07")))
    except Exception:  # the notebook is not at hand (an installed copy): the kernel's names are enough
        pass
    for namespace in namespaces:
        for name in _REFERENCES:
            value = namespace.get(name)
            if isinstance(value, type) and value not in found:
                found.append(value)
    return found + [cls for cls in _library_blocks() if cls not in found]


def _library_blocks() -> list[type]:
    """torchvision's ResNet blocks and network: a wrapper around them is no block of one's own either."""
    try:
        from torchvision.models import resnet
    except Exception:  # torchvision missing: nothing of it to refuse
        return []
    return [resnet.BasicBlock, resnet.Bottleneck, resnet.ResNet]


def _reference_methods(references: Sequence[type]) -> dict[str, Any]:
    """The reference classes' __init__ and forward, for ``watch_calls``: seen by their code object however the
    answer reaches them (``ResidualBlock.forward(self, x)`` in a transplant, an instance built and discarded)."""
    methods: dict[str, Any] = {}
    for cls in references:
        for name in ("__init__", "forward", "_forward_impl"):
            function = cls.__dict__.get(name)
            if getattr(function, "__code__", None) is not None:
                methods[f"{cls.__name__}.{name}"] = function
    return methods


def _is_reference(cls: Any, references: Sequence[type]) -> bool:
    """Whether ``cls`` is one of the lesson's classes, a subclass of one, or a class with a method copied from one."""
    if not isinstance(cls, type):
        return False
    keys = [_method_keys(ref) for ref in references]
    for klass in cls.__mro__:
        if klass in references:
            return True
        mine = _method_keys(klass)
        if mine and any(mine & theirs for theirs in keys):
            return True
    return any(issubclass(cls, ref) for ref in references)


def _uses_reference(module: nn.Module, references: Sequence[type]) -> bool:
    return any(_is_reference(type(m), references) for m in module.modules())


def _returns_none(build: Callable[[], Any], shape: tuple[int, ...]) -> bool:
    """Whether a module built by ``build`` returns None on zeros: a skeleton whose forward is still ``...``."""
    try:
        module = build()
        with torch.no_grad():
            return module.eval()(torch.zeros(shape)) is None
    except Exception:  # reported, with more context, by the check itself
        return False


def _is_1x1(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1)


def _zero_3x3(module: nn.Module) -> None:
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Conv2d) and not _is_1x1(m):
                m.weight.zero_()
                if m.bias is not None:
                    m.bias.zero_()


# ---------------------------------------------------------------------------------------------------------
# Exercise 1: a residual block
# ---------------------------------------------------------------------------------------------------------
# (in_channels, out_channels, stride, (height, width)): other channel counts and sizes than the notebook shows
_BLOCK_CASES = [(12, 12, 1, (9, 9)), (12, 20, 1, (9, 9)), (12, 12, 2, (9, 9)), (12, 20, 2, (9, 9))]
_BLOCK_HIDDEN = [
    (6, 6, 1, (7, 10)),
    (6, 16, 2, (7, 10)),
    (24, 8, 2, (6, 5)),
    (20, 20, 2, (11, 11)),
    (5, 9, 1, (4, 4)),
]


def _block_case(
    block_cls: Any, cin: int, cout: int, stride: int, size: tuple[int, int], refs: list[type]
) -> str | None:
    """What is wrong with ``block_cls(cin, cout, stride)`` on an input of ``size``, in one sentence; None if right."""
    call = f"{getattr(block_cls, '__name__', 'the block')}({cin}, {cout}, stride={stride})"
    changes = cin != cout or stride != 1
    own = "build the block from nn.Conv2d and nn.BatchNorm2d layers yourself, not from the lesson's ResidualBlock (or torchvision's)."
    watched = _reference_methods(refs)
    try:
        with watch_calls(watched) as seen:
            block = block_cls(cin, cout, stride)
    except Exception as exc:  # learner code: report, do not raise
        return f"{call} raised {_first_line(exc)}. The block is built as MyBlock(in_channels, out_channels, stride)."
    if seen:
        return own
    if not isinstance(block, nn.Module):
        return (
            f"{call} returned a {type(block).__name__}; subclass nn.Module and build the layers in __init__."
        )
    if _uses_reference(block, refs):
        return own
    if sum(isinstance(m, nn.BatchNorm2d) for m in block.modules()) < 2:
        return f"{call}: F is conv 3x3 -> BN -> ReLU -> conv 3x3 -> BN; each 3x3 convolution is followed by a BatchNorm."
    block.eval()  # fresh BatchNorm layers in eval mode: nothing changes between two calls
    h, w = size
    x = torch.randn(2, cin, h, w, requires_grad=True)
    try:
        with watch_calls(watched) as seen:
            out = block(x)
    except Exception as exc:
        extra = " When the shape changes, x cannot be added as it is: project it." if changes else ""
        return f"{call} failed on an input of shape {tuple(x.shape)}: {_first_line(exc)}.{extra}"
    if seen:
        return own
    if not isinstance(out, torch.Tensor) or out.ndim != 4:
        return f"{call} should return a 4-D tensor (batch, channels, height, width)."
    if out.shape[1] != cout:
        return f"{call} returned {out.shape[1]} channels; the output should have out_channels channels."
    if tuple(out.shape[2:]) != (math.ceil(h / stride), math.ceil(w / stride)):
        return (
            f"{call} turned a {h}x{w} input into {out.shape[2]}x{out.shape[3]}: the stride should divide the "
            "height and width once (padding=1 keeps them in a 3x3 convolution), in the residual branch and in "
            "the shortcut alike."
        )
    if out.min() < 0:
        return f"{call} gives negative values: the block ends with a ReLU, applied to the sum F(x) + shortcut(x)."
    if not changes and not bool((out < F.relu(x) - 1e-4).any()):
        return (
            f"{call} never gives less than its input: F ends with BatchNorm, without a ReLU, so that the "
            "correction it adds can be negative as well as positive; the only ReLU after the last BN comes after the sum."
        )
    projections = [m for m in block.modules() if _is_1x1(m)]
    if not changes and projections:
        return (
            f"{call} has a 1x1 convolution, but when the shape does not change the shortcut should be the "
            "identity: a projection there only adds parameters and a path that is no longer a plain copy of x."
        )
    if changes and not projections:
        return f"{call} changes the shape, so its shortcut needs a 1x1 convolution (with the block's stride)."
    # Switch the residual branch off (its 3x3 convolutions give zeros): what is left is the shortcut.
    with torch.no_grad():
        before = block(x)
        _zero_3x3(block)
        after = block(x)
    if torch.allclose(before, after):
        return f"{call}: the 3x3 convolutions do not change the output; is the residual branch used?"
    if not changes and not torch.allclose(after, F.relu(x), atol=1e-5):
        return (
            f"{call}: with the 3x3 convolutions set to zero the output is not ReLU(x): when the shape does not "
            "change, the shortcut is x itself, added unchanged."
        )
    block(x).sum().backward()
    if x.grad is None or not torch.any(x.grad != 0):
        return (
            f"{call}: with the 3x3 convolutions set to zero no gradient reaches the input, so there is no "
            "shortcut. Add it to the branch's output: out = branch(x) + shortcut(x)."
        )
    return None


def residual_block(block_cls: Any, *, hidden: bool = False) -> Verdict:
    """Check a learner's residual block class, built as ``block_cls(in_channels, out_channels, stride)``.

    Same and changed channels, stride 1 and 2, on sizes the notebook does not use: the output shape, a ReLU after
    the sum (and none before it), a shortcut that is x itself when the shape does not change and a 1x1
    projection when it does, and a gradient that reaches the input through the shortcut when the 3x3
    convolutions are switched off. The lesson's ResidualBlock (itself, a subclass or a copy) is refused.

    Args:
        block_cls: The learner's ``nn.Module`` subclass (the class, not an instance).
        hidden: Try more channel counts, strides and sizes.

    Returns:
        A true Verdict when every case passes.
    """
    if unanswered(block_cls):
        return NOT_YET
    if isinstance(block_cls, nn.Module) or not callable(block_cls):
        return failed(
            "pass the class itself (e.g. MyBlock), not an instance: the check builds blocks of its own."
        )
    refs = _reference_classes()
    if _is_reference(block_cls, refs):
        return failed(
            "MyBlock should be your own block, written from the formula: not the lesson's ResidualBlock, a "
            "subclass of it or a copy of its code."
        )
    with _small_tensors():
        if _returns_none(lambda: block_cls(8, 8, 1), (1, 8, 6, 6)) and unanswered(None):
            return NOT_YET
        cases = _BLOCK_CASES + (_BLOCK_HIDDEN if hidden else [])
        for cin, cout, stride, size in cases:
            problem = _block_case(block_cls, cin, cout, stride, size, refs)
            if problem is not None:
                return failed(problem)
    return passed(
        f"right shapes in all {len(cases)} cases, ReLU after the sum, the identity where the shape stays and a "
        "projection where it changes, and the gradient reaches the input through the shortcut."
    )


# ---------------------------------------------------------------------------------------------------------
# Exercise 2: predict the size of ResidualBlock(16, 32, stride=2)
# ---------------------------------------------------------------------------------------------------------
# ResidualBlock(16, 32, stride=2): in and out channels; the shape changes, so the shortcut is a projection
_BLOCK_QUESTION = (16, 32)


def _block_parts() -> dict[str, int]:
    """The parameters of each part of the block: no conv biases, a BatchNorm (scale and shift per channel) after
    every convolution, the projection's included."""
    cin, cout = _BLOCK_QUESTION
    return {
        "conv1": cout * cin * 3 * 3,
        "conv2": cout * cout * 3 * 3,
        "projection": cout * cin * 1 * 1,
        "bn": 2 * cout,  # each of the three: gamma and beta per channel
    }


def _block_count() -> int:
    parts = _block_parts()
    return parts["conv1"] + parts["conv2"] + parts["projection"] + 3 * parts["bn"]


def _block_mistakes() -> list[tuple[int, str]]:
    cin, cout = _BLOCK_QUESTION
    parts = _block_parts()
    biases = "the convolutions have no biases (bias=False): the BatchNorm after each one has its own shift β."
    channels = (
        "count each convolution as out_channels × in_channels × k × k with its own channels: the first goes from "
        "the block's input channels to its output channels, the second from output to output."
    )
    return [
        (
            -(parts["projection"] + parts["bn"]),
            "the shortcut is missing: this block changes the shape, so its shortcut is a projection, a 1×1 "
            "convolution followed by a BatchNorm of its own.",
        ),
        (
            -parts["projection"],
            "the projection's 1×1 convolution is missing: the shortcut changes the shape here.",
        ),
        (-parts["bn"], "a BatchNorm is missing: there is one after each of the three convolutions."),
        (-3 * parts["bn"], "the BatchNorm layers have parameters too: a scale γ and a shift β per channel."),
        (-3 * parts["bn"] // 2, "a BatchNorm has two parameters per channel, its scale γ and its shift β."),
        (
            3 * parts["bn"],
            "the running mean and variance of a BatchNorm are buffers, not parameters: the optimizer never "
            "updates them.",
        ),
        (3 * parts["bn"] + 3, "the running statistics (and the batch counter) are buffers, not parameters."),
        (3 * cout, biases),
        (2 * cout, biases),
        (-parts["conv1"] + cout * cout * 9, channels),
        (-parts["conv2"] + cout * cin * 9, channels),
        (
            parts["projection"] * 8,
            "the projection is a 1×1 convolution: one weight per input and output channel.",
        ),
    ]


def block_parameters(answer: Any, *, hidden: bool = False, source: str | None = None) -> Verdict:
    """Check the predicted number of parameters of the lesson's ``ResidualBlock(16, 32, stride=2)``, typed in.

    A wrong count that a usual mistake explains (the projection left out, BatchNorm parameters left out or its
    running statistics counted, conv biases counted, a convolution's channels) is told which; any other, how far
    off it is in per cent. A count computed by code (a function, a block's parameters) is refused.

    Args:
        answer: The learner's ``block_params``.
        hidden: nbgrader's hidden test (the question is the same; it judges the same way).
        source: The code that assigned ``block_params`` (default: the kernel's input history).

    Returns:
        A true Verdict when the count is right and was typed as a value.
    """
    return _count_prediction(
        answer,
        "block_params",
        _block_count,
        _block_mistakes,
        "Add up the two 3×3 convolutions and the shortcut's 1×1 projection (out × in × k × k, no biases) and "
        "the BatchNorm after each of the three convolutions (γ and β per channel).",
        "the two 3×3 convolutions hold almost all of them; the projection and the BatchNorm layers add little.",
        source,
    )


# ---------------------------------------------------------------------------------------------------------
# Exercise 3: SimpleCNN with a global average pooling head
# ---------------------------------------------------------------------------------------------------------
_GAP_CLASSES = [7]  # class counts of the check's own (the notebook builds 10)
_GAP_CLASSES_HIDDEN = [2, 10, 25]
_GAP_SIZES = [(28, 28), (56, 56), (20, 36), (4, 4)]  # square and not, down to the smallest two poolings allow
_GAP_SIZES_HIDDEN = [(5, 5), (13, 17), (64, 48), (9, 31)]
# Adaptive pooling does the averaging for you, however it is reached.
_ADAPTIVE = {
    "nn.AdaptiveAvgPool2d": nn.AdaptiveAvgPool2d.forward,
    "nn.AdaptiveAvgPool1d": nn.AdaptiveAvgPool1d.forward,
    "F.adaptive_avg_pool2d": F.adaptive_avg_pool2d,
    "F.adaptive_avg_pool1d": F.adaptive_avg_pool1d,
    "torch._C._nn.adaptive_avg_pool2d": torch._C._nn.adaptive_avg_pool2d,
    "torch.adaptive_avg_pool1d": torch.adaptive_avg_pool1d,
}
_ADAPTIVE_OPS = {
    name: "adaptive average pooling"
    for name in (
        "adaptive_avg_pool2d",
        "_adaptive_avg_pool2d",
        "adaptive_avg_pool1d",
        "mkldnn_adaptive_avg_pool2d",
    )
}
_ADAPTIVE_MODULES = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)


def _course_models() -> list[type]:
    """The course's own networks and the lesson's: a network of one's own is built without them."""
    return [_models.SimpleCNN, _models.ImprovedCNN, *_reference_classes()]


def _gap_reference(net: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The scores GapCNN should give on ``x``, from its own layers; and a global max pooling head, for a hint."""
    with torch.no_grad():
        h = F.max_pool2d(F.relu(F.conv2d(x, net.conv1.weight, net.conv1.bias, padding=1)), 2)
        h = F.max_pool2d(F.relu(F.conv2d(h, net.conv2.weight, net.conv2.bias, padding=1)), 2)
        return {
            "mean": F.linear(h.mean(dim=(2, 3)), net.fc.weight, net.fc.bias),
            "max": F.linear(h.amax(dim=(2, 3)), net.fc.weight, net.fc.bias),
        }


def _gap_layers(net: nn.Module, call: str, classes: int) -> str | None:
    """What is wrong with the layers of ``net``, in one sentence; None if they are SimpleCNN's body and a head."""
    for name, cin, cout in (("conv1", 1, 32), ("conv2", 32, 64)):
        conv = getattr(net, name, None)
        if not isinstance(conv, nn.Conv2d):
            return f"{call} has no nn.Conv2d called {name}: keep SimpleCNN's two convolutions as conv1 and conv2."
        sizes = (conv.in_channels, conv.out_channels, conv.kernel_size)
        steps = (conv.padding, conv.stride, conv.dilation, conv.groups, conv.padding_mode)
        if sizes != (cin, cout, (3, 3)) or steps != ((1, 1), (1, 1), (1, 1), 1, "zeros"):
            return (
                f"{call}.{name} is not SimpleCNN's: a 3×3 convolution from {cin} to {cout} channels with "
                "padding=1 (and stride 1)."
            )
    fc = getattr(net, "fc", None)
    if not isinstance(fc, nn.Linear) or fc.bias is None:
        return f"{call} has no nn.Linear called fc (with its bias): the head's linear layer is fc."
    if fc.in_features != 64 or fc.out_features != classes:
        return (
            f"{call}.fc maps {fc.in_features} values to {fc.out_features}: after global average pooling there is "
            "one value per channel of conv2, and one score per class comes out."
        )
    body = sum(p.numel() for layer in (net.conv1, net.conv2) for p in layer.parameters())
    head = sum(p.numel() for p in net.parameters()) - body
    if head != fc.weight.numel() + fc.bias.numel():
        return (
            f"{call} has {head:,} parameters besides conv1 and conv2, more than its layer fc: global average "
            "pooling has no parameters, and the head is fc alone."
        )
    if any(isinstance(m, _ADAPTIVE_MODULES) for m in net.modules()):
        return (
            "write the global average pooling yourself (the mean of each map), without nn.AdaptiveAvgPool2d."
        )
    return None


def _meta(seen: frozenset[str]) -> str | None:
    """The hint for an answer that inspects or switches off the check that runs it; None if it does not."""
    meta = sorted(name for name in seen if name.startswith(("sys.", "inspect.", "gc.", "threading.")))
    if not meta:
        return None
    return f"your network calls {', '.join(meta)}: build it from layers, without inspecting or switching off the check."


def _gap_case(net_cls: Any, classes: int, sizes: list[tuple[int, int]], refs: list[type]) -> str | None:
    """What is wrong with ``net_cls(num_classes=classes)`` on images of ``sizes``, in one sentence; None if right."""
    call = f"GapCNN(num_classes={classes})"
    own = (
        "build GapCNN from nn.Conv2d and nn.Linear layers yourself, not from cu.SimpleCNN or the lesson's "
        "SmallResNet (or its blocks)."
    )
    watched = {**_reference_methods(refs), **_ADAPTIVE}
    net, error, seen = run_watched(lambda: net_cls(num_classes=classes), watched, _ADAPTIVE_OPS)
    if error is not None:
        return f"{call} raised {_first_line(error)}. The network is built as GapCNN(num_classes=...)."
    if seen & set(_ADAPTIVE) or "adaptive average pooling" in seen:
        return "write the global average pooling yourself (the mean of each map), without adaptive pooling."
    if _meta(seen):
        return _meta(seen)
    if seen:
        return own
    if not isinstance(net, nn.Module):
        return f"{call} returned a {type(net).__name__}; subclass nn.Module and build the layers in __init__."
    if _uses_reference(net, refs):
        return own
    problem = _gap_layers(net, call, classes)
    if problem is not None:
        return problem
    net.eval()  # no dropout in the comparison (the body and head have none to begin with)
    for h, w in sizes:
        x = torch.randn(2, 1, h, w)
        given = x.clone()
        with torch.no_grad():
            out, error, seen = run_watched(lambda x=x: net(x), watched, _ADAPTIVE_OPS)
        shape = tuple(given.shape)
        if error is not None:
            return (
                f"{call} failed on images of shape {shape}: {_first_line(error)}. The head must not depend on "
                "the image size: average each of conv2's maps over all its positions, whatever their number."
            )
        if seen & set(_ADAPTIVE) or "adaptive average pooling" in seen:
            return (
                "write the global average pooling yourself (the mean of each map), without adaptive pooling."
            )
        if _meta(seen):
            return _meta(seen)
        if seen:
            return own
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, classes):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            return (
                f"{call} gave {got} for a batch of two {h}x{w} images: it should give one score per class for "
                "each image, whatever the image size."
            )
        expected = _gap_reference(net, given)  # from its own layers, once the answer has returned
        if torch.allclose(out, expected["mean"], rtol=1e-4, atol=1e-5):
            continue
        if torch.allclose(out, expected["max"], rtol=1e-4, atol=1e-5):
            return f"{call} takes the largest value of each map: global average pooling takes their mean."
        return (
            f"{call}'s scores for {h}x{w} images are not those of conv1 → ReLU → 2×2 max pooling → conv2 → ReLU "
            "→ 2×2 max pooling → the mean of each map over its height and width → fc, computed with its own layers."
        )
    return None


def gap_cnn(net_cls: Any, *, hidden: bool = False) -> Verdict:
    """Check ``net_cls(num_classes=...)``: SimpleCNN's two convolutions, global average pooling and ``fc``.

    With class counts of its own: the layers ``conv1`` (1 → 32) and ``conv2`` (32 → 64, both 3×3, padding 1),
    a head whose only parameters are ``fc``'s 64 × classes + classes, and, on images of several sizes (28×28,
    56×56, 20×36, 4×4; hidden: more, and sizes drawn anew), the scores its own layers give through ReLU, 2×2
    max pooling and the mean of each map. ``cu.SimpleCNN``, the lesson's ``SmallResNet`` and its blocks
    (inside, subclassed or copied) and adaptive average pooling are refused.

    Args:
        net_cls: The learner's ``GapCNN`` class.
        hidden: Try more class counts and image sizes.

    Returns:
        A true Verdict when every case passes.
    """
    if unanswered(net_cls):
        return NOT_YET
    if isinstance(net_cls, nn.Module) or not callable(net_cls):
        return failed(
            "pass the class itself (GapCNN), not an instance: the check builds networks of its own."
        )
    refs = _course_models()
    if _is_reference(net_cls, refs):
        return failed(
            "GapCNN should be your own network: not cu.SimpleCNN or the lesson's SmallResNet, a subclass of one "
            "or a copy of its code."
        )
    classes, sizes = list(_GAP_CLASSES), list(_GAP_SIZES)
    if hidden:
        rng = _fresh_rng()
        classes += _GAP_CLASSES_HIDDEN + [rng.randint(2, 50)]
        sizes += _GAP_SIZES_HIDDEN + [(rng.randint(4, 48), rng.randint(4, 48)) for _ in range(2)]
    with _small_tensors():
        if _returns_none(lambda: net_cls(), (2, 1, 28, 28)) and unanswered(None):
            return NOT_YET
        for count in classes:
            problem = _gap_case(net_cls, count, sizes, refs)
            if problem is not None:
                return failed(problem)
    return passed(
        f"the head has 64 × classes + classes parameters for {len(classes)} class count(s), and the scores are "
        f"the mean of each map through fc on all {len(sizes)} image sizes: the network no longer depends on the "
        "image size."
    )


# ---------------------------------------------------------------------------------------------------------
# Exercise 4: a small ResNet from your block, starting as the identity
# ---------------------------------------------------------------------------------------------------------
# (widths, num_classes, in_channels, image sizes): other widths, classes, channels and sizes than the notebook's
_NET_CASES = [((8, 16, 24), 5, 3, [(20, 20), (28, 28)])]
_NET_HIDDEN = [((6, 10, 12), 4, 1, [(16, 16), (30, 22)]), ((16, 24, 32), 10, 1, [(28, 28), (44, 44)])]


def _net_case(
    net_cls: Any,
    block_cls: type,
    widths: tuple[int, ...],
    classes: int,
    cin: int,
    sizes: list,
    refs: list[type],
) -> str | None:
    """What is wrong with ``net_cls(widths=..., num_classes=..., in_channels=...)``, in one sentence; None if right."""
    call = f"MyResNet(widths={widths}, num_classes={classes}, in_channels={cin})"
    watched = _reference_methods(refs)
    try:
        with watch_calls(watched) as seen:
            net = net_cls(widths=widths, num_classes=classes, in_channels=cin)
    except Exception as exc:
        return f"{call} raised {_first_line(exc)}."
    if not isinstance(net, nn.Module):
        return f"{call} returned a {type(net).__name__}; subclass nn.Module."
    if seen or _uses_reference(net, refs):
        return (
            "assemble the network from your own MyBlock, not from the lesson's SmallResNet or ResidualBlock."
        )
    blocks = [m for m in net.modules() if type(m) is block_cls]
    if len(blocks) < 3:
        return (
            f"{call} holds {len(blocks)} MyBlock(s): build its three stages from your MyBlock of exercise 1."
        )
    if not all(p.requires_grad for p in net.parameters()):
        return f"{call} has frozen parameters: every parameter should train, the zeroed scales too."
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    hooks = [b.register_forward_hook(lambda _m, args, out: calls.append((args[0], out))) for b in blocks]
    net.train()  # as it will be trained; with a zero scale the last BN gives zeros in either mode
    try:
        for h, w in sizes:
            calls.clear()
            x = torch.randn(2, cin, h, w)
            try:
                with torch.no_grad(), watch_calls(watched) as seen:
                    out = net(x)
            except Exception as exc:
                return f"{call} failed on images of shape {tuple(x.shape)}: {_first_line(exc)}."
            if seen:
                return "assemble the network from your own MyBlock, not from the lesson's SmallResNet or ResidualBlock (or torchvision's)."
            if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, classes):
                shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                return (
                    f"{call} gave {shape} for a batch of two {h}x{w} images: it should give one score per class "
                    "for each image, whatever the image size (average each channel over all positions first)."
                )
            if len(calls) != 3:
                return f"{call} called its MyBlocks {len(calls)} times in one forward pass: one block per stage, three stages."
            for i, (inp, res) in enumerate(calls):
                if res.shape[1] != widths[i]:
                    return f"{call}: the block of stage {i + 1} gives {res.shape[1]} channels; stage i has widths[i] channels."
                halves = (math.ceil(inp.shape[2] / 2), math.ceil(inp.shape[3] / 2))
                wanted = tuple(inp.shape[2:]) if i == 0 else halves
                if tuple(res.shape[2:]) != wanted:
                    return (
                        f"{call}: the block of stage {i + 1} turns {inp.shape[2]}x{inp.shape[3]} maps into "
                        f"{res.shape[2]}x{res.shape[3]}; the first stage keeps the resolution, each later stage "
                        "halves it in its first block."
                    )
                if inp.shape == res.shape and not torch.allclose(res, F.relu(inp), atol=1e-5):
                    return (
                        f"{call}: at initialisation the block of stage {i + 1} does not return its input. A block "
                        "should start as the identity: its residual branch must give zeros."
                    )
        # The branches give zeros whatever their convolutions hold: re-draw every 3x3 weight inside the blocks.
        x = torch.randn(2, cin, *sizes[0])
        other = copy.deepcopy(net)
        with torch.no_grad():
            for block in (m for m in other.modules() if type(m) is block_cls):
                for m in block.modules():
                    if isinstance(m, nn.Conv2d) and not _is_1x1(m):
                        m.weight.normal_(0, 0.5)
            same_output = torch.allclose(net(x), other(x), atol=1e-5)
        if not same_output:
            return (
                f"{call}: new random weights in the blocks' 3x3 convolutions change the output, so the residual "
                "branches are not zero at initialisation. Zero the scale of each block's last BatchNorm."
            )
    finally:
        for hook in hooks:
            hook.remove()
    out = net(x)
    F.cross_entropy(out, torch.arange(2) % classes).backward()
    first = next((m for m in net.modules() if isinstance(m, nn.Conv2d)), None)
    if first is None or first.weight.grad is None or not torch.any(first.weight.grad != 0):
        return f"{call}: no gradient reaches the first convolution; the shortcuts should carry it back."
    for i, block in enumerate(blocks[:3]):
        zeroed = [
            m
            for m in block.modules()
            if isinstance(m, nn.BatchNorm2d) and m.weight is not None and not torch.any(m.weight != 0)
        ]
        if not zeroed:
            return f"{call}: the block of stage {i + 1} has no BatchNorm whose scale starts at zero."
        if any(m.weight.grad is None or not torch.any(m.weight.grad != 0) for m in zeroed):
            return f"{call}: a zeroed BatchNorm scale in stage {i + 1} gets no gradient, so the block can never leave the identity."
    return None


def my_resnet(net_cls: Any, block_cls: Any, *, hidden: bool = False) -> Verdict:
    """Check ``net_cls(widths=..., num_classes=..., in_channels=...)``: a small ResNet assembled from ``block_cls``.

    On other widths, class counts, input channels and image sizes than the notebook's: the output shape for two
    image sizes (global average pooling), three stages of the learner's block (the first keeps the resolution,
    the others halve it), every block the identity at initialisation (the residual branch gives zeros whatever
    its 3x3 weights), gradients that reach the first layer and the zeroed scales. The lesson's SmallResNet and
    ResidualBlock (themselves, subclasses, copies or instances inside) are refused.

    Args:
        net_cls: The learner's network class.
        block_cls: The learner's block class (exercise 1), from which the network is built.
        hidden: Try more configurations.

    Returns:
        A true Verdict when every configuration passes.
    """
    if unanswered(net_cls):
        return NOT_YET
    if isinstance(net_cls, nn.Module) or not callable(net_cls):
        return failed(
            "pass the class itself (MyResNet), not an instance: the check builds networks of its own."
        )
    refs = _reference_classes()
    if _is_reference(net_cls, refs):
        return failed(
            "MyResNet should be your own network: not the lesson's SmallResNet, a subclass of it or a copy of its code."
        )
    with _small_tensors():
        if _returns_none(lambda: net_cls(), (2, 1, 28, 28)) and unanswered(None):
            return NOT_YET
        if not isinstance(block_cls, type) or _returns_none(lambda: block_cls(8, 8, 1), (1, 8, 6, 6)):
            return failed("MyResNet is assembled from your MyBlock: finish exercise 1 first.")
        if _is_reference(block_cls, refs):
            return failed(
                "assemble MyResNet from your own MyBlock (exercise 1), not from the lesson's ResidualBlock."
            )
        cases = _NET_CASES + (_NET_HIDDEN if hidden else [])
        for widths, classes, cin, sizes in cases:
            problem = _net_case(net_cls, block_cls, widths, classes, cin, sizes, refs)
            if problem is not None:
                return failed(problem)
    return passed(
        f"{len(cases)} configuration(s): the right shapes at two image sizes, three stages of your block, each "
        "the identity at initialisation, and gradients that reach the first layer and the zeroed scales."
    )
