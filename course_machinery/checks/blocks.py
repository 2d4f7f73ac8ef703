"""Checks for the modern-CNN exercises (notebook 06): a residual block, and a network trained to a target in time."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from course_utils import evaluate, train_one_epoch

from ._feedback import NOT_YET, Verdict, failed, number, passed, unanswered

_BLOCK_CASES = [(16, 16, 1), (16, 32, 1), (16, 16, 2), (16, 32, 2)]  # (in_channels, out_channels, stride)


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"


def _is_1x1(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1)


def _block_case(block_cls: Any, cin: int, cout: int, stride: int) -> str | None:
    """What is wrong with ``block_cls(cin, cout, stride)``, in one sentence; None when this case passes."""
    call = f"{getattr(block_cls, '__name__', 'block')}({cin}, {cout}, stride={stride})"
    changes = cin != cout or stride != 1
    try:
        block = block_cls(cin, cout, stride)
    except Exception as exc:  # learner code: report, do not raise
        return f"{call} raised {_first_line(exc)}. The block is built as MyBlock(in_channels, out_channels, stride)."
    if not isinstance(block, nn.Module):
        return (
            f"{call} returned a {type(block).__name__}; subclass nn.Module and build the layers in __init__."
        )
    block.eval()  # fresh BatchNorm layers in eval mode: no running statistics change, the same output every time
    x = torch.randn(2, cin, 8, 8, requires_grad=True)
    try:
        out = block(x)
    except Exception as exc:
        extra = " When the shape changes, x cannot be added as it is: project it." if changes else ""
        return f"{call} failed on an input of shape {tuple(x.shape)}: {_first_line(exc)}.{extra}"
    if not isinstance(out, torch.Tensor) or out.ndim != 4:
        return f"{call} should return a 4-D tensor (batch, channels, height, width)."
    if out.shape[1] != cout:
        return f"{call} returned {out.shape[1]} channels; the output should have out_channels channels."
    if tuple(out.shape[2:]) != (8 // stride, 8 // stride):
        return (
            f"{call} turned an 8x8 input into {out.shape[2]}x{out.shape[3]}: the stride should divide the "
            "height and width once (padding=1 keeps them in a 3x3 convolution), in the residual branch and "
            "in the shortcut alike."
        )
    projections = [m for m in block.modules() if _is_1x1(m)]
    if not changes and projections:
        return (
            f"{call} has a 1x1 convolution, but when the shape does not change the shortcut should be the "
            "identity: a projection there only adds parameters and a path that is no longer a plain copy of x."
        )
    if changes and not projections:
        return f"{call} changes the shape, so its shortcut needs a 1x1 convolution (with the block's stride)."
    # Switch the residual branch off (its 3x3 convolutions give zeros): whatever still reaches x is the shortcut.
    with torch.no_grad():
        before = block(x)
        for m in block.modules():
            if isinstance(m, nn.Conv2d) and not _is_1x1(m):
                m.weight.zero_()
                if m.bias is not None:
                    m.bias.zero_()
        if torch.allclose(before, block(x)):
            return f"{call}: the 3x3 convolutions do not change the output; is the residual branch used?"
    block(x).sum().backward()
    if x.grad is None or not torch.any(x.grad != 0):
        return (
            f"{call}: with the 3x3 convolutions set to zero no gradient reaches the input, so there is no "
            "shortcut. Add it to the branch's output: out = branch(x) + shortcut(x)."
        )
    return None


def check_residual_block(block_cls: Any) -> Verdict:
    """Check a learner's residual block class, built as ``block_cls(in_channels, out_channels, stride)``.

    Four cases (same and changed channels, stride 1 and 2) on an 8x8 input: the output shape, a 1x1
    projection exactly when the shape changes, and a gradient that reaches the input through the shortcut
    when the 3x3 convolutions are switched off.

    Args:
        block_cls: The learner's ``nn.Module`` subclass (the class, not an instance).

    Returns:
        A true Verdict when every case passes.
    """
    if unanswered(block_cls):
        return NOT_YET
    if isinstance(block_cls, nn.Module) or not callable(block_cls):
        return failed("pass the class itself (e.g. MyBlock), not an instance: the check builds four blocks.")
    try:  # a skeleton whose forward is still `...` returns None: not answered yet
        skeleton = block_cls(16, 16, 1).eval()(torch.zeros(1, 16, 8, 8)) is None
    except Exception:  # reported with more context by the cases below
        skeleton = False
    if skeleton and unanswered(None):
        return NOT_YET
    for cin, cout, stride in _BLOCK_CASES:
        problem = _block_case(block_cls, cin, cout, stride)
        if problem is not None:
            return failed(problem)
    return passed(
        f"right shapes in all {len(_BLOCK_CASES)} cases, a projection only where the shape changes, and the "
        "gradient reaches the input through the shortcut."
    )


def check_time_to_accuracy(
    model: nn.Module | None,
    train_loader: Iterable,
    val_loader: Iterable,
    *,
    epochs: Any,
    lr: Any,
    target: float,
    seconds: float,
    precision: str = "fp32",
) -> Verdict:
    """Train a copy of the learner's untrained ``model`` and check it reaches ``target`` within ``seconds``.

    The recipe is the notebook's: Adam with a one-cycle schedule peaking at ``lr``, cross-entropy, ``epochs``
    passes over ``train_loader``. The time counts training and the validation after every epoch; the
    accuracy is the validation accuracy after the last epoch. The learner's model is left untouched.

    Args:
        model: A freshly built, untrained network.
        train_loader: Training batches.
        val_loader: Validation batches.
        epochs: Passes over the training data (a whole number).
        lr: Peak learning rate of the one-cycle schedule.
        target: Validation accuracy to reach, as a fraction.
        seconds: Time budget in seconds.
        precision: ``"fp32"`` or ``"bf16"``, as in ``cu.fit``.

    Returns:
        A true Verdict when the run finished within the budget at or above the target.
    """
    if unanswered(model) or unanswered(epochs) or unanswered(lr):
        return NOT_YET
    if not isinstance(model, nn.Module) or not any(p.requires_grad for p in model.parameters()):
        return failed("model should be a freshly built network (an nn.Module with trainable parameters).")
    n_epochs, peak = number(epochs), number(lr)
    if n_epochs is None or n_epochs < 1 or n_epochs != int(n_epochs):
        return failed(f"epochs should be a whole number of at least 1; you gave {epochs!r}.")
    if peak is None or not 0 < peak < 1:
        return failed(f"lr should be a positive number below 1 (e.g. 0.003); you gave {lr!r}.")
    net = copy.deepcopy(model)  # the learner's model stays untrained
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(net.parameters(), lr=peak)
    steps = int(n_epochs) * len(train_loader)  # type: ignore[arg-type]
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=peak, total_steps=steps)
    start = time.perf_counter()
    try:
        for epoch in range(1, int(n_epochs) + 1):
            train_one_epoch(
                net,
                train_loader,
                optimizer=optimizer,
                loss_fn=loss_fn,
                scheduler=scheduler,
                precision=precision,
            )
            acc = evaluate(net, val_loader, precision=precision)["acc"]
            took = time.perf_counter() - start
            if took > seconds and epoch < n_epochs:
                return failed(
                    f"the time ran out after epoch {epoch} of {int(n_epochs)} ({took:.1f} s, budget {seconds:.1f} s; "
                    f"validation accuracy then {acc:.1%}). Fewer epochs, or a cheaper network."
                )
    except Exception as exc:  # learner code (e.g. a shape error, or a NaN loss at too high an lr): report
        return failed(f"training raised {_first_line(exc)}")
    if took > seconds:
        return failed(
            f"{int(n_epochs)} epoch(s) took {took:.1f} s, over the {seconds:.1f} s budget (validation accuracy "
            f"{acc:.1%}). Fewer epochs, or a cheaper network."
        )
    if acc < target:
        return failed(
            f"validation accuracy {acc:.1%} after {int(n_epochs)} epoch(s) ({took:.1f} s) is below the "
            f"{target:.1%} target. Try another lr, a wider or deeper network, or the blocks of this notebook."
        )
    return passed(
        f"validation accuracy {acc:.1%} in {took:.1f} s: the {target:.1%} target within {seconds:.1f} s."
    )
