"""How the exercise checks talk to a learner: ✅ and ❌ lines, placeholder detection, tolerant comparison."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from course_utils._setup import eval_mode

__all__ = ["Verdict", "NOT_YET", "passed", "failed", "raised", "unanswered", "number", "same", "run_on_zeros"]


class Verdict:
    """What a check returns: true when the answer is right. The check has already printed its one line of
    feedback, so a verdict shows nothing in a notebook (no ``True``/``False`` echoed under the ✅ or ❌ line)."""

    __slots__ = ("passed",)

    def __init__(self, passed: bool) -> None:
        self.passed = passed

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return f"Verdict(passed={self.passed})"

    def _ipython_display_(self) -> None:
        """Jupyter calls this instead of showing the repr: the feedback line is all a check cell shows."""


NOT_YET = Verdict(False)  # returned after a ❌ line that was already printed


def passed(message: str) -> Verdict:
    """Print a ✅ line; the verdict is true."""
    print(f"✅ Correct! {message}")
    return Verdict(True)


def failed(hint: str) -> Verdict:
    """Print a ❌ hint; the verdict is false."""
    print(f"❌ Not yet: {hint}")
    return NOT_YET


def raised(exc: BaseException) -> Verdict:
    """Report the learner's exception as a ❌ line (a check never raises for a wrong answer)."""
    print(f"❌ Your code raised {type(exc).__name__}: {exc}")
    return NOT_YET


_PLACEHOLDERS = (None, ...)


def unanswered(value: Any) -> bool:
    """True (after printing a nudge) when the learner has not replaced the placeholder yet."""
    if any(value is p for p in _PLACEHOLDERS):
        print(
            "❌ Not yet: there is no answer yet. Replace the placeholder (None or ...) with your answer, "
            "then run the cell again."
        )
        return True
    return False


def number(value: Any) -> float | None:
    """The answer as a number, or None when it is not one (a tensor of one element counts)."""
    if isinstance(value, torch.Tensor):
        return float(value.item()) if value.numel() == 1 else None
    if isinstance(value, (bool, str)):
        return None  # True == 1 and float("3") == 3.0 in Python, but neither is a numeric answer
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def run_on_zeros(module: nn.Module, input_shape: Sequence[int]) -> torch.Tensor:
    """Run ``module`` on zeros in eval mode without gradients, restoring every submodule's mode afterwards."""
    param = next(module.parameters(), None)
    x = torch.zeros(tuple(input_shape), device=param.device if param is not None else "cpu")
    with eval_mode(module), torch.no_grad():  # batch norm must not update its running statistics on zeros
        return module(x)


def same(answer: Any, expected: Any) -> bool:
    """Whether an answer equals the expected value: numbers and tensors with a small tolerance, sequences item by item."""
    a, e = number(answer), number(expected)
    if a is not None and e is not None:
        return math.isclose(a, e, rel_tol=1e-6, abs_tol=1e-9)
    if isinstance(answer, torch.Tensor) or isinstance(expected, torch.Tensor):
        try:
            a_t, e_t = torch.as_tensor(answer).double(), torch.as_tensor(expected).double()
        except Exception:  # e.g. a string compared with a tensor
            return False
        return a_t.shape == e_t.shape and torch.allclose(a_t, e_t, rtol=1e-6, atol=1e-9)
    if isinstance(answer, (list, tuple)) and isinstance(expected, (list, tuple)):
        return len(answer) == len(expected) and all(map(same, answer, expected))
    try:
        return bool(answer == expected)
    except Exception:  # objects whose comparison does not give a plain truth value
        return False
