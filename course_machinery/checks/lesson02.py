"""Checks for notebook 02's exercises (the simple CNN): parameter count, output shape, any-size CNN, evaluation."""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.lazy import LazyModuleMixin
from torch.utils.data import DataLoader, TensorDataset

from ._feedback import (
    NOT_YET,
    Verdict,
    failed,
    grade,
    number,
    passed,
    raised,
    run_watched,
    typed_as_literal,
    unanswered,
)

__all__ = ["grade", "conv_parameters", "predicted_shape", "any_size_cnn", "evaluate_by_hand"]


def _course_functions(*names: str) -> dict[str, Any]:
    """The package's functions and classes that an exercise must not call, by the name a learner knows."""
    import course_utils as cu
    from course_utils import _loop

    known = {
        "cu.count_parameters": cu.count_parameters,
        "cu.SimpleCNN": cu.SimpleCNN.__init__,
        "cu.SimpleCNN.forward": cu.SimpleCNN.forward,
        "cu.ImprovedCNN": cu.ImprovedCNN.__init__,
        "cu.evaluate": cu.evaluate,
        "cu.predict": cu.predict,
        "cu.train_one_epoch": cu.train_one_epoch,
        "cu.fit": cu.fit,
        "the package's forward helper": _loop.forward,
        "the package's Tally": _loop.Tally.add,
    }
    # unwrapped: cu.evaluate is wrapped by @torch.no_grad(), whose wrapper's code every such function shares
    return {name: inspect.unwrap(known[name]) for name in names}


# --- Exercise 1: the parameters of a conv layer, from its four numbers ------------------------------------
_CONV_CASES = [(3, 8, 5, True), (16, 4, 1, False), (7, 10, 3, True)]  # (in, out, kernel_size, bias)
_CONV_HIDDEN = [(1, 1, 1, True), (64, 128, 7, False), (5, 2, 2, True), (2, 5, 4, False), (12, 6, 3, True)]


def conv_parameters(fn: Callable[..., Any], *, hidden: bool = False) -> Verdict:
    """Check ``fn(in_channels, out_channels, kernel_size, bias=True)``: the parameter count of such a Conv2d.

    Args:
        fn: The learner's function.
        hidden: Try more layers (nbgrader's hidden test).

    Returns:
        A true Verdict when every count is right and no layer was built to count it.
    """
    refused = {
        "nn.Conv2d": _ConvNd.__init__,
        "nn.Linear": nn.Linear.__init__,
        **_course_functions("cu.count_parameters"),
    }
    cases = _CONV_CASES + (_CONV_HIDDEN if hidden else [])
    for in_channels, out_channels, k, bias in cases:
        if bias:  # bias=True is the default, as in nn.Conv2d
            call = functools.partial(fn, in_channels, out_channels, k)
        else:
            call = functools.partial(fn, in_channels, out_channels, k, bias=False)
        answer, error, seen = run_watched(call, refused)
        if error is not None:  # learner code: report, do not raise
            return raised(error)
        if seen:
            return failed(
                "work the count out from the four numbers: building a layer and counting its parameters "
                "skips what the exercise asks."
            )
        if unanswered(answer):
            return NOT_YET
        weights = out_channels * in_channels * k * k
        expected = weights + (out_channels if bias else 0)
        value = number(answer)
        if value == expected:
            continue
        if bias and value == weights:
            return failed("the weights look right; did you count the biases (one per output channel)?")
        if not bias and value == expected + out_channels:
            return failed("with bias=False the layer has no biases to count.")
        if value in (out_channels * in_channels * k + (out_channels if bias else 0), out_channels * k * k):
            return failed(
                "a filter has one kernel_size × kernel_size kernel for each input channel: count all of them."
            )
        return failed(
            "each output channel has one filter with in_channels × kernel_size × kernel_size weights, plus "
            "one bias when bias=True."
        )
    return passed(f"your count is right for all {len(cases)} layers tried, with and without bias.")


# --- Exercise 2: predict the output shape of a 5x5 convolution without padding ----------------------------
# nn.Conv2d(32, 64, kernel_size=5) on a (64, 32, 14, 14) batch: (in, out, kernel_size), input shape
_SHAPE_QUESTION = ((32, 64, 5), (64, 32, 14, 14))
_SHAPE_HINTS = 3  # wrong shapes (in this kernel) that get a hint naming which parts are wrong
_WRONG_SHAPES: set[tuple[int, ...]] = set()


