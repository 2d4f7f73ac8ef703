"""How the exercise checks talk to a learner: ✅ and ❌ lines, placeholder detection, tolerant comparison."""

from __future__ import annotations

import ast
import contextlib
import io
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from course_utils._setup import eval_mode

__all__ = [
    "Verdict",
    "NOT_YET",
    "passed",
    "failed",
    "raised",
    "unanswered",
    "number",
    "same",
    "run_on_zeros",
    "grade",
    "typed_as_literal",
    "watch_calls",
]


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


def grade(check: Callable[..., Verdict], *args: Any, **kwargs: Any) -> None:
    """nbgrader's hidden test for one exercise: run ``check(*args, hidden=True, **kwargs)`` quietly.

    With ``hidden=True`` a check tries more inputs than the visible one (other shapes, seeds and values). Nothing is
    printed when the answer passes (the visible check above it already said so); a failing answer raises an
    ``AssertionError`` whose message is the check's one line of feedback, which nbgrader scores as 0 and shows in
    the feedback it hands back.
    """
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        verdict = check(*args, hidden=True, **kwargs)
    if not verdict:
        lines = [line for line in buffer.getvalue().splitlines() if line.strip()]
        raise AssertionError(lines[-1] if lines else f"{getattr(check, '__name__', 'the check')} did not pass")


def _assigned_value(source: str, name: str) -> ast.expr | None:
    """The expression last assigned to ``name`` at the top level of ``source`` (None when it is not assigned)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    value = None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            value = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name:
            value = node.value
    return value


def typed_as_literal(name: str, source: str | None = None) -> bool | None:
    """Whether the answer ``name`` was typed as a value (``(4, 8, 16, 16)``, ``0.25``), not computed by a call.

    A prediction is a value the learner writes down before running anything; ``tuple(layer(x).shape)`` is not one.
    ``source`` is the code that assigned the answer; without it, the kernel's input history (IPython's ``In``, kept
    in every Jupyter front end and in nbgrader's runs) is searched for the latest cell that assigns ``name``.
    Returns None where there is no history to read (plain Python), so the check then judges the value alone.
    """
    if source is None:
        try:
            history = get_ipython().user_ns.get("In", [])  # type: ignore[name-defined]  # noqa: F821
        except NameError:
            return None
        for cell in reversed(history[:-1]):  # the last entry is the check cell that is running now
            if _assigned_value(cell, name) is not None:
                source = cell
                break
        else:
            return None
    value = _assigned_value(source, name)
    if value is None:
        return None
    try:
        ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


@contextlib.contextmanager
def watch_calls(targets: dict[str, Any]) -> Iterator[set[str]]:
    """Within the block, note which of ``targets`` (name -> function) the code calls, however it reaches them.

    Python functions are recognised by their code object (an alias, a wrapper or a method that calls them is
    seen too); built-in functions (``torch.conv2d``, which ``F.conv2d`` is) by identity, and torch functions also
    through torch's function hook, so ``x.unfold(...)`` or ``F.conv2d`` inside ``nn.Conv2d`` are seen. Yields the
    set of names called, filled in as the block runs. A check uses it to refuse an answer that calls the very
    function an exercise asks the learner to write.
    """
    from torch.overrides import TorchFunctionMode

    codes = {getattr(f, "__code__", None): name for name, f in targets.items()}
    codes.pop(None, None)
    builtins = {id(f): name for name, f in targets.items() if not hasattr(f, "__code__")}
    seen: set[str] = set()

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code in codes:
            seen.add(codes[frame.f_code])
        elif event == "c_call" and id(arg) in builtins:
            seen.add(builtins[id(arg)])

    class _Mode(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            if id(func) in builtins:
                seen.add(builtins[id(func)])
            return func(*args, **(kwargs or {}))

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        with _Mode():
            yield seen
    finally:
        sys.setprofile(previous)
