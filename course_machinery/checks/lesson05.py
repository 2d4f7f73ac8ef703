"""Checks for lesson 05 (making training fast): a timing helper, microseconds per image, the fastest setting
and the number of optimizer steps, each judged on inputs the check chooses."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from typing import Any

import torch

from course_utils.data import TensorLoader

from ._feedback import NOT_YET, Verdict, failed, grade, number, passed, raised, same, unanswered, watch_calls

__all__ = ["grade", "best_seconds", "microseconds_per_image", "fastest_setting", "optimizer_steps"]

# The notebook's own measuring helpers: an exercise computes from its arguments and never measures again.
_LESSON_HELPERS = ("rate_meter", "train_rate", "compare_rates", "loader_seconds", "new_training", "take")


def _lesson_helpers(fn: Any, names: tuple[str, ...] = _LESSON_HELPERS) -> dict[str, Any]:
    """The notebook's functions among ``names``, found in the namespace the learner's function was defined in."""
    found = getattr(fn, "__globals__", {})
    return {name: found[name] for name in names if callable(found.get(name))}


def _is_helper(fn: Any, helpers: dict[str, Any]) -> str | None:
    """The name of the lesson's helper that ``fn`` is (by identity or by its code), or None."""
    code = getattr(fn, "__code__", None)
    for name, helper in helpers.items():
        if fn is helper or (code is not None and code is getattr(helper, "__code__", None)):
            return name
    return None


# ---------------------------------------------------------------------------------------------------------
# Exercise 1 (fix): a timing helper that warms up, synchronises and keeps the fastest run.


def _fresh_rng() -> random.Random:
    """A generator seeded anew on every run (from the operating system): hidden cases no table can list."""
    return random.Random(random.SystemRandom().getrandbits(64))


class _FakeDevice:
    """An asynchronous device with its own clock: ``step`` only launches work, ``sync`` waits for it to finish.

    The first step is a slow warm-up; each later step takes its own (check-chosen) time, so the expected result,
    the fastest of the timed steps, is known exactly. The learner gets three closures (``handles``), not this
    object's methods, and its answer must be the difference of two clock readings it was handed.
    """

    def __init__(self, rng: random.Random, repeats: int) -> None:
        base = rng.uniform(0.002, 0.05)  # seconds of work of one step
        launch = base / 50  # the clock advances this much while a step is launched
        durations = [base * rng.uniform(5, 10)]  # the warm-up step: allocations, kernel selection
        timed = [base * rng.uniform(1.0, 1.6) for _ in range(repeats)]
        if repeats >= 3:  # the fastest neither first nor last, so neither of them alone is the answer
            fastest = min(range(repeats), key=timed.__getitem__)
            where = rng.randrange(1, repeats - 1)
            timed[fastest], timed[where] = timed[where], timed[fastest]
        durations += timed
        self.launch, self.durations = (
            launch,
            tuple(durations),
        )  # the check's copy; the closures hold their own
        self.readings: list[float] = []
        self.steps = self.syncs = 0
        work = tuple(durations)
        state = [rng.uniform(100.0, 1000.0), 0.0]  # now, busy_until
        counts = [0, 0]  # steps, syncs
        readings = self.readings

        def clock() -> float:
            readings.append(state[0])
            return state[0]

        def step() -> None:
            state[1] = (
                max(state[1], state[0]) + work[min(counts[0], len(work) - 1)]
            )  # queued behind earlier work
            state[0] += launch  # the call returns as soon as the work is launched
            counts[0] += 1

        def sync() -> None:
            counts[1] += 1
            state[0] = max(state[0], state[1])

        self._counts = counts
        self.handles = (step, sync, clock)

    def finish(self) -> None:
        """Read the counts the closures kept, once the learner's function has returned."""
        self.steps, self.syncs = self._counts
        self.clock_reads = len(self.readings)

    def read_differences(self) -> set[float]:
        """Every difference of two clock readings, later minus earlier: what a measured time can be."""
        r = self.readings[:2000]
        return {b - a for i, a in enumerate(r) for b in r[i + 1 :]}

    def expected(self) -> float:
        return min(self.durations[1:])

    def without_first_sync(self) -> float:
        # What a helper that does not wait for the warm-up before starting the clock measures on the first call.
        first = self.durations[0] - self.launch + self.durations[1]
        return min([first, *self.durations[2:]])

    def mean(self) -> float:
        timed = self.durations[1:]
        return sum(timed) / len(timed)