def predicted_shape(answer: Any, *, hidden: bool = False, source: str | None = None) -> Verdict:
    """Check the predicted output shape of ``nn.Conv2d(32, 64, kernel_size=5)`` on a ``(64, 32, 14, 14)`` batch.

    Args:
        answer: The learner's shape, typed as a tuple.
        hidden: nbgrader's hidden test (the question is the same; it judges the same way).
        source: The code that assigned ``predicted_shape`` (default: the kernel's input history).

    Returns:
        A true Verdict when the shape is right and was typed as a value.
    """
    if unanswered(answer):
        return NOT_YET
    if typed_as_literal("predicted_shape", source) is False:
        return failed(
            "type your prediction as a value, such as (1, 2, 3, 4), worked out with the output-size formula; "
            "a shape computed by running the layer is not a prediction."
        )
    # 64.0, "64" and True are not sizes (int() would make them ones)
    if not (isinstance(answer, (tuple, list)) and all(type(v) is int for v in answer)):
        return failed("give the shape as a tuple of integers: (batch, channels, height, width).")
    (in_channels, out_channels, k), input_shape = _SHAPE_QUESTION
    layer = nn.Conv2d(in_channels, out_channels, kernel_size=k)
    with torch.no_grad():
        expected = tuple(layer(torch.zeros(2, *input_shape[1:])).shape)  # batch 2 suffices to find the rest
    expected = (input_shape[0], *expected[1:])
    given = tuple(answer)
    if given == expected:
        return passed("that is the shape the layer gives.")
    _WRONG_SHAPES.add(given)
    general = (
        "The batch size never changes, the channels are the layer's out_channels, and each side follows the "
        "output-size formula (size + 2·padding − kernel_size) / stride + 1."
    )
    if len(given) != len(expected):
        return failed(
            f"your shape has {len(given)} dimensions; a conv layer's output has four: (batch, channels, height, "
            "width)."
        )
    # Beyond a few wrong shapes, a hint that names the wrong parts would let a loop find the answer part by part.
    if len(_WRONG_SHAPES) > _SHAPE_HINTS:
        return failed(f"not this shape yet. {general}")
    wrong = [i for i, (g, e) in enumerate(zip(given, expected, strict=True)) if g != e]
    names = {0: "the batch size", 1: "the channels"}
    where = " and ".join(dict.fromkeys(names.get(i, "height and width") for i in wrong))
    return failed(f"{where} not right yet. {general}")


# --- Exercise 3: SimpleCNN for any image size (fc's size from image_size; flatten keeps the batch) --------
_SIZES = [(20, 10), (12, 3)]  # (image_size, num_classes); the notebook shows 28, 32 and 56
_SIZES_HIDDEN = [(8, 10), (28, 10), (32, 5), (24, 7), (36, 2)]  # small: each also runs at twice the size
# A forward pass during __init__ (a dummy batch through the layers, or one that sizes a lazy layer).
_FORWARD_OPS = {
    name: "a forward pass in __init__"
    for name in (
        "convolution",
        "_convolution",
        "max_pool2d",
        "max_pool2d_with_indices",
        "adaptive_max_pool2d",
    )
}


