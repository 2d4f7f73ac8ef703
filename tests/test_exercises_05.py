"""Lesson 05's exercises: each check accepts the notebook's solution, refuses the student edition's placeholder
(or, for the fix, the broken code) and refuses the ways of passing without understanding."""

from __future__ import annotations

import math
import textwrap
import time
from typing import Any

import pytest
import torch
from support.exercises import accepted, answer_source, rejected

from course_machinery.checks import lesson05 as checks
from course_utils.data import TensorLoader


def _answer_source(k: int, *, student: bool = False) -> str:
    return answer_source(f"05-e{k}-answer", student=student)


def _run(source: str, **names: Any) -> dict[str, Any]:
    namespace: dict[str, Any] = {"time": time, "math": math, **names}
    exec(compile(source, "<answer>", "exec"), namespace)
    return namespace


def solution(k: int, name: str) -> Any:
    """The function the teacher's edition defines in exercise ``k``'s answer cell."""
    return _run(_answer_source(k))[name]


def placeholder(k: int, name: str) -> Any:
    """The function of the student edition: the solution region replaced as nbgrader replaces it."""
    return _run(_answer_source(k, student=True))[name]


def defined(code: str, **names: Any) -> Any:
    """The last function that ``code`` defines, in a namespace holding ``names`` (like a notebook's globals)."""
    namespace = _run(textwrap.dedent(code), **names)
    return [v for k, v in namespace.items() if callable(v) and k not in names and k not in ("time", "math")][
        -1
    ]


# Exercise 1: best_seconds (fix)


def test_05_e1_solution_accepted():
    assert "✅" in accepted(checks.best_seconds, solution(1, "best_seconds"))


def test_05_e1_broken_code_rejected():
    # The student edition keeps the broken helper: no warm-up, no sync, the mean.
    line = rejected(checks.best_seconds, placeholder(1, "best_seconds"))
    assert "sync" in line or "warm" in line


def test_05_e1_nothing_rejected():
    rejected(checks.best_seconds, None)


def test_cheat_05_e1():
    # The real clock instead of the one given: fine on a CPU, wrong wherever someone passes another clock.
    real_clock = defined(
        """
        def best_seconds(step, sync, repeats, clock=time.perf_counter):
            step()
            times = []
            for _ in range(repeats):
                sync(); start = time.perf_counter(); step(); sync()
                times.append(time.perf_counter() - start)
            return min(times)
        """
    )
    assert "clock" in rejected(checks.best_seconds, real_clock)
    # The mean of well-synchronised calls.
    mean = defined(
        """
        def best_seconds(step, sync, repeats, clock=time.perf_counter):
            step()
            sync()
            start = clock()
            for _ in range(repeats):
                step()
            sync()
            return (clock() - start) / repeats
        """
    )
    rejected(checks.best_seconds, mean)
    # No sync before starting the clock: the warm-up's work counts in the first timed call.
    no_first_sync = defined(
        """
        def best_seconds(step, sync, repeats, clock=time.perf_counter):
            step()
            times = []
            for _ in range(repeats):
                start = clock(); step(); sync()
                times.append(clock() - start)
            return min(times)
        """
    )
    assert "before starting" in rejected(checks.best_seconds, no_first_sync)
    # No warm-up at all: the slow first call is timed (min hides it unless there is one timed call).
    no_warm_up = defined(
        """
        def best_seconds(step, sync, repeats, clock=time.perf_counter):
            times = []
            for _ in range(repeats):
                sync(); start = clock(); step(); sync()
                times.append(clock() - start)
            return min(times)
        """
    )
    assert "warm" in rejected(checks.best_seconds, no_warm_up)
    # The notebook's own sync (a global) instead of the argument: it waits for another device.
    calls = []

    def sync() -> None:
        calls.append(1)

    global_sync = defined(
        """
        def best_seconds(step, _sync, repeats, clock=time.perf_counter):
            step()
            times = []
            for _ in range(repeats):
                sync(); start = clock(); step(); sync()
                times.append(clock() - start)
            return min(times)
        """,
        sync=sync,
    )
    assert "argument" in rejected(checks.best_seconds, global_sync)