def _timing_cases(hidden: bool) -> Iterator[tuple[random.Random, int]]:
    yield random.Random(5), 3
    yield random.Random(17), 1  # one timed call: the warm-up's work must not leak into it
    if hidden:
        rng = _fresh_rng()
        for _ in range(8):
            yield random.Random(rng.getrandbits(64)), rng.choice([1, 2, 4, 5, 7])


def best_seconds(fn: Callable[..., Any], *, hidden: bool = False) -> Verdict:
    """Exercise 1: ``fn(step, sync, repeats, clock)`` returns the seconds of one ``step()``: one untimed warm-up
    call, then ``repeats`` calls timed one by one between ``sync()`` calls, and the fastest of them."""
    if unanswered(fn):
        return NOT_YET
    helpers = _lesson_helpers(fn, (*_LESSON_HELPERS, "sync"))
    if name := _is_helper(fn, helpers):
        return failed(f"this is the notebook's {name}; repair best_seconds itself.")
    notebook_sync = helpers.pop("sync", None)
    for rng, repeats in _timing_cases(hidden):
        device = _FakeDevice(rng, repeats)
        step, sync, clock = device.handles
        targets = {**helpers, **({"the notebook's sync": notebook_sync} if notebook_sync else {})}
        try:
            with watch_calls(targets) as seen:
                result = fn(step, sync, repeats, clock=clock)
        except Exception as exc:  # noqa: BLE001  # the learner's error, reported as one line
            return raised(exc)
        device.finish()
        if "the notebook's sync" in seen:
            return failed(
                "call the sync you were given (the argument): the notebook's own sync() waits for another device."
            )
        if seen - set(targets):
            return failed(
                f"your function calls {', '.join(sorted(seen - set(targets)))}: time step() with the clock, "
                "without inspecting or switching off the check that runs it."
            )
        if seen:
            return failed("time step() itself with the clock; don't run the notebook's measurements.")
        if unanswered(result):
            return NOT_YET
        value = number(result)
        if value is None:
            return failed("return the seconds of one step as a number.")
        if device.clock_reads == 0:
            return failed(
                "read the time with the clock argument (time.perf_counter unless a test passes another)."
            )
        if device.steps == repeats:
            return failed(
                "call step() once before any timing, untimed: the first call is a warm-up and is slow."
            )
        if device.steps != repeats + 1:
            return failed("call step() once to warm up, then once for each of the `repeats` timed calls.")
        if same(value, device.expected()):
            if value not in device.read_differences():
                return failed(
                    "return a time you measured: the difference of two readings of the clock you were given, "
                    "not a number worked out another way."
                )
            continue
        if device.syncs == 0 or value < min(device.durations[1:]):
            return failed(
                "the clock stopped before the work was done: step() only launches it, so call sync() before "
                "reading the clock."
            )
        if same(value, device.without_first_sync()):
            return failed(
                "the warm-up's work was still running when the clock started: call sync() before starting it too."
            )
        if same(value, device.mean()) and repeats > 1:
            return failed(
                "keep the fastest timed call, not the average: other programs can only slow a run down."
            )
        return failed(
            "time each call on its own (sync, read the clock, step, sync, read the clock) and keep the fastest."
        )
    return passed("warm-up discarded, every timed call synchronised, and the fastest one kept.")


# ---------------------------------------------------------------------------------------------------------
# Exercise 2 (build): microseconds per image from a measured time.


def _per_image_cases(hidden: bool) -> Iterator[tuple[float, int, int]]:
    yield 0.8137, 37, 48
    yield 2.5, 12, 100
    if hidden:
        rng = _fresh_rng()
        for _ in range(10):
            yield rng.uniform(1e-3, 30.0), rng.randint(1, 500), rng.choice([1, 16, 32, 100, 256, 1000])


