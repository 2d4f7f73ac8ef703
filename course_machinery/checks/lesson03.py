"""The checks of lesson 03 (BatchNorm and dropout): one ✅ line or one ❌ hint each, never the expected value.

Each check computes what it expects from inputs it chooses (other shapes, seeds and values than the notebook
shows); ``hidden=True`` (what ``grade`` runs) tries more of them.
"""

from __future__ import annotations

import _thread
import ast
import contextlib
import copy
import inspect
import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd import profiler_legacy

from course_utils import _loop, _models

from ._feedback import (
    NOT_YET,
    Verdict,
    failed,
    grade,
    invoke,
    number,
    passed,
    raised,
    same,
    typed_as_literal,
    unanswered,
    watch_calls,
)

__all__ = ["grade", "bn_params", "batchnorm_train", "dropout_scale", "dropout_by_hand", "val_accuracy"]


# ------------------------------------------------------------------------------------- running the learner's code

# Routes around the watch that no answer needs: a thread (whose torch calls the function and operator watches do
# not see) and switching off the recording of operators.
_EVASIONS = {
    "threading.Thread.start": threading.Thread.start,
    "_thread.start_new_thread": _thread.start_new_thread,
    "torch.autograd._disable_profiler_legacy": torch.autograd._disable_profiler_legacy,
    "torch.autograd._enable_profiler_legacy": torch.autograd._enable_profiler_legacy,
    "torch.autograd._disable_profiler": torch.autograd._disable_profiler,
    "torch.autograd._enable_profiler": torch.autograd._enable_profiler,
}


@contextlib.contextmanager
def _operators_recorded(wanted: dict[str, str]) -> Iterator[set[str]]:
    """The ``wanted`` ATen operators (``"aten::dropout"`` -> name to report) that the block runs, as a set filled
    in on exit. Torch's profiler records every operator, composite ones too (``aten::dropout`` on the CPU, which
    breaks into ``bernoulli_`` and ``mul`` before a TorchDispatchMode sees it), whichever route reached it
    (``torch.ops.aten``, a TorchScript function). If the block switched the recording off, "torch's profiler" is
    reported."""
    found: set[str] = set()
    if torch.autograd._profiler_enabled():  # someone profiles already: theirs is left alone
        yield found
        return
    recorder = profiler_legacy.profile()
    recorder.__enter__()
    try:
        yield found
    finally:
        try:
            recorder.__exit__(None, None, None)
            found.update(wanted[e.name] for e in recorder.function_events if e.name in wanted)
        except Exception:  # the recording was switched off inside the block
            found.add("torch's profiler")


def _watched(
    call: Callable[[], Any], targets: dict[str, Any], ops: tuple[str, ...] = ()
) -> tuple[Any, BaseException | None, frozenset[str]]:
    """Run the learner's ``call()`` watched: (its result, the exception it raised or None, the names it called).

    ``targets`` go to ``watch_calls``; ``ops`` are ATen operator names, watched both where torch dispatches them
    and, composite ones included, in torch's record of operators. While the learner's code runs, this frame (which
    a traceback's ``tb_frame.f_back`` reaches) holds no reference to the live set of names: it sits on the
    evaluation stack only. A check computes its expected values after this returns, never before.
    """
    labels = {name: f"aten.{name}" for name in ops}
    with (
        _operators_recorded({f"aten::{n}": label for n, label in labels.items()}) as recorded,
        watch_calls({**targets, **_EVASIONS}, labels or None) as seen,  # inside: the recording is not seen
    ):
        outcome = (seen, recorded, (seen := None), (recorded := None), *invoke(call))
    called, also, _, _, result, error = outcome
    return result, error, frozenset(called | also)


# ---------------------------------------------------------------------------------------------- predictions


def _typed_by_hand(name: str) -> bool | None:
    """Whether ``name`` was typed as a value or as arithmetic on typed numbers (see ``typed_as_literal``)."""
    return typed_as_literal(name)