def _layers_fault(model: nn.Module, image_size: int, num_classes: int) -> str | None:
    """What is wrong with the model's layers, as a hint; None when they are SimpleCNN's for this size."""
    layers = {name: getattr(model, name, None) for name in ("conv1", "conv2", "pool", "fc")}
    if not all(isinstance(layer, nn.Module) for layer in layers.values()):
        return "give the model SimpleCNN's layers as attributes conv1, conv2, pool and fc (in __init__)."
    for name, (cin, cout) in (("conv1", (1, 32)), ("conv2", (32, 64))):
        conv = layers[name]
        if not (
            type(conv) is nn.Conv2d
            and (conv.in_channels, conv.out_channels) == (cin, cout)
            and conv.kernel_size == (3, 3)
            and conv.padding in ((1, 1), "same")  # with a 3×3 kernel and stride 1, "same" is padding 1
            and conv.padding_mode == "zeros"
            and conv.stride == (1, 1)
            and conv.dilation == (1, 1)
            and conv.groups == 1
        ):
            return (
                "conv1 and conv2 are SimpleCNN's: nn.Conv2d with 3×3 kernels and padding=1, from 1 to 32 and "
                "from 32 to 64 channels."
            )
    pool = layers["pool"]
    if not (type(pool) is nn.MaxPool2d and pool.kernel_size in (2, (2, 2)) and pool.stride in (2, (2, 2))):
        return "pool is SimpleCNN's 2×2 max-pooling, nn.MaxPool2d(2)."
    fc = layers["fc"]
    if isinstance(fc, LazyModuleMixin):
        return (
            "work out fc's input size from image_size yourself: a lazy layer that takes it from the first "
            "batch skips exactly what this exercise asks."
        )
    if type(fc) is not nn.Linear:
        return "fc is an nn.Linear from the flattened features to the scores."
    if fc.out_features != num_classes:
        return "fc gives one score per class: num_classes outputs."
    if fc.in_features != 64 * (image_size // 4) ** 2:
        return (
            "fc must take every number one image has after the second pooling: channels × height × width "
            "there, where each pooling halves the side of image_size."
        )
    return None


# What any SimpleCNN written from the notebook's description may use: what is left of a method's names and
# strings once these are taken out is the package's own writing (its input check, its error message, its
# in_channels), which a copy of its source carries and an answer written from the notebook has no reason to.
_COMMON = {
    "super", "__init__", "__class__", "self", "nn", "Conv2d", "MaxPool2d", "Linear", "F", "relu", "torch",
    "flatten", "view", "reshape", "size", "shape", "conv1", "conv2", "pool", "fc", "image_size", "num_classes",
    "ValueError", "AssertionError", "TypeError", "math", "int", "len", "forward", "x",
}  # fmt: skip


def _marks(fn: Any) -> set[str]:
    """The names and string constants of ``fn``'s code and the code nested in it (not the bytecode itself, which
    changes with how it was compiled, nor the variable names, which a copy renames at no cost)."""
    code = getattr(inspect.unwrap(fn), "__code__", None) if fn is not None else None
    marks: set[str] = set()
    todo = [code] if code is not None else []
    while todo:
        code = todo.pop()
        marks.update(code.co_names)
        for const in code.co_consts:
            if isinstance(const, str):
                marks.add(const)
            elif hasattr(const, "co_names"):
                todo.append(const)
    return marks


def _copies(cls: type, reference: type) -> bool:
    """Whether ``cls``'s ``__init__`` or ``forward`` carries writing of ``reference``'s own (a copy of its source,
    renamed or tweaked)."""
    own = (_marks(reference.__init__) | _marks(reference.forward)) - _COMMON
    return any(_marks(getattr(cls, method, None)) & own for method in ("__init__", "forward"))


def any_size_cnn(cls: Any, *, hidden: bool = False) -> Verdict:
    """Check the learner's ``cls(image_size=..., num_classes=...)``: SimpleCNN's layers for any square image size.

    Args:
        cls: The learner's class (an ``nn.Module`` subclass).
        hidden: Try more image sizes and numbers of classes.

    Returns:
        A true Verdict when, for every size tried, fc's size follows from image_size, the forward pass gives
        SimpleCNN's scores, and an image of the wrong size cannot change the batch size.
    """
    import course_utils as cu

    if unanswered(cls):
        return NOT_YET
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        return failed("define a class that inherits from nn.Module, as SimpleCNN does.")
    build_it = (
        "write the class yourself: cu.SimpleCNN (or a class built on it) is the model this exercise asks you "
        "to build."
    )
    if issubclass(cls, (cu.SimpleCNN, cu.ImprovedCNN)) or _copies(cls, cu.SimpleCNN):
        return failed(build_it)
    refused = _course_functions("cu.SimpleCNN", "cu.SimpleCNN.forward", "cu.ImprovedCNN")
    gen = torch.Generator().manual_seed(2)  # the check's own inputs; the learner's global seed is left alone
    for image_size, num_classes in _SIZES + (_SIZES_HIDDEN if hidden else []):
        x = torch.randn(3, 1, image_size, image_size, generator=gen)  # (3, 1, s, s)
        wrong = torch.randn(2, 1, 2 * image_size, 2 * image_size, generator=gen)  # 4x the features per image
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(image_size)
            model, error, seen = run_watched(
                functools.partial(cls, image_size=image_size, num_classes=num_classes), refused, _FORWARD_OPS
            )
        if seen & set(refused) or (
            error is None and any(isinstance(m, (cu.SimpleCNN, cu.ImprovedCNN)) for m in model.modules())
        ):
            return failed(build_it)
        if seen:
            return failed(
                "work out fc's input size from image_size in __init__, without running layers on a dummy "
                "batch: how the side shrinks through the convolutions and poolings is what this exercise asks."
            )
        if error is not None:
            return raised(error)
        if next(model.parameters(), None) is None:
            return failed(
                "there is no answer yet. Create the layers in __init__, write forward, then run the cell again."
            )
        fault = _layers_fault(model, image_size, num_classes)
        if fault:
            return failed(fault)
        model.eval()
        with torch.no_grad():
            scores, error, seen = run_watched(functools.partial(model, x.clone()), refused)
        if seen:
            return failed(build_it)
        if error is not None:
            return raised(error)
        with torch.no_grad():  # SimpleCNN's computation on the model's layers, now that its forward has run
            features = model.pool(F.relu(model.conv1(x)))  # (3, 32, s/2, s/2)
            features = model.pool(F.relu(model.conv2(features)))  # (3, 64, s/4, s/4)
            expected = model.fc(torch.flatten(features, 1))  # (3, num_classes)
        if unanswered(scores):
            return NOT_YET
        if not isinstance(scores, torch.Tensor) or tuple(scores.shape) != (3, num_classes):
            shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
            return failed(
                f"for a batch of 3 images forward returned {shape}; it should give one row of num_classes "
                "scores per image."
            )
        if not torch.allclose(scores, expected, atol=1e-5):
            return failed(
                "forward should give SimpleCNN's raw scores: conv1, ReLU, pool, conv2, ReLU, pool, flatten, fc "
                "(no softmax at the end)."
            )
        try:
            with torch.no_grad():
                out = model(wrong)
        except Exception:  # a wrong image size must fail: that is what keeping the batch dimension gives
            continue
        if isinstance(out, torch.Tensor) and out.dim() > 0 and out.shape[0] != wrong.shape[0]:
            return failed(
                "images of another size changed the batch size instead of failing: flatten everything except "
                "the batch dimension, so a wrong input can never move numbers into it."
            )
    return passed("fc's size follows from image_size, and the batch dimension survives any input.")


# --- Exercise 4: the evaluation loop, by hand ---------------------------------------------------------------
class _Probe(nn.Module):
    """A small classifier with batch norm and dropout that notes, per forward pass, its mode and grad mode."""

    def __init__(self, features: int, classes: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(features, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Dropout(0.5), nn.Linear(12, classes)
        )
        self.calls: list[tuple[bool, bool]] = []  # (training, grad enabled) per forward pass

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((self.training, torch.is_grad_enabled()))
        return self.net(torch.flatten(x, 1))


# (images, batch_size, classes, label_smoothing): each has a short last batch, so per-batch means are biased
_EVAL_CASES = [(10, 4, 3, 0.0)]
_EVAL_HIDDEN = [(23, 5, 4, 0.1), (9, 2, 5, 0.0), (7, 7, 2, 0.2), (31, 8, 10, 0.0)]


def _sums(model: _Probe, loader: DataLoader, loss_fn: nn.Module) -> tuple[float, float, float, float, int]:
    """(weighted loss, weighted accuracy, mean of batch losses, mean of batch accuracies, images) in eval mode."""
    losses, accs, sizes = [], [], []
    with torch.no_grad():
        was = model.training
        model.eval()
        for images, labels in loader:
            outputs = model.net(torch.flatten(images, 1))
            losses.append(loss_fn(outputs, labels).item())
            accs.append((outputs.argmax(dim=1) == labels).float().mean().item())
            sizes.append(len(labels))
        model.train(was)
    n = sum(sizes)
    weighted = (sum(v * s for v, s in zip(losses, sizes, strict=True)) / n,)
    weighted += (sum(v * s for v, s in zip(accs, sizes, strict=True)) / n,)
    return (*weighted, sum(losses) / len(losses), sum(accs) / len(accs), n)


def _eval_case(
    n: int, batch_size: int, classes: int, smoothing: float
) -> tuple[_Probe, DataLoader, nn.Module]:
    """A probe model after a few training batches, a loader of n images and a loss: the same for the same numbers.
    Call it under ``torch.random.fork_rng``: it seeds torch's global generator."""
    torch.manual_seed(100 + n)
    images, labels = torch.randn(n, 1, 4, 4), torch.randint(0, classes, (n,))  # (n, 1, 4, 4), (n,)
    model = _Probe(16, classes)
    for _ in range(3):  # training batches: batch norm's running statistics move away from 0 and 1
        model(torch.randn(8, 1, 4, 4) * 2 + 1)
    model.calls.clear()
    loader = DataLoader(TensorDataset(images, labels), batch_size=batch_size)
    return model, loader, nn.CrossEntropyLoss(label_smoothing=smoothing)


def evaluate_by_hand(fn: Callable[..., Any], *, hidden: bool = False) -> Verdict:
    """Check ``fn(model, loader, loss_fn)``: ``{"loss", "acc", "n"}`` weighted by images, eval mode, no gradients.

    Args:
        fn: The learner's function.
        hidden: Try more loaders, numbers of classes and losses.

    Returns:
        A true Verdict when the results match on every loader tried and the model was evaluated properly.
    """
    refused = _course_functions(
        "cu.evaluate",
        "cu.predict",
        "cu.train_one_epoch",
        "cu.fit",
        "the package's forward helper",
        "the package's Tally",
    )
    for n, batch_size, classes, smoothing in _EVAL_CASES + (_EVAL_HIDDEN if hidden else []):
        with torch.random.fork_rng(devices=[]):  # the learner's global random state is left alone
            model, loader, loss_fn = _eval_case(n, batch_size, classes, smoothing)
            model.train()  # as a model is after training: evaluation must switch it
            result, error, seen = run_watched(functools.partial(fn, model, loader, loss_fn), refused)
        if seen:
            return failed(
                "write the loop yourself: the package's evaluation functions are what this exercise asks you to "
                "write."
            )
        if error is not None:
            return raised(error)
        if unanswered(result):
            return NOT_YET
        # What to expect, only now that the learner's code has run: from the case drawn again.
        with torch.random.fork_rng(devices=[]):
            fresh, fresh_loader, fresh_loss = _eval_case(n, batch_size, classes, smoothing)
        loss, acc, batch_loss, batch_acc, count = _sums(fresh, fresh_loader, fresh_loss)
        plain_loss = _sums(fresh, fresh_loader, nn.CrossEntropyLoss())[0]
        state = fresh.state_dict()
        if not (isinstance(result, dict) and {"loss", "acc", "n"} <= result.keys()):
            return failed("return a dict with the keys 'loss', 'acc' and 'n'.")
        if not model.calls:
            return failed("run the model on every batch of the loader.")
        if any(training for training, _ in model.calls):
            return failed(
                "put the model in evaluation mode first: in training mode dropout drops features and batch norm "
                "uses each batch's own statistics."
            )
        now = model.state_dict()
        if any(not torch.equal(now[key], value) for key, value in state.items()):
            return failed("evaluation must not change the model: no backward pass, no optimizer step.")
        if any(grad for _, grad in model.calls):
            return failed("run the forward passes under torch.no_grad(): evaluation needs no gradients.")
        if number(result["n"]) != count:
            return failed("'n' is the number of images evaluated: add up the size of every batch.")
        if not _close(result["acc"], acc, 1e-6):
            if _close(result["acc"], batch_acc, 1e-6):
                return failed(
                    "weight each batch by its number of images: the last batch is smaller, and a mean of batch "
                    "accuracies gives its images too much weight."
                )
            return failed("'acc' is the fraction of all images whose highest score (argmax) is their label.")
        if not _close(result["loss"], loss, 1e-4):
            if _close(result["loss"], batch_loss, 1e-4):
                return failed(
                    "weight each batch's mean loss by its number of images: a mean of batch means gives the "
                    "small last batch too much weight."
                )
            if smoothing and _close(result["loss"], plain_loss, 1e-4):
                return failed("use the loss_fn you are given: it is the loss to report.")
            return failed(
                "'loss' is the mean loss over all images: each batch's mean loss times its number of images, "
                "summed, divided by the number of images."
            )
    tried = len(_EVAL_CASES) + (len(_EVAL_HIDDEN) if hidden else 0)
    return passed(
        f"loss and accuracy weighted by images, in eval mode without gradients, on {tried} loader(s)."
    )


def _close(answer: Any, expected: float, rel_tol: float) -> bool:
    """Whether a number (or one-element tensor) is within ``rel_tol`` of ``expected``."""
    value = number(answer)
    return value is not None and math.isclose(value, expected, rel_tol=rel_tol, abs_tol=1e-7)