def microseconds_per_image(fn: Callable[..., Any], *, hidden: bool = False) -> Verdict:
    """Exercise 2: ``fn(seconds, n_batches, batch_size)`` returns microseconds per image."""
    if unanswered(fn):
        return NOT_YET
    helpers = _lesson_helpers(fn)
    if name := _is_helper(fn, helpers):
        return failed(f"this is the notebook's {name}; write microseconds_per_image itself.")
    for seconds, n_batches, batch_size in _per_image_cases(hidden):
        try:
            with watch_calls(helpers) as seen:
                result = fn(seconds, n_batches, batch_size)
        except Exception as exc:  # noqa: BLE001
            return raised(exc)
        if seen:
            return failed("compute from the three arguments; don't measure the loaders again.")
        if unanswered(result):
            return NOT_YET
        value = number(result)
        if value is None:
            return failed("return the microseconds as a number.")
        n_images = n_batches * batch_size
        expected = seconds / n_images * 1e6
        if same(value, expected):
            continue
        if same(value, seconds / n_images) or same(value, seconds / n_images * 1e3):
            return failed("that is per image, but not in microseconds: 1 s is 1,000,000 µs.")
        if same(value, seconds / n_batches * 1e6) or same(value, seconds / batch_size * 1e6):
            return failed(
                "the time covers n_batches batches of batch_size images each: divide by all of them."
            )
        if same(value, n_images / seconds):
            return failed(
                "that is a rate (images per second); the exercise asks for the time one image takes."
            )
        return failed(
            "use the arguments: the measured seconds, divided by the number of images they covered, in µs."
        )
    return passed("seconds per image, in microseconds, for any measurement.")


# ---------------------------------------------------------------------------------------------------------
# Exercise 3 (build): the fastest setting, or None when the lead is within the noise.


def _rates_table(rng: random.Random, keys: list[Any], margin: float, clear: bool) -> dict[Any, float]:
    """Images/s per setting: the winner (not first, not last where possible) leads the runner-up by clearly more
    than ``margin`` when ``clear``, by clearly less otherwise."""
    runner_up = rng.uniform(500.0, 20_000.0)
    if clear:
        lead = 1 + margin + max(margin, 0.04) * rng.uniform(0.5, 3.0)
    else:
        lead = 1 + margin * rng.uniform(0.0, 0.6) if margin > 0 else 1.0  # margin 0: a tie is no winner
    rates = [runner_up * lead, runner_up] + [runner_up * rng.uniform(0.3, 0.97) for _ in keys[2:]]
    order = list(range(len(keys)))
    rng.shuffle(order)
    if len(keys) >= 3:  # the winner in the middle: neither the first nor the last key
        where = order.index(0)
        order[where], order[1] = order[1], order[where]
    return {keys[i]: rates[order[i]] for i in range(len(keys))}


def _setting_cases(hidden: bool) -> Iterator[tuple[dict[Any, float], float, Any]]:
    """(rates, margin, expected) tables; the expected answer is computed here, from the table."""
    rng = random.Random(3)
    key_sets = [
        [16, 48, 96, 192, 384],
        [("fp32", "nchw"), ("fp32", "nhwc"), ("bf16", "nchw"), ("bf16", "nhwc")],
        ["adam", "fused adam", "sgd"],
    ]
    plan = [
        (key_sets[0], 0.05, True),
        (key_sets[2], 0.05, False),
        (key_sets[1], 0.2, True),
        ([8], 0.05, True),
    ]
    if hidden:
        rng = _fresh_rng()  # the visible tables are fixed; the hidden ones are new on every run
        for _ in range(16):
            keys = rng.choice(key_sets + [[1, 2], ["a", "b", "c", "d", "e", "f"]])
            plan.append((keys, rng.choice([0.0, 0.02, 0.05, 0.1, 0.3]), rng.random() < 0.6))
        plan.append((key_sets[1], 0.0, False))  # a tie at the top, margin 0: no winner
    for keys, margin, clear in plan:
        rates = _rates_table(rng, list(keys), margin, clear or len(keys) == 1)
        ranked = sorted(rates.values(), reverse=True)
        if len(ranked) > 1 and ranked[0] <= (1 + margin) * ranked[1]:
            expected = None
        else:
            expected = next(key for key, rate in rates.items() if rate == ranked[0])
        yield rates, margin, expected


def _is_setting(result: Any, expected: Any, rates: dict[Any, float]) -> bool:
    """Whether ``result`` is the expected answer: None for no clear winner, else the winning key (in any numeric
    type that equals it, ``np.int64(96)`` for 96, but not a bool, nor a key's rate)."""
    if expected is None or result is None:
        return result is None and expected is None
    if isinstance(result, bool) and not isinstance(expected, bool):
        return False
    try:
        return result in rates and same(result, expected)
    except TypeError:  # an unhashable answer is no key
        return False