def _arithmetic(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, (int, float)) and not isinstance(node.value, bool)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        return _arithmetic(node.operand)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)):
        return _arithmetic(node.left) and _arithmetic(node.right)
    return False


def _prediction(answer: Any, name: str, expected: float, hint: str) -> Verdict:
    if unanswered(answer):
        return NOT_YET
    if _typed_by_hand(name) is False:
        return failed(
            f"type `{name}` as a number you worked out (arithmetic on numbers is fine), not as the result of "
            "code that builds or runs a layer: the exercise asks you to reason it out first."
        )
    value = number(answer)
    if value is None:
        return failed(f"`{name}` should be a single number.")
    return passed("that's right.") if same(value, expected) else failed(hint)


def bn_params(answer: Any, *, hidden: bool = False) -> Verdict:
    """Exercise 1: the number of learnable parameters of ``nn.BatchNorm2d(512)``, typed as a value.

    Args:
        answer: The learner's ``answer_bn_params``.
        hidden: Nothing more to try for a prediction (kept for ``grade``).

    Returns:
        A true Verdict when the answer is right.
    """
    expected = _models.count_parameters(nn.BatchNorm2d(512))  # learnable: what the optimizer updates
    return _prediction(
        answer,
        "answer_bn_params",
        expected,
        "count only what the optimizer updates (parameters, not the running-statistics buffers): how many "
        "learnable values does a BatchNorm layer keep for each channel?",
    )


def dropout_scale(answer: Any, *, hidden: bool = False) -> Verdict:
    """Exercise 3: the factor ``nn.Dropout(p=0.2)`` multiplies the kept values by in train mode.

    Args:
        answer: The learner's ``dropout_scale``.
        hidden: Nothing more to try for a prediction (kept for ``grade``).

    Returns:
        A true Verdict when the answer is right.
    """
    with torch.random.fork_rng(devices=[]):  # the learner's random state is left as it was
        torch.manual_seed(0)
        expected = nn.Dropout(p=0.2).train()(torch.ones(1000)).max().item()  # the value every kept 1 becomes
    return _prediction(
        answer,
        "dropout_scale",
        expected,
        "the kept values must make up for the dropped ones, so that on average the output equals the input. "
        "What share of the values is kept, and which factor restores the average?",
    )


# ------------------------------------------------------------------------------------------ BatchNorm forward

_NORMS = {
    "F.batch_norm": F.batch_norm,
    "torch.batch_norm": torch.batch_norm,
    "torch.native_batch_norm": torch.native_batch_norm,
    "nn.BatchNorm2d": nn.modules.batchnorm._BatchNorm.forward,
    "cu.ImprovedCNN": _models.ImprovedCNN.forward,
    "F.instance_norm": F.instance_norm,
    "torch.instance_norm": torch.instance_norm,
    "F.group_norm": F.group_norm,
    "torch.group_norm": torch.group_norm,
    "F.layer_norm": F.layer_norm,
    "torch.layer_norm": torch.layer_norm,
    "torch._native_batch_norm_legit": torch._native_batch_norm_legit,
    "torch._batch_norm_impl_index": torch._batch_norm_impl_index,
    "torch.native_group_norm": torch.native_group_norm,
    "torch.native_layer_norm": torch.native_layer_norm,
}
# Where every normalisation of torch ends, whichever route reaches it (torch.ops.aten, a private function, a
# TorchScript function, instance norm on a reshaped x, group or layer norm over one channel's values).
_NORM_OPS = (
    "batch_norm",
    "native_batch_norm",
    "_native_batch_norm_legit",
    "_native_batch_norm_legit_no_training",
    "_native_batch_norm_legit_functional",
    "_batch_norm_impl_index",
    "_batch_norm_with_update",
    "_batch_norm_with_update_functional",
    "_batch_norm_no_update",
    "cudnn_batch_norm",
    "miopen_batch_norm",
    "batch_norm_stats",
    "batch_norm_elemt",
    "batch_norm_gather_stats",
    "instance_norm",
    "group_norm",
    "native_group_norm",
    "layer_norm",
    "native_layer_norm",
    "rms_norm",
    "_fused_rms_norm",
)