def test_cheat_05_e1_reading_the_fake_device():
    # The device behind the closures: its expected answer, or its list of step durations.
    ask_it = defined(
        """
        def best_seconds(step, sync, repeats, clock=time.perf_counter):
            return step.__self__.expected()
        """
    )
    assert "raised" in rejected(checks.best_seconds, ask_it)

    def durations_of(step):
        for cell in step.__closure__ or ():
            value = cell.cell_contents
            if isinstance(value, tuple) and value and isinstance(value[0], float):
                return value
        raise LookupError("no durations")

    read_cells = defined(
        """
        def best_seconds(step, sync, repeats, clock=time.perf_counter):
            step(); sync()
            for _ in range(repeats):
                start = clock(); step(); sync(); clock()
            return min(durations_of(step)[1:])
        """,
        durations_of=durations_of,
    )
    assert "measured" in rejected(checks.best_seconds, read_cells)
    # Switching the watch off: reported whatever it is followed by.
    switch_off = defined(
        """
        def best_seconds(step, sync, repeats, clock=time.perf_counter):
            import sys
            sys.setprofile(None)
            step(); sync()
            times = []
            for _ in range(repeats):
                start = clock(); step(); sync()
                times.append(clock() - start)
            return min(times)
        """
    )
    assert "sys.setprofile" in rejected(checks.best_seconds, switch_off)


# Exercise 2: microseconds_per_image (build)


def test_05_e2_solution_accepted():
    accepted(checks.microseconds_per_image, solution(2, "microseconds_per_image"))


def test_05_e2_placeholder_rejected():
    assert "no answer yet" in rejected(
        checks.microseconds_per_image, placeholder(2, "microseconds_per_image")
    )
    rejected(checks.microseconds_per_image, None)


def test_cheat_05_e2():
    # The value the notebook printed, copied; and the notebook's own measurement, read from its globals.
    rejected(checks.microseconds_per_image, lambda seconds, n_batches, batch_size: 23.4)
    from_globals = defined(
        """
        def microseconds_per_image(seconds, n_batches, batch_size):
            return 1e6 / rates["torchvision"]
        """,
        rates={"torchvision": 42_000.0},
    )
    rejected(checks.microseconds_per_image, from_globals)

    # Measuring again with the notebook's helper instead of computing from the arguments.
    def loader_seconds(loader, n_batches):
        return 0.5, 640

    measuring = defined(
        """
        def microseconds_per_image(seconds, n_batches, batch_size):
            s, n = loader_seconds(None, n_batches)
            return s / n * 1e6
        """,
        loader_seconds=loader_seconds,
    )
    assert "measure" in rejected(checks.microseconds_per_image, measuring)
    # Half understood: per image, but in seconds; per batch, in µs.
    assert "microseconds" in rejected(checks.microseconds_per_image, lambda s, n, b: s / (n * b))
    rejected(checks.microseconds_per_image, lambda s, n, b: s / n * 1e6)


def _tabulated(check, right):
    """An answer that remembers every case one run of ``check`` asked, then answers only those."""
    table = {}

    def remember(*args, **kwargs):
        key = repr((args, sorted(kwargs.items())))
        table[key] = right(*args, **kwargs)
        return table[key]

    accepted(check, remember)
    known = dict(table)
    return lambda *args, **kwargs: known.get(repr((args, sorted(kwargs.items()))), 0)


def test_cheat_05_e2_table_of_the_hidden_cases():
    # The hidden cases are drawn anew on every run: a table of one run's answers fails the next grading.
    table = _tabulated(checks.microseconds_per_image, solution(2, "microseconds_per_image"))
    accepted_visible = checks.microseconds_per_image(table)  # the visible cases are fixed...
    assert accepted_visible
    with pytest.raises(AssertionError):  # ...the graded ones are not
        checks.grade(checks.microseconds_per_image, table)


# Exercise 3: fastest_setting (build)


def test_05_e3_solution_accepted():
    accepted(checks.fastest_setting, solution(3, "fastest_setting"))


def test_05_e3_placeholder_rejected():
    assert "no answer yet" in rejected(checks.fastest_setting, placeholder(3, "fastest_setting"))


def test_cheat_05_e3():
    # The notebook's one-liner for the threads, without the noise margin.
    line = rejected(checks.fastest_setting, lambda rates, margin=0.05: max(rates, key=rates.get))
    assert "None" in line
    # A batch size read off the notebook's printed table.
    rejected(checks.fastest_setting, lambda rates, margin=0.05: 128)
    # The rate instead of the setting.
    assert "key" in rejected(checks.fastest_setting, lambda rates, margin=0.05: max(rates.values()))
    # The first key above the margin rather than the fastest.
    first = defined(
        """
        def fastest_setting(rates, margin=0.05):
            keys = list(rates)
            if len(keys) > 1 and rates[keys[0]] <= (1 + margin) * rates[keys[1]]:
                return None
            return keys[0]
        """
    )
    rejected(checks.fastest_setting, first)

    # Measuring again with the notebook's helper.
    def compare_rates(settings):
        return {name: 1.0 for name in settings}

    measuring = defined(
        """
        def fastest_setting(rates, margin=0.05):
            again = compare_rates({k: {} for k in rates})
            return max(rates, key=rates.get)
        """,
        compare_rates=compare_rates,
    )
    assert "measure" in rejected(checks.fastest_setting, measuring)
    # Right answers, but the caller's table is emptied on the way.
    destructive = defined(
        """
        def fastest_setting(rates, margin=0.05):
            ranked = sorted(rates, key=rates.get, reverse=True)
            best = rates.pop(ranked[0])
            if rates and best <= (1 + margin) * rates[ranked[1]]:
                return None
            return ranked[0]
        """
    )
    assert "changing" in rejected(checks.fastest_setting, destructive)


