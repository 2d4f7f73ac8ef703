"""Tests for the checks' shared machinery (``course_machinery/checks/_feedback.py``): one line of feedback, the
hidden test's ``grade``, typed predictions, and watching which functions an answer calls. The checks of each
lesson are tested in ``tests/test_exercises_NN.py``."""

import pytest
import torch
import torch.nn.functional as F
from support.exercises import in_ipython
from torch import nn

from course_machinery.checks._feedback import (
    Verdict,
    failed,
    grade,
    number,
    passed,
    same,
    typed_as_literal,
    unanswered,
    watch_calls,
)


def test_a_verdict_shows_nothing_in_a_notebook():
    """Jupyter shows a cell's last value unless it has _ipython_display_; a check cell shows only its line."""
    from IPython.core.formatters import DisplayFormatter

    for verdict in (Verdict(True), Verdict(False)):
        data, _ = DisplayFormatter().format(verdict)
        assert data == {}, data
    assert bool(Verdict(True)) and not Verdict(False)


def _doubles(fn, *, hidden=False):
    """A check of the kind the lessons write: more inputs when hidden."""
    inputs = [3, 7] + ([11, -4] if hidden else [])
    return passed("it doubles") if all(fn(x) == 2 * x for x in inputs) else failed("multiply by two")


def test_grade_is_silent_on_a_pass_and_raises_the_checks_one_line_on_a_fail(capsys):
    grade(_doubles, lambda x: 2 * x)
    assert capsys.readouterr().out == "", "a passing hidden test prints nothing"
    with pytest.raises(AssertionError, match="^❌ Not yet: multiply by two$"):
        grade(_doubles, lambda x: x + x if x > 0 else 0)  # right on the visible inputs only
    assert _doubles(lambda x: x + x if x > 0 else 0)  # the visible check alone passes it


def test_unanswered_nudges_instead_of_blaming(capsys):
    assert unanswered(None) and unanswered(...)
    assert "there is no answer yet" in capsys.readouterr().out
    assert not unanswered(0) and not unanswered([])


def test_same_and_number_compare_answers_of_any_form():
    assert same(torch.tensor(3.0), 3) and same((1, 2), [1, 2.0]) and not same((1, 2), (1, 2, 3))
    assert number(True) is None and number("3") is None and number(torch.tensor([2])) == 2.0


@pytest.mark.parametrize(
    "source, typed",
    [
        ("answer = (4, 16, 15, 9)", True),
        ("answer = 1024", True),
        ("answer = -0.5", True),
        ("answer = tuple(layer(x).shape)", False),
        ("answer = len([1, 2])", False),
        ("answer = x", False),
        ("other = 3", None),
    ],
)
def test_typed_as_literal_tells_a_typed_value_from_a_computed_one(source, typed):
    assert typed_as_literal("answer", source) is typed


def test_typed_as_literal_reads_the_kernels_input_history():
    check = (
        "from course_machinery.checks._feedback import typed_as_literal\nprint(typed_as_literal('answer'))"
    )
    assert in_ipython("answer = (1, 2)", check).strip() == "True"
    assert in_ipython("import math\nanswer = math.floor(2.5)", check).strip() == "False"
    assert in_ipython("answer = math_is_not_needed = 3", "answer = sorted([2, 1])", check).strip() == "False"


@pytest.mark.parametrize(
    "cells",
    [
        ["answer = None", "(answer := tuple(range(3)))"],
        ["answer = ()", "answer += tuple(range(3))"],
        ["answer = (0, 0)", "globals().update(answer=tuple(range(2)))"],
        ["answer = (0, 0)", "globals()['answer'] = (1, 1)"],
        ["answer = None", "for answer in [tuple(range(2))]: pass"],
        ["answer = None", "exec('answer = tuple(range(2))')"],
        ["answer, _ = tuple(range(2)), 0"],
        ["answer = None", "if True:\n    answer = tuple(range(2))"],
    ],
    ids=[
        "walrus",
        "augmented",
        "globals-update",
        "globals-item",
        "loop",
        "exec",
        "unpacked",
        "nested",
    ],
)
def test_typed_as_literal_refuses_a_value_that_reached_the_name_another_way(cells):
    check = (
        "from course_machinery.checks._feedback import typed_as_literal\nprint(typed_as_literal('answer'))"
    )
    assert in_ipython(*cells, check).strip().splitlines()[-1] == "False"


def test_typed_as_literal_accepts_arithmetic_typed_by_hand():
    check = (
        "from course_machinery.checks._feedback import typed_as_literal\nprint(typed_as_literal('answer'))"
    )
    for cell in (
        "answer = 1 + 3 + 5 + 7",
        "answer = (4, 16, (32 + 2 - 5) // 2 + 1, 9)",
        "answer, other = 2 * 512, 3",
    ):
        assert in_ipython(cell, "print(answer)", check).strip().splitlines()[-1] == "True", cell


def test_watch_calls_sees_threads_and_an_answer_that_switches_it_off_or_reads_the_checks_frames():
    import sys
    from concurrent.futures import ThreadPoolExecutor

    def helper():
        return 1

    with watch_calls({"helper": helper}) as seen:
        ThreadPoolExecutor(1).submit(helper).result()
    assert seen == {"helper"}
    with watch_calls({"helper": helper}) as seen:
        sys.setprofile(None)
        helper()
    assert "sys.setprofile" in seen
    with watch_calls({}) as seen:
        sys._getframe(0)
    assert seen == {"sys._getframe"}
    x, w = torch.randn(1, 1, 5, 5), torch.randn(1, 1, 3, 3)
    with watch_calls({}, ops={"convolution": "a convolution"}) as seen:
        torch.ops.aten.conv2d(x, w)  # below every Python route
    assert seen == {"a convolution"}


def test_watch_calls_sees_a_function_however_it_is_reached():
    def helper():
        return 1

    targets = {"F.conv2d": F.conv2d, "helper": helper, "F.unfold": F.unfold}
    x, w = torch.randn(1, 1, 5, 5), torch.randn(1, 1, 3, 3)
    cases = {
        "F.conv2d": lambda: F.conv2d(x, w),  # a builtin, called directly
        "F.unfold": lambda: F.unfold(x, 3),  # a Python function of torch
        "helper": lambda: (lambda f: f())(helper),  # through an alias
    }
    for name, call in cases.items():
        with watch_calls(targets) as seen:
            call()
        assert seen == {name}, (name, seen)
    with watch_calls(targets) as seen:
        nn.Conv2d(1, 1, 3)(x)  # a layer calls the convolution inside
    assert "F.conv2d" in seen
    with watch_calls(targets) as seen:
        (x * 2).sum()
    assert seen == set()