def _bn_cases(hidden: bool) -> list[dict[str, Any]]:
    # (batch, channels, height, width), offset and scale of the values, momentum, eps, seed
    shapes = [((6, 3, 5, 4), 2.0, 3.0, 0.1, 1e-5, 11)]
    if hidden:
        shapes += [
            ((2, 5, 3, 3), -1.0, 0.5, 0.3, 1e-3, 12),
            ((16, 4, 1, 1), 40.0, 10.0, 0.05, 1e-5, 13),  # one value per image and channel: n = batch
            ((3, 2, 6, 7), 0.0, 0.05, 0.2, 0.1, 14),  # small variance, large eps: where eps goes matters
        ]
    cases = []
    for shape, offset, scale, momentum, eps, seed in shapes:
        g = torch.Generator().manual_seed(seed)
        channels = shape[1]
        per_channel = torch.randn(1, channels, 1, 1, generator=g)  # channels with different means and spreads
        x = offset + per_channel + scale * (1 + per_channel.abs()) * torch.randn(shape, generator=g)
        cases.append(
            {
                "x": x,
                "weight": 1 + 0.5 * torch.randn(channels, generator=g),
                "bias": torch.randn(channels, generator=g),
                "running_mean": torch.randn(channels, generator=g),
                "running_var": 0.5 + torch.rand(channels, generator=g),
                "momentum": momentum,
                "eps": eps,
            }
        )
    return cases


def _bn_reference(case: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    channels = case["x"].shape[1]
    layer = nn.BatchNorm2d(channels, eps=case["eps"], momentum=case["momentum"]).train()
    with torch.no_grad():
        layer.weight.copy_(case["weight"])
        layer.bias.copy_(case["bias"])
        layer.running_mean.copy_(case["running_mean"])
        layer.running_var.copy_(case["running_var"])
        y = layer(case["x"])
    return y, layer.running_mean.clone(), layer.running_var.clone()


def _close(a: Any, b: torch.Tensor) -> bool:
    return (
        isinstance(a, torch.Tensor)
        and a.shape == b.shape
        and torch.allclose(a.detach().cpu().double(), b.double(), rtol=1e-4, atol=1e-5)
    )


def batchnorm_train(fn: Callable[..., Any], *, hidden: bool = False) -> Verdict:
    """Exercise 2: ``fn(x, weight, bias, running_mean, running_var, momentum, eps)`` is BatchNorm2d in train mode.

    It must return ``(y, new_running_mean, new_running_var)`` equal to what ``nn.BatchNorm2d`` computes and
    stores, on batches the check draws (several shapes, momentums and eps with ``hidden``), without calling a
    normalisation function of torch or a layer that does it.

    Args:
        fn: The learner's ``batchnorm_train_forward``.
        hidden: Try more shapes, momentums and eps.

    Returns:
        A true Verdict when every case matches.
    """
    for i, case in enumerate(_bn_cases(hidden)):
        given = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in case.items()}
        result, error, seen = _watched(lambda given=given: fn(**given), _NORMS, _NORM_OPS)
        if seen:
            return failed(
                f"your function calls {', '.join(sorted(seen))}, which normalises for you (or hides what it "
                "calls). Write the formula yourself with tensor operations (mean, var, sqrt)."
            )
        if error is not None:
            return raised(error)
        if unanswered(result):
            return NOT_YET
        if not (isinstance(result, (tuple, list)) and len(result) == 3):
            return failed("return three tensors: (y, new_running_mean, new_running_var).")
        y, new_mean, new_var = result
        case = _bn_cases(hidden)[
            i
        ]  # drawn again: what the learner's code could reach of the first is not used
        y_ref, mean_ref, var_ref = _bn_reference(case)  # computed only now that the learner's code has run
        if not torch.equal(given["x"], case["x"]):
            return failed("your function changed x in place; the layer leaves its input as it is.")
        if not isinstance(y, torch.Tensor) or y.shape != case["x"].shape:
            return failed("y should be a tensor with the shape of x: the layer normalises every value.")
        if not _close(y, y_ref):
            return failed(
                "y differs from nn.BatchNorm2d's output. Each channel is normalised with the mean and variance "
                "of all its values in the batch (over batch, height and width), divided by n (the variance "
                "the formula uses), then scaled by γ and shifted by β; eps goes under the square root."
            )
        if not _close(new_mean, mean_ref):
            return failed(
                "the new running mean differs from the layer's: momentum is the weight of this batch's mean, "
                "1 − momentum the weight of the old running mean."
            )
        if not _close(new_var, var_ref):
            return failed(
                "the new running variance differs from the layer's. Read nn.BatchNorm2d's documentation: which "
                "variance of the batch (divided by n or by n − 1) goes into the running average?"
            )
    return passed(
        "your formula matches nn.BatchNorm2d in train mode, output and running statistics, on batches of other "
        "shapes and values."
    )