def test_05_e3_numpy_keys_accepted():
    # A right answer whose key is a NumPy integer (np.argmax over a list of batch sizes) equals the key.
    import numpy as np

    right = solution(3, "fastest_setting")

    def as_numpy(rates, margin=0.05):
        result = right(rates, margin=margin)
        return np.int64(result) if isinstance(result, int) and not isinstance(result, bool) else result

    accepted(checks.fastest_setting, as_numpy)


def np_int(value):
    import numpy as np

    return np.int64(value)


def test_cheat_05_e3_table_of_the_hidden_cases():
    right = solution(3, "fastest_setting")
    table = {}

    def remember(rates, margin=0.05):
        table[repr((sorted(rates.items(), key=repr), margin))] = right(rates, margin=margin)
        return right(rates, margin=margin)

    accepted(checks.fastest_setting, remember)
    known = dict(table)

    def from_table(rates, margin=0.05):
        return known.get(repr((sorted(rates.items(), key=repr), margin)), "?")

    assert checks.fastest_setting(from_table)  # the visible tables are fixed...
    with pytest.raises(AssertionError):  # ...the graded ones are new on every run
        checks.grade(checks.fastest_setting, from_table)
    # A bool is no key, even where True == 1.
    assert not checks._is_setting(True, 1, {1: 2.0, 2: 1.0})
    assert checks._is_setting(np_int(1), 1, {1: 2.0, 2: 1.0})


# Exercise 4: optimizer_steps (build)


def test_05_e4_solution_accepted():
    accepted(checks.optimizer_steps, solution(4, "optimizer_steps"))


def test_05_e4_placeholder_rejected():
    assert "no answer yet" in rejected(checks.optimizer_steps, placeholder(4, "optimizer_steps"))


def test_cheat_05_e4():
    # The number for the notebook's run (2 epochs of 60,000 at batch 128), typed in.
    rejected(checks.optimizer_steps, lambda n_images, batch_size, epochs, drop_last=False: 938)

    # Asking a loader, the lesson's own way of counting, instead of doing the arithmetic.
    def by_loader(n_images, batch_size, epochs, drop_last=False):
        images = torch.zeros(n_images, 1, 1, 1, dtype=torch.uint8)
        loader = TensorLoader(
            images, torch.zeros(n_images, dtype=torch.long), batch_size=batch_size, drop_last=drop_last
        )
        return epochs * len(loader)

    assert "loader" in rejected(checks.optimizer_steps, by_loader)

    # Half understood: the leftover batch always kept, or always dropped; or a fraction of a step.
    def ceil_only(n_images, batch_size, epochs, drop_last=False):
        return epochs * math.ceil(n_images / batch_size)

    assert "drop_last" in rejected(checks.optimizer_steps, ceil_only)
    assert "left over" in rejected(checks.optimizer_steps, lambda n, b, e, drop_last=False: e * (n // b))
    assert "fraction" in rejected(checks.optimizer_steps, lambda n, b, e, drop_last=False: e * n / b)


def test_cheat_05_e4_batch_sampler_and_tables():
    from torch.utils.data import BatchSampler, DataLoader

    def by_sampler(n_images, batch_size, epochs, drop_last=False):
        return epochs * sum(1 for _ in BatchSampler(range(n_images), batch_size, drop_last))

    def by_data_loader(n_images, batch_size, epochs, drop_last=False):
        loader = DataLoader(range(n_images), batch_size=batch_size, drop_last=drop_last)
        return epochs * sum(1 for _ in loader)

    for cheat in (by_sampler, by_data_loader):
        assert "loader" in rejected(checks.optimizer_steps, cheat)
    table = _tabulated(checks.optimizer_steps, solution(4, "optimizer_steps"))
    assert checks.optimizer_steps(table)
    with pytest.raises(AssertionError):
        checks.grade(checks.optimizer_steps, table)


def test_checks_print_no_expected_value(capsys):
    # A wrong answer's hint points at the idea, never at the number the check expected.
    checks.optimizer_steps(lambda n, b, e, drop_last=False: e * (n // b))
    out = capsys.readouterr().out
    assert not any(
        str(v) in out for v in (1563, 1560, 521)
    )  # 3 epochs of 50,000 at 96: kept, dropped; per epoch
