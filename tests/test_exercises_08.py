"""Lesson 08's exercises: each check accepts the notebook's solution and refuses the student edition's code and
the ways of passing without understanding (run A's working code in place of a repair, a repair that changes the
run's own choices, the broken run itself, a fix that fits one data size only)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from support.exercises import accepted, answer_source, rejected
from torch import nn

from course_machinery.checks import lesson08 as checks

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "08_debugging_training.ipynb"
CELLS = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
STEPS, TARGET = 40, 0.8


def cell_with(text: str) -> str:
    return next(
        "".join(c["source"]) for c in CELLS if c["cell_type"] == "code" and text in "".join(c["source"])
    )


def define(source: str, name: str):
    namespace = {"torch": torch, "nn": nn, "F": F, "MEAN": 0.1307, "STD": 0.3081, "BATCH_SIZE": 64}
    code = "\n".join(line for line in source.splitlines() if not line.startswith(("model_", "checks.")))
    exec(compile(code, f"<{name}>", "exec"), namespace)
    return namespace[name]


def tiny_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 7 * 7, 10),
    )


@pytest.fixture
def bundle(digits):
    train, val = digits
    return SimpleNamespace(train=train, val=val)


def judge(check, run, bundle, accept: bool) -> str:
    kwargs = {"make_model": tiny_cnn, "steps": STEPS, "target": TARGET}
    return (accepted if accept else rejected)(check, run, bundle, **kwargs)


RUN_A_FIXED = define(cell_with("def run_a_fixed"), "run_a_fixed")


# ---------------------------------------------------------------------------------------------------------
# Exercise 1: dead_channels
# ---------------------------------------------------------------------------------------------------------
def test_07_e1():
    accepted(checks.dead_channels, define(answer_source("08-e1-answer"), "dead_channels"))
    rejected(checks.dead_channels, define(answer_source("08-e1-answer", student=True), "dead_channels"))
    rejected(checks.dead_channels, None)


def test_cheat_08_e1():
    def per_value(model, images):  # the share of zero outputs (zero_frac), not of dead channels
        shares, handles = {}, []
        for name, m in model.named_modules():
            if isinstance(m, nn.ReLU):
                handles.append(
                    m.register_forward_hook(
                        lambda mod, i, o, n=name: shares.__setitem__(n, (o == 0).float().mean().item())
                    )
                )
        with torch.no_grad():
            model(images)
        for h in handles:
            h.remove()
        return shares

    def leaves_hooks(model, images):
        shares = {}
        for name, m in model.named_modules():
            if isinstance(m, nn.ReLU):
                m.register_forward_hook(
                    lambda mod, i, o, n=name: shares.__setitem__(
                        n, (o == 0).all(dim=[d for d in range(o.ndim) if d != 1]).float().mean().item()
                    )
                )
        with torch.no_grad():
            model(images)
        return shares

    def sequential_only(model, images):  # slices an nn.Sequential instead of watching with hooks
        return {str(i): 0.0 for i, m in enumerate(model) if isinstance(m, nn.ReLU)}

    assert "dead" in rejected(checks.dead_channels, per_value)
    assert "hooks" in rejected(checks.dead_channels, leaves_hooks)
    rejected(checks.dead_channels, sequential_only)
    rejected(checks.dead_channels, lambda model, images: {"act_stem": 0.5, "act_side": 0.0, "act_head": 0.25})


# ---------------------------------------------------------------------------------------------------------
# Exercises 2 to 6: the repaired runs
# ---------------------------------------------------------------------------------------------------------
RUNS = {"08-e2": ("run_b", "run_b_fixed"), "08-e3": ("run_c", "run_c_fixed"), "08-e4": ("run_d", "run_d_fixed"),
        "08-e5": ("run_e", "run_e_fixed"), "08-e6": ("run_g", "run_g_fixed")}  # fmt: skip


def solution(ex: str):
    return define(answer_source(f"{ex}-answer"), RUNS[ex][1])


def broken(ex: str):
    return define(answer_source(f"{ex}-answer", student=True), RUNS[ex][1])


@pytest.mark.parametrize("ex", list(RUNS))
def test_07_runs(ex, bundle):
    check = getattr(checks, RUNS[ex][0])
    judge(check, solution(ex), bundle, accept=True)
    judge(check, broken(ex), bundle, accept=False)  # the student edition's copy: the broken run
    rejected(check, None, bundle, make_model=tiny_cnn, steps=STEPS, target=TARGET)


def edited(ex: str, old: str, new: str):
    source = answer_source(f"{ex}-answer")
    fixed = source[source.index("### BEGIN SOLUTION") :]
    assert old in fixed, old
    return define(fixed.replace(old, new), RUNS[ex][1])


def test_cheat_08_e2(bundle):
    assert "optimizer" in judge(checks.run_b, RUN_A_FIXED, bundle, accept=False)  # the worked example's run
    zero_after = edited(
        "08-e2",
        "optimizer.zero_grad()\n        loss.backward()",
        "loss.backward()\n        optimizer.zero_grad()",
    )
    judge(checks.run_b, zero_after, bundle, accept=False)


def test_cheat_08_e3(bundle):
    assert "scales" in judge(checks.run_c, RUN_A_FIXED, bundle, accept=False)
    judge(
        checks.run_c, edited("08-e3", "lr=0.05, momentum=0.9", "lr=0.1, momentum=0.9"), bundle, accept=False
    )


def test_cheat_08_e4(bundle):
    judge(
        checks.run_d, RUN_A_FIXED, bundle, accept=False
    )  # MNIST's constants: wrong for the check's own pixels
    constants = edited("08-e4", "mean, std = pixels.mean(), pixels.std()", "mean, std = 0.1307, 0.3081")
    judge(checks.run_d, constants, bundle, accept=False)


def test_cheat_08_e5(bundle):
    assert "optimizer" in judge(checks.run_e, RUN_A_FIXED, bundle, accept=False)  # SGD instead of Adam
    sgd = edited(
        "08-e5",
        "torch.optim.Adam(model.parameters(), lr=1e-3)",
        "torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)",
    )
    judge(checks.run_e, sgd, bundle, accept=False)


def test_cheat_08_e6(bundle):
    judge(checks.run_g, RUN_A_FIXED, bundle, accept=False)  # no schedule at all
    judge(
        checks.run_g,
        edited("08-e6", "        if start + BATCH_SIZE >= len(inputs):\n            scheduler.step()", ""),
        bundle,
        accept=False,
    )
    # a step size that fits one training set (the first probe's 256 images) only: refused on the hidden sizes
    fitted = edited(
        "08-e6",
        "        if start + BATCH_SIZE >= len(inputs):\n            scheduler.step()",
        "        if step % 4 == 3:\n            scheduler.step()",
    )
    from course_machinery.checks._feedback import grade

    with pytest.raises(AssertionError):
        grade(checks.run_g, fitted, bundle, make_model=tiny_cnn, steps=STEPS, target=TARGET)