# -------------------------------------------------------------------------------------------------- dropout

_DROPOUTS = {
    "F.dropout": F.dropout,
    "torch.dropout": torch.dropout,
    "torch.dropout_": torch.dropout_,
    "torch.native_dropout": torch.native_dropout,
    "F.dropout1d": F.dropout1d,
    "F.dropout2d": F.dropout2d,
    "F.dropout3d": F.dropout3d,
    "F.alpha_dropout": F.alpha_dropout,
    "F.feature_alpha_dropout": F.feature_alpha_dropout,
    "torch.feature_dropout": torch.feature_dropout,
    "torch.alpha_dropout": torch.alpha_dropout,
    "nn.Dropout": nn.Dropout.forward,
    "cu.ImprovedCNN": _models.ImprovedCNN.forward,
}
# Where torch's dropouts end, whichever route reaches them (torch.ops.aten, a TorchScript function): on the CPU
# aten::dropout breaks into bernoulli_ and mul, which an answer by hand may use too, so these are found in torch's
# record of operators rather than where it dispatches them.
_DROPOUT_OPS = (
    "dropout",
    "dropout_",
    "native_dropout",
    "_fused_dropout",
    "feature_dropout",
    "feature_dropout_",
    "alpha_dropout",
    "alpha_dropout_",
    "feature_alpha_dropout",
    "feature_alpha_dropout_",
)


def _dropout_fault(fn: Callable[..., Any], x: torch.Tensor, p: float) -> str | None:
    """A hint when ``fn(x, p, training=True)`` is not inverted dropout with probability p, else None."""
    original = x.clone()

    def twice() -> tuple[Any, Any]:
        out = fn(x, p, training=True)
        return out, fn(x, p, training=True) if isinstance(out, torch.Tensor) else None

    outputs, error, seen = _watched(twice, _DROPOUTS, _DROPOUT_OPS)
    if seen:
        return (
            f"your function calls {', '.join(sorted(seen))}, which drops values for you (or hides what it "
            "calls). Draw the random mask yourself (torch.rand_like, torch.bernoulli) and scale what it keeps."
        )
    if error is not None:
        raise error
    out, again = outputs
    if out is None or out is ...:
        return ""  # unanswered: the caller prints the nudge
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        return "return a tensor with the shape of x."
    if not torch.equal(x, original):
        return "your function changed x in place; return a new tensor and leave the input as it is."
    out = out.detach().cpu().double()
    xd = original.double()
    dropped = out == 0
    share = dropped.double().mean().item()
    if abs(share - p) > 0.02:
        return "the share of values set to 0 should be p: p is the probability of dropping a value."
    kept = ~dropped
    if p > 0 and not torch.allclose(out[kept], xd[kept] / (1 - p), rtol=1e-5, atol=1e-6):
        return (
            "the values kept must be scaled so that the average output equals the input: which factor does "
            "that when a share p of the values becomes 0?"
        )
    if p > 0 and x.ndim >= 2:
        rows = dropped.reshape(dropped.shape[0], -1)
        if bool((rows == rows[:1]).all()) or bool((rows == rows[:, :1]).all()):
            return "drop each value independently: the mask needs one random draw per value, not per row or column."
    if p > 0 and torch.equal(again.detach().cpu() == 0, out == 0):
        return "two calls dropped the same values: draw a fresh random mask on every call."
    return None


