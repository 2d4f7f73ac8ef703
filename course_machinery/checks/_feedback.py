"""How the exercise checks talk to a learner: ✅ and ❌ lines, placeholder detection, tolerant comparison."""

from __future__ import annotations

import ast
import contextlib
import gc
import inspect
import io
import math
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
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
    "invoke",
    "run_watched",
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
        raise AssertionError(
            lines[-1] if lines else f"{getattr(check, '__name__', 'the check')} did not pass"
        )


_ARITHMETIC = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.UAdd, ast.USub)
# Calls that can bind a name without naming it as an assignment target.
_INDIRECT = {"exec", "eval", "globals", "locals", "vars", "setattr", "__import__", "compile"}


def _typed(node: ast.expr) -> bool:
    """A value typed by hand: numbers, strings, None/True/False, tuples and lists of them, arithmetic on numbers."""
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, (ast.Tuple, ast.List)):
        return all(_typed(e) for e in node.elts)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, _ARITHMETIC):
        return _typed(node.operand)
    if isinstance(node, ast.BinOp) and isinstance(node.op, _ARITHMETIC):
        return _typed(node.left) and _typed(node.right)
    return False


def _binding(source: str, name: str) -> tuple[bool, ast.expr | None] | None:
    """How ``source`` last binds ``name``: (True, value) for a plain top-level ``name = value`` (a tuple target with a
    tuple of values counts, element by element), (False, None) for any other way (a call's result unpacked, a
    loop, a walrus, ``+=``, a nested block, ``globals()``/``exec``), None when it does not bind ``name``."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    stores = [
        n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Store)
    ]
    indirect = name in source and any(
        isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in _INDIRECT
        for n in ast.walk(tree)
    )
    indirect |= any(isinstance(n, ast.keyword) and n.arg == name for n in ast.walk(tree))
    if indirect:
        return False, None
    if not stores:
        return None
    last = None
    for node in tree.body:  # a plain assignment at the top level, the last that binds the name
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
            if isinstance(target, ast.Name) and target.id == name:
                last = value
            elif (
                isinstance(target, ast.Tuple)
                and isinstance(value, ast.Tuple)
                and len(target.elts) == len(value.elts)
            ):
                for t, v in zip(target.elts, value.elts, strict=True):
                    if isinstance(t, ast.Name) and t.id == name:
                        last = v
    plain_stores = [
        n
        for n in ast.walk(
            ast.Module(body=[b for b in tree.body if isinstance(b, ast.Assign)], type_ignores=[])
        )
        if isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Store)
    ]
    if last is None or len(plain_stores) != len(stores):
        return (
            False,
            None,
        )  # bound somewhere else too: in a loop, a block, by a walrus or an augmented assignment
    return True, last


def typed_as_literal(name: str, source: str | None = None) -> bool | None:
    """Whether the answer ``name`` was typed as a value (``(4, 8, 16, 16)``, ``0.25``, ``2 * 512``), not computed.

    A prediction is a value the learner writes down before running anything; ``tuple(layer(x).shape)`` is not one,
    nor is a value that reaches the name another way (a loop, a walrus, ``globals()``, ``exec``). ``source`` is the
    code that assigned the answer; without it, the kernel's input history (IPython's ``In``, kept in every Jupyter
    front end and in nbgrader's runs) is searched for the latest cell that binds ``name``, and the value the name
    holds now must be the one typed there. Returns None where there is no history to read (plain Python, or a
    runner that keeps none, as nbval), so the check then judges the value alone.
    """
    if source is not None:
        found = _binding(source, name)
        return None if found is None else found[0] and _typed(found[1])
    try:
        namespace = get_ipython().user_ns  # type: ignore[name-defined]  # noqa: F821
    except NameError:
        return None
    for cell in reversed(
        namespace.get("In", [])[:-1]
    ):  # the last entry is the check cell that is running now
        found = _binding(cell, name)
        if found is None:
            continue
        plain, value = found
        if not plain or not _typed(value):
            return False
        try:
            typed = eval(compile(ast.Expression(value), "<typed>", "eval"), {"__builtins__": {}})
        except Exception:  # e.g. 1 / 0 typed by hand
            return False
        return same(namespace.get(name), typed)  # nothing rebound it since, by any route
    return (
        None  # no cell of the history binds it: a front end that keeps no history (nbval), nothing to judge
    )


# Calls no answer needs, only an answer that inspects or switches off the check that runs it: each is reported as
# seen (so the check refuses the answer) whatever the check watches for.
_META = {
    "sys.setprofile": sys.setprofile,
    "sys.settrace": sys.settrace,
    "sys._getframe": sys._getframe,
    "sys.getprofile": sys.getprofile,
    "threading.getprofile": threading.getprofile,
    "inspect.currentframe": inspect.currentframe,
    "inspect.stack": inspect.stack,
    "gc.get_objects": gc.get_objects,
    "gc.get_referrers": gc.get_referrers,
}


_LIBRARIES = tuple(
    {
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        str(Path(__file__).resolve().parents[2] / "course_utils"),
        str(Path(__file__).resolve().parents[1]),
    }
)


def _signature(code: Any) -> tuple:
    """What a code object does, whatever its name, file or line numbers."""
    consts = tuple(_signature(c) if hasattr(c, "co_code") else c for c in code.co_consts)
    return code.co_code, consts, code.co_names, code.co_varnames


def _library(frame: Any) -> bool:
    """Whether ``frame`` runs code of Python, torch, the course's packages (not code a learner wrote)."""
    filename = frame.f_code.co_filename if frame is not None else ""
    return filename.startswith(_LIBRARIES) or filename.startswith("<frozen")