def fastest_setting(fn: Callable[..., Any], *, hidden: bool = False) -> Verdict:
    """Exercise 3: ``fn(rates, margin)`` returns the key of ``rates`` with the highest images/s, or None when it
    leads the runner-up by no more than ``margin`` (a fraction)."""
    if unanswered(fn):
        return NOT_YET
    helpers = _lesson_helpers(fn)
    if name := _is_helper(fn, helpers):
        return failed(f"this is the notebook's {name}; write fastest_setting itself.")
    answers = []
    for rates, margin, expected in _setting_cases(hidden):
        table = dict(rates)
        try:
            with watch_calls(helpers) as seen:
                result = fn(table, margin=margin)
        except Exception as exc:  # noqa: BLE001
            return raised(exc)
        if seen:
            return failed("pick from the table you are given; don't measure again.")
        if table != rates:
            return failed("read rates without changing it: the caller still needs its measurements.")
        answers.append((result, expected, rates, margin))
    if all(result is None or result is ... for result, *_ in answers):
        unanswered(None)
        return NOT_YET
    for result, expected, rates, _margin in answers:
        if _is_setting(result, expected, rates):
            continue
        if result is not None and not any(same(result, key) for key in rates):
            return failed("return the setting (a key of rates), not its rate.")
        if len(rates) == 1:
            return failed("with a single setting, that setting is the fastest.")
        if expected is None:
            return failed(
                "when the fastest leads the runner-up by no more than margin, that lead is within the noise: "
                "return None."
            )
        if result is None:
            return failed("a lead larger than margin is a clear winner: return its setting.")
        return failed(
            "the fastest setting is the one with the highest images/s, wherever it sits in the table."
        )
    return passed("the fastest setting when its lead is beyond the noise, None when it is not.")


# ---------------------------------------------------------------------------------------------------------
# Exercise 4 (build): optimizer steps for a run, without building a loader.


def _loader_calls() -> dict[str, Any]:
    return {
        "TensorLoader": TensorLoader.__init__,
        "len(TensorLoader)": TensorLoader.__len__,
        "DataLoader": torch.utils.data.DataLoader.__init__,
        "len(DataLoader)": torch.utils.data.DataLoader.__len__,
        "len(BatchSampler)": torch.utils.data.BatchSampler.__len__,
        "BatchSampler(...)": torch.utils.data.BatchSampler.__init__,
        "iter(BatchSampler)": torch.utils.data.BatchSampler.__iter__,
        "iter(TensorLoader)": TensorLoader.__iter__,
        "iter(DataLoader)": torch.utils.data.DataLoader.__iter__,
    }


def _steps_cases(hidden: bool) -> Iterator[tuple[int, int, int, bool]]:
    yield 50_000, 96, 3, False  # 50,000 = 520 x 96 + 80
    yield 50_000, 96, 3, True
    yield 12_800, 256, 2, False  # an exact multiple: no smaller last batch
    yield 70, 100, 4, True  # fewer images than one batch
    if hidden:
        rng = _fresh_rng()
        for _ in range(20):
            batch_size = rng.choice([1, 7, 32, 100, 128, 500, 1024])
            n_images = rng.choice([batch_size * rng.randint(1, 300), rng.randint(1, 100_000)])
            yield n_images, batch_size, rng.randint(1, 7), rng.random() < 0.5


def optimizer_steps(fn: Callable[..., Any], *, hidden: bool = False) -> Verdict:
    """Exercise 4: ``fn(n_images, batch_size, epochs, drop_last)`` returns the optimizer steps of a run."""
    if unanswered(fn):
        return NOT_YET
    for n_images, batch_size, epochs, drop_last in _steps_cases(hidden):
        try:
            with watch_calls(_loader_calls()) as seen:
                result = fn(n_images, batch_size, epochs, drop_last=drop_last)
        except Exception as exc:  # noqa: BLE001
            return raised(exc)
        if seen:
            return failed(
                "count the batches with arithmetic, without building a loader: a scheduler is created before "
                "any loader runs, and the count is what you are checking."
            )
        if unanswered(result):
            return NOT_YET
        value = number(result)
        if value is None or not math.isfinite(value):
            return failed("return the number of steps as a whole number.")
        if value != int(value):
            return failed("one optimizer step takes a whole batch: there is no fraction of a step.")
        full, rest = divmod(n_images, batch_size)
        expected = epochs * (full if drop_last or rest == 0 else full + 1)
        if value == expected:
            continue
        if rest and not drop_last and value == epochs * full:
            return failed(
                "the images left over after the full batches still form a last, smaller batch: one more step."
            )
        if rest and drop_last and value == epochs * (full + 1):
            return failed("with drop_last=True the last, smaller batch is dropped: it takes no step.")
        if value in (full, full + 1) and epochs > 1:
            return failed("that is one epoch; every epoch takes the same number of steps.")
        return failed("count the batches of one epoch (full ones, and what is left over), then the epochs.")
    return passed("steps per epoch with and without the last, smaller batch, times the epochs.")