def dropout_by_hand(fn: Callable[..., Any], *, hidden: bool = False) -> Verdict:
    """Exercise 4: ``fn(x, p, training)`` is inverted dropout, written without torch's dropout.

    In train mode each value becomes 0 with probability p (a fresh, independent draw per value and call) and the
    kept ones are divided by 1 − p; in eval mode the input comes back unchanged. The check draws its own inputs
    (other shapes and p with ``hidden``) and judges the share dropped, the scaling and the randomness.

    Args:
        fn: The learner's ``dropout_by_hand``.
        hidden: Try more shapes and probabilities, p = 0 included.

    Returns:
        A true Verdict when every case behaves as inverted dropout.
    """
    g = torch.Generator().manual_seed(3)
    cases = [((400, 250), 0.3)]
    if hidden:
        cases += [((50, 8, 16, 16), 0.5), ((20_000, 5), 0.8), ((64, 3, 8, 8), 0.0)]
    with torch.random.fork_rng(devices=[]):  # the learner's random state is left as it was
        torch.manual_seed(1)
        for shape, p in cases:
            x = 0.5 + 3 * torch.randn(shape, generator=g)
            x[x == 0] = 1.0  # a value of 0 would look dropped
            try:
                fault = _dropout_fault(fn, x, p)
                if fault is None:
                    original = x.clone()
                    out = fn(x, p, training=False)
                    if not (isinstance(out, torch.Tensor) and torch.equal(out.detach().cpu(), original)):
                        fault = (
                            "in eval mode (training=False) dropout does nothing: return the input unchanged."
                        )
            except Exception as exc:
                return raised(exc)
            if fault == "":
                unanswered(None)
                return NOT_YET
            if fault is not None:
                return failed(fault)
    return passed(
        "your function behaves as inverted dropout, in train and in eval mode, on inputs it had not seen."
    )


# ----------------------------------------------------------------------------------------------- evaluation


class _Probe(nn.Module):
    """A small classifier with BatchNorm and dropout whose running statistics differ from any batch's."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(1, 4, kernel_size=3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(4 * 6 * 6, 3)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            self.bn.running_mean.copy_(torch.randn(4, generator=g))
            self.bn.running_var.copy_(0.2 + 2 * torch.rand(4, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.conv(x)))  # (batch, 4, 6, 6)
        return self.fc(self.dropout(torch.flatten(x, 1)))  # (batch, 3)


def _eval_draw(
    seed: int, sizes: list[int]
) -> tuple[_Probe, list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
    """A probe model, its batches (labels: its eval-mode predictions, 30% of them replaced at random), and
    those predictions; the same for the same seed and sizes."""
    g = torch.Generator().manual_seed(100 + seed)
    model = _Probe(seed)
    images = torch.randn(sum(sizes), 1, 6, 6, generator=g)
    with torch.no_grad():
        preds = copy.deepcopy(model).eval()(images).argmax(dim=1)
    labels = torch.where(
        torch.rand(len(preds), generator=g) < 0.3, torch.randint(0, 3, preds.shape, generator=g), preds
    )
    loader, start = [], 0
    for size in sizes:
        loader.append((images[start : start + size], labels[start : start + size]))
        start += size
    return model, loader, preds


def _eval_case(seed: int, sizes: list[int]) -> tuple[_Probe, list[tuple[torch.Tensor, torch.Tensor]]]:
    """What the learner's function is handed: nothing of the expected accuracy is kept."""
    model, loader, _ = _eval_draw(seed, sizes)
    return model, loader


def _eval_expected(seed: int, sizes: list[int]) -> float:
    """The eval-mode accuracy, weighted by the number of images, from the case drawn again."""
    _, loader, preds = _eval_draw(seed, sizes)
    labels = torch.cat([y for _, y in loader])
    return (preds == labels).double().mean().item()