@contextlib.contextmanager
def watch_calls(targets: dict[str, Any], ops: dict[str, str] | None = None) -> Iterator[set[str]]:
    """Within the block, note which of ``targets`` (name -> function) the code calls, however it reaches them.

    Python functions are recognised by their code object (an alias, a wrapper or a method that calls them is
    seen too); built-in functions (``torch.conv2d``, which ``F.conv2d`` is) by identity, and torch functions also
    through torch's function hook, so ``x.unfold(...)`` or ``F.conv2d`` inside ``nn.Conv2d`` are seen. ``ops``
    (ATen operator name -> name to report, e.g. ``{"convolution": "a convolution"}``) are watched where every torch
    computation ends, below any Python route to them (``torch.ops.aten.*``, private functions, a disabled hook).
    An answer that inspects the check's frames or switches the watching off is reported under the name of what it
    called (``sys.setprofile``, ``sys._getframe``, ...). Yields the set of names called, filled in as the block
    runs. A check uses it to refuse an answer that calls the very function an exercise asks the learner to write.
    """
    from torch.overrides import TorchFunctionMode
    from torch.utils._python_dispatch import TorchDispatchMode

    watched = {**targets, **_META}
    # A Python function is known by what its code does (bytes, constants, names), so a copy made with
    # types.FunctionType(code.replace(...)) or a re-compiled copy of its source is known too.
    codes = {_signature(f.__code__): name for name, f in watched.items() if hasattr(f, "__code__")}
    builtins = {id(f): name for name, f in watched.items() if not hasattr(f, "__code__")}
    seen: set[str] = set()

    known: dict[int, tuple[Any, str | None]] = {}  # id(code) -> (code, name): each code is looked at once

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            code = frame.f_code
            if id(code) not in known:
                known[id(code)] = (
                    code,
                    codes.get(_signature(code)),
                )  # the code is kept, so its id stays its own
            name = known[id(code)][1]
        if event == "call" and name is not None:
            if name not in _META or not _library(frame.f_back):
                seen.add(name)
        elif event == "c_call" and id(arg) in builtins:
            name = builtins[id(arg)]
            if name not in _META or not _library(frame):
                seen.add(name)

    class _Functions(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            if id(func) in builtins:
                seen.add(builtins[id(func)])
            return func(*args, **(kwargs or {}))

    class _Operators(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            name = func.overloadpacket.__name__
            if name in (ops or {}):
                seen.add(ops[name])
            return func(*args, **(kwargs or {}))

    previous, previous_threads = sys.getprofile(), threading.getprofile()
    sys.setprofile(profile)
    threading.setprofile(profile)  # threads the answer starts are watched too
    try:
        with _Functions(), _Operators() if ops else contextlib.nullcontext():
            yield seen
    finally:
        if sys.getprofile() is not profile:
            seen.add("sys.setprofile")
        sys.setprofile(previous)
        threading.setprofile(previous_threads)


def invoke(call: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    """``call()``'s result and None, or None and the exception the learner's code raised (the check reports it)."""
    try:
        return call(), None
    except Exception as exc:  # the learner's exception: the check reports it
        return None, exc


def run_watched(
    call: Callable[[], Any], targets: dict[str, Any], ops: dict[str, str] | None = None
) -> tuple[Any, BaseException | None, frozenset[str]]:
    """Run the learner's ``call()`` under ``watch_calls(targets, ops)``: (its result, the exception it raised or
    None, the names it called).

    While the learner's code runs, this frame (which a traceback's ``tb_frame.f_back`` reaches) holds no reference
    to the live set of names: it sits on the evaluation stack only. A check computes its expected values after
    this returns, never before.
    """
    with watch_calls(targets, ops) as seen:
        outcome = (seen, (seen := None), *invoke(call))
    called, _, result, error = outcome
    return result, error, frozenset(called)
