"""Checks for the training exercises: which parameters train, accuracy targets, and plain answers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from ._feedback import NOT_YET, Verdict, failed, passed, same, unanswered


def check_trainable(model: nn.Module, expected_trainable_names: Sequence[str]) -> Verdict:
    """Check which parameters are trainable (``requires_grad``), by name prefix.

    Args:
        model: The learner's model.
        expected_trainable_names: Prefixes of the parameters that should train, e.g. ``["fc"]``.

    Returns:
        A true Verdict when exactly the parameters under those prefixes are trainable.
    """
    prefixes = list(expected_trainable_names)

    def under(name: str, prefix: str) -> Verdict:
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


def check_equal(answer: Any, expected: Any, *, hint: str) -> Verdict:
    """Compare an answer with the expected value (floats with a small tolerance) and show ``hint`` if wrong.

    Args:
        answer: The learner's answer.
        expected: The right answer (never printed).
        hint: What to print after "❌ Not yet:" when the answer is wrong.

    Returns:
        A true Verdict when the answer is right.
    """
    if unanswered(answer):
        return NOT_YET
    return passed("that's right.") if same(answer, expected) else failed(hint)