def val_accuracy(fn: Callable[..., Any], *, hidden: bool = False) -> Verdict:
    """Exercise 5: the repaired ``fn(model, loader, device)`` evaluates as evaluation must.

    The check hands it models of its own with BatchNorm and dropout, one in train mode and one in eval mode
    (with ``hidden`` more of them, other batch sizes, a batch of one included). Every forward pass must run in eval mode without
    gradients; the accuracy must equal the eval-mode one; the model must come back unchanged and in the mode it
    was given in; and the function must not copy the model or call cu.evaluate / cu.predict.

    Args:
        fn: The learner's ``val_accuracy``.
        hidden: Try more models, batch sizes, and a model handed over in eval mode.

    Returns:
        A true Verdict when every case passes.
    """
    cases = [
        (0, [16, 16, 16, 5], True),
        (3, [12, 12, 3], False),
    ]  # handed over in train mode, then in eval mode
    if hidden:
        cases += [(1, [10, 10, 1], True), (2, [7, 9, 4], False)]
    watched = {  # unwrapped: both are decorated with torch.no_grad(), whose wrapper code they share
        "cu.evaluate": inspect.unwrap(_loop.evaluate),
        "cu.predict": inspect.unwrap(_loop.predict),
        "copy.deepcopy": copy.deepcopy,
        "copy.copy": copy.copy,
    }
    copying = {"copy.deepcopy", "copy.copy"}
    for seed, sizes, training in cases:
        model, loader = _eval_case(seed, sizes)  # the expected accuracy is worked out after the call
        model.train(training)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        modes = [m.training for m in model.modules()]
        passes: list[tuple[bool, bool, bool, bool]] = []  # (this very model, bn train, dropout train, grad)
        # A copy shares the hooks of the module it copies: the hook reads the modes of the modules given, and
        # whether the module that ran is the one given (a copy in eval mode leaves the given one in train mode).
        model.register_forward_hook(
            lambda m, args, out, passes=passes, given=model, bn=model.bn, dropout=model.dropout: (
                passes.append(
                    (
                        m is given and m.bn is bn and m.dropout is dropout,
                        bn.training,
                        dropout.training,
                        torch.is_grad_enabled(),
                    )
                )
            )
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            answer, error, seen = _watched(
                lambda model=model, loader=loader: fn(model, loader, "cpu"), watched
            )
        if seen & copying or any(not itself for itself, *_ in passes):
            return failed(
                "evaluate the model itself, not a copy: a copy of a large model doubles the memory it needs. "
                "Put the model in the right mode, and back."
            )
        if seen:
            return failed(
                f"your function calls {', '.join(sorted(seen))}, which does the job for you (or hides what it "
                "calls). Repair the loop itself."
            )
        if error is not None:
            return raised(error)
        if unanswered(answer):
            return NOT_YET
        if not passes:
            return failed("your function never ran the model on the batches.")
        if any(bn or drop for _, bn, drop, _ in passes):
            return failed(
                "the model still ran with dropout or BatchNorm in train mode: its predictions are random and "
                "depend on the other images in the batch."
            )
        if any(grad for *_, grad in passes):
            return failed("the forward passes still built an autograd graph: evaluation needs no gradients.")
        if not all(torch.equal(v, before[k]) for k, v in model.state_dict().items()):
            return failed(
                "the model's weights or running statistics changed: evaluating must leave them as they are."
            )
        if [m.training for m in model.modules()] != modes:
            return failed(
                "the model comes back in another mode than it was given in: training continues right after, "
                "so leave it in the mode you found it."
            )
        expected = _eval_expected(seed, sizes)  # from the case drawn again, now that the call is over
        value = number(answer)
        if value is None or not same(value, expected):
            return failed("the accuracy should be the share of all the images classified correctly.")
    return passed("your evaluation runs in eval mode without gradients and leaves the model as it found it.")
