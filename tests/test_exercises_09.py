"""Tests for lesson 09's exercise checks (course_machinery/checks/lesson09.py), on the notebook's own answers.

Each exercise's solution is taken from the teacher's edition (notebooks/09_scaling_out.ipynb) and its placeholder
from the same cell with nbgrader's replacement applied, so these tests follow the notebook. The checks of
Exercises 4 and 5 start 3 processes with torchrun (``course_machinery.launch``: a hard time limit, every process
stopped); those tests are marked slow and also assert that no process outlived the check.
"""

from __future__ import annotations

import linecache
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
import torch
import torch.distributed as dist
from support.exercises import accepted, answer_source, in_ipython, rejected

from course_machinery.checks import lesson09 as checks

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "09_scaling_out.ipynb"
TORCHRUN = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="this torch build has no torch.distributed with the gloo backend, which torchrun on CPUs needs",
)


def answer(k: int, *, student: bool = False) -> str:
    """The source of Exercise k's answer cell, as the teacher's edition holds it or as the student edition does."""
    return answer_source(f"09-e{k}-answer", student=student)


def defined(source: str, name: str) -> Any:
    """``name`` after running a cell's ``source`` (torch imported, as in the notebook)."""
    namespace: dict[str, Any] = {"torch": torch, "nn": torch.nn}
    filename = f"<exercise cell: {name}, {hash(source)}>"
    linecache.cache[filename] = (
        len(source),
        None,
        source.splitlines(True),
        filename,
    )  # as IPython keeps cells
    exec(compile(source, filename, "exec"), namespace)
    return namespace[name]


def written(source: str, folder: Path, name: str) -> Path:
    """The file a ``%%writefile {WORK}/name`` cell writes, written into ``folder``."""
    first, _, body = source.partition("\n")
    assert first == f"%%writefile {{WORK}}/{name}", first
    path = folder / name
    path.write_text(body + "\n", encoding="utf-8")
    return path


def _running(marker: Path) -> list[int]:
    """Processes (zombies excluded) whose command line names ``marker``: none may outlive a check's launch."""
    if not sys.platform.startswith("linux"):
        return []
    found = []
    for entry in Path("/proc").iterdir():
        try:
            alive = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
            if entry.name.isdigit() and alive and str(marker) in (entry / "cmdline").read_text():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.fixture(autouse=True)
def fresh_hints():
    """Exercise 2's check counts the different wrong predictions of a kernel: each test starts a kernel afresh."""
    checks._WRONG_PREDICTIONS.clear()
    yield
    checks._WRONG_PREDICTIONS.clear()


def test_the_student_edition_keeps_every_name_the_checks_use():
    for k, names in {1: ["scaled_setting"], 3: ["train_accumulated"]}.items():
        for name in names:
            assert callable(defined(answer(k, student=True), name))
    assert "### BEGIN SOLUTION" not in answer(5, student=True) and "def log_mean_loss" in answer(
        5, student=True
    )


# ---------------------------------------------------------------------------------------------------------
# Exercise 1: scaled_setting
# ---------------------------------------------------------------------------------------------------------
def test_01_solution_and_placeholder():
    line = accepted(checks.scaled_setting, defined(answer(1), "scaled_setting"))
    assert "0.2" not in line and "512" not in line
    rejected(checks.scaled_setting, defined(answer(1, student=True), "scaled_setting"))
    rejected(checks.scaled_setting, None)


def test_cheat_09_e1():
    copied = rejected(
        checks.scaled_setting, lambda **s: (512, 0.2)
    )  # the notebook's example, worked out once
    assert "one process's batch" not in copied
    square_root = rejected(
        checks.scaled_setting,
        lambda **s: (
            (b := s["processes"] * s["batch_per_process"] * s["accumulation"]),
            s["base_lr"] * (b / s["base_batch"]) ** 0.5,
        ),
    )
    assert "square-root" in square_root
    no_accumulation = rejected(
        checks.scaled_setting, lambda **s: (s["processes"] * s["batch_per_process"], 0.1)
    )
    assert "accumulated" in no_accumulation


# ---------------------------------------------------------------------------------------------------------
# Exercise 2: predict_collectives (typed in, checked before any cell shows the collectives at work)
# ---------------------------------------------------------------------------------------------------------
CHECK_2 = "from course_machinery.checks import lesson09 as checks\n"
VISIBLE_2 = CHECK_2 + "checks.predict_collectives(after_all_reduce, after_all_gather, after_broadcast)"
GRADED_2 = (
    CHECK_2 + "checks.grade(checks.predict_collectives, after_all_reduce, after_all_gather, after_broadcast)"
)


def test_02_solution_and_placeholder():
    solution = {n: defined(answer(2), n) for n in ("after_all_reduce", "after_all_gather", "after_broadcast")}
    accepted(checks.predict_collectives, *solution.values())
    assert in_ipython(answer(2), VISIBLE_2).startswith("✅")
    in_ipython(answer(2), GRADED_2)  # the hidden test passes: raises nothing
    student = {n: defined(answer(2, student=True), n) for n in solution}
    assert set(map(type, student.values())) == {type(None)}
    rejected(checks.predict_collectives, *student.values())


def test_02_exercise_comes_before_the_run_that_shows_the_collectives():
    cells = nbformat.read(NOTEBOOK, as_version=4).cells
    check = next(
        i for i, c in enumerate(cells) if c.metadata.get("nbgrader", {}).get("grade_id") == "09-e2-check"
    )
    run = next(i for i, c in enumerate(cells) if c.cell_type == "code" and '"collectives.py"' in c.source)
    assert check < run


def test_cheat_09_e2():
    computed = (
        "start = [2.0 * r + 1 for r in range(4)]\n"
        "after_all_reduce = sum(start)\nafter_all_gather = start\nafter_broadcast = start[2]\n"
    )
    assert in_ipython(computed, VISIBLE_2).startswith("❌")
    with pytest.raises(AssertionError):
        in_ipython(computed, GRADED_2)
    mean = rejected(checks.predict_collectives, 4.0, [1, 3, 5, 7], 5)
    assert "mean" in mean
    rejected(checks.predict_collectives, 16, [7, 5, 3, 1], 5)  # not in rank order
    assert "src" in rejected(checks.predict_collectives, 16, [1, 3, 5, 7], 1)  # broadcast from process 0


WAYS_OF_COMPUTING = {
    "tuple unpacked": (
        "start = [2.0 * r + 1 for r in range(4)]\n"
        "after_all_reduce, after_all_gather, after_broadcast = sum(start), start, start[2]\n"
    ),
    "an if-block": (
        "after_all_reduce, after_all_gather, after_broadcast = 0, [0, 0, 0, 0], 0\n"
        "if True:\n    after_all_reduce = sum(2 * r + 1 for r in range(4))\n"
        "    after_all_gather = [2 * r + 1 for r in range(4)]\n    after_broadcast = 2 * 2 + 1\n"
    ),
    "globals().update": (
        "start = [2 * r + 1 for r in range(4)]\n"
        "globals().update(after_all_reduce=sum(start), after_all_gather=start, after_broadcast=start[2])\n"
    ),
    "a for-loop": (
        "after_all_gather = []\nfor r in range(4):\n    after_all_gather = after_all_gather + [2 * r + 1]\n"
        "for after_all_reduce in [sum(after_all_gather)]:\n    pass\n"
        "for after_broadcast in after_all_gather[2:3]:\n    pass\n"
    ),
}


@pytest.mark.parametrize("way", sorted(WAYS_OF_COMPUTING))
def test_cheat_09_e2_computed_answers(way):
    cell = WAYS_OF_COMPUTING[way]
    assert in_ipython(cell, VISIBLE_2).startswith("❌ Not yet: type each prediction")
    with pytest.raises(AssertionError):
        in_ipython(cell, GRADED_2)


def test_e2_arithmetic_typed_by_hand_is_accepted():
    typed = "after_all_reduce = 1 + 3 + 5 + 7\nafter_all_gather = [1, 3, 5, 7]\nafter_broadcast = 2 * 2 + 1\n"
    assert in_ipython(typed, VISIBLE_2).startswith("✅")
    in_ipython(typed, GRADED_2)  # raises nothing


def test_cheat_09_e2_the_check_is_no_oracle():
    # A loop that hands the check other values than its answer's names hold learns nothing from it...
    typed = "after_all_reduce = 0\nafter_all_gather = [1, 3, 5, 7]\nafter_broadcast = 5\n"
    search = (
        "from course_machinery.checks import lesson09 as checks\n"
        "for guess in range(1, 21):\n    checks.predict_collectives(guess, after_all_gather, after_broadcast)\n"
    )
    lines = in_ipython(typed, search).splitlines()
    assert len(lines) == 20 and all(line.startswith("❌ Not yet: type each prediction") for line in lines)
    # ...and after a few different wrong predictions, typed by hand, the hints stop telling them apart.
    checks._WRONG_PREDICTIONS.clear()
    first = [rejected(checks.predict_collectives, a, [1, 3, 5, 7], 5) for a in (4.0, 5, 1)]
    assert "mean" in first[0]
    later = {rejected(checks.predict_collectives, a, [1, 3, 5, 7], 5) for a in (6, 16.5, 17, 2)}
    assert len(later) == 1 and "mean" not in later.pop()


# ---------------------------------------------------------------------------------------------------------
# Exercise 3: train_accumulated
# ---------------------------------------------------------------------------------------------------------
def test_03_solution_and_placeholder():
    accepted(checks.train_accumulated, defined(answer(3), "train_accumulated"), device="cpu")
    line = rejected(
        checks.train_accumulated, defined(answer(3, student=True), "train_accumulated"), device="cpu"
    )
    assert "no answer yet" in line


def _whole_batch(
    model, loader, optimizer, loss_fn, accum_steps
):  # the big batch's update, without accumulating
    model.train()
    for images, labels in loader:
        optimizer.zero_grad()
        loss_fn(model(images), labels).backward()
        optimizer.step()


def _unscaled(model, loader, optimizer, loss_fn, accum_steps):
    model.train()
    for images, labels in loader:
        optimizer.zero_grad()
        for x, y in zip(images.chunk(accum_steps), labels.chunk(accum_steps), strict=True):
            loss_fn(model(x), y).backward()
        optimizer.step()


def _step_each(model, loader, optimizer, loss_fn, accum_steps):
    model.train()
    for images, labels in loader:
        for x, y in zip(images.chunk(accum_steps), labels.chunk(accum_steps), strict=True):
            optimizer.zero_grad()
            (loss_fn(model(x), y) / accum_steps).backward()
            optimizer.step()


def _counted_then_eval(model, loader, optimizer, loss_fn, accum_steps):
    for images, labels in loader:
        model.train()
        model(images[:1])  # a tiny pass in training mode...
        model.eval()  # ...then the whole batch where a counter of training passes would not look
        optimizer.zero_grad()
        loss_fn(model(images), labels).backward()
        optimizer.step()


def _past_the_first_layer(model, loader, optimizer, loss_fn, accum_steps):
    model.train()
    for images, labels in loader:
        model(images[:1])
        optimizer.zero_grad()
        loss_fn(
            model[1:](images.flatten(1)), labels
        ).backward()  # the layers after the first, the whole batch
        optimizer.step()


def _by_hand(model, loader, optimizer, loss_fn, accum_steps):
    model.train()
    for images, labels in loader:
        model(
            images[:1]
        )  # a tiny pass that layers see, then the model's weights used by hand, out of their sight
        optimizer.zero_grad()
        hidden = torch.tanh(torch.nn.functional.linear(images.flatten(1), model[1].weight, model[1].bias))
        loss_fn(torch.nn.functional.linear(hidden, model[3].weight, model[3].bias), labels).backward()
        optimizer.step()


def test_cheat_09_e3():
    assert "whole batch at once" in rejected(checks.train_accumulated, _whole_batch, device="cpu")
    assert "scaling" in rejected(checks.train_accumulated, _unscaled, device="cpu")
    assert "per micro-batch" in rejected(checks.train_accumulated, _step_each, device="cpu")
    assert "whole batch at once" in rejected(checks.train_accumulated, _counted_then_eval, device="cpu")
    assert "whole batch at once" in rejected(checks.train_accumulated, _past_the_first_layer, device="cpu")
    assert "each image once" in rejected(checks.train_accumulated, _by_hand, device="cpu")


# ---------------------------------------------------------------------------------------------------------
# Exercise 4: average_gradients, in 3 processes next to DDP
# ---------------------------------------------------------------------------------------------------------
def test_04_placeholder_and_missing_file_start_no_process(tmp_path):
    assert "no answer yet" in rejected(
        checks.average_gradients, written(answer(4, student=True), tmp_path, "average_gradients.py")
    )
    assert "run the exercise's cell" in rejected(checks.average_gradients, tmp_path / "nothing.py")
    rejected(checks.average_gradients, None)


PATCHES = {  # an answer file that patches or reads the check's worker, refused before any process starts
    "patches the worker": (
        "import sys\n"
        'sys.modules["__main__"]._average_trial = lambda average, t: {"grads": [], "weights": []}\n'
    ),
    "reads DDP's gradients": (
        'import sys\n\n\ndef _reference():\n    return sys._getframe(2).f_locals["reference"]\n'
    ),
    "looks through the garbage collector": "import gc\n",
}


@pytest.mark.parametrize("patch", sorted(PATCHES))
def test_cheat_09_e4_the_file_leaves_the_worker_alone(tmp_path, patch):
    path = written(answer(4), tmp_path, "average_gradients.py")
    path.write_text(PATCHES[patch] + path.read_text())
    assert "reaches into the program" in rejected(checks.average_gradients, path)
    assert not _running(tmp_path)
    mean_loss = written(answer(5), tmp_path, "mean_loss.py")
    mean_loss.write_text(PATCHES[patch] + mean_loss.read_text())
    assert "reaches into the program" in rejected(checks.log_mean_loss, mean_loss)


def test_e4_comments_may_name_anything(tmp_path):
    assert checks._meddling("x = 1  # not sys._getframe, nor gc.collect()\n") is None
    assert checks._meddling('getattr(sys, "_getframe")\n') == "_getframe"


@TORCHRUN
@pytest.mark.slow  # starts 3 processes (10-40 s on a busy 2-core machine)
def test_04_solution_matches_ddp(tmp_path):
    path = written(answer(4), tmp_path, "average_gradients.py")
    assert "DistributedDataParallel" in accepted(checks.average_gradients, path)
    assert not _running(tmp_path), "a process of the check's launch outlived it"


@TORCHRUN
@pytest.mark.slow  # starts 3 processes (10-40 s on a busy 2-core machine)
def test_cheat_09_e4(tmp_path):
    # The notebook's runs use 2 processes: a mean that divides by 2 passes there, not in the check's 3.
    two = answer(4).replace("param.grad /= world_size", "param.grad /= 2")
    assert two != answer(4)
    line = rejected(checks.average_gradients, written(two, tmp_path, "average_gradients.py"))
    assert "how many" in line
    # The worker itself, patched in a way no scan of the source names: its functions were bound before the
    # file ran, and the change is seen.
    patch = (
        "import sys as _s\n"
        '_main = getattr(_s, "mod" + "ules")["__" + "main__"]\n'
        '_main._average_trial = lambda average, t: {"grads": [], "weights": [], "weights_changed": False}\n'
    )
    patched = tmp_path / "patched.py"
    patched.write_text(patch + answer(4).partition("\n")[2], encoding="utf-8")
    assert "changes the code of the check" in rejected(checks.average_gradients, patched)
    assert not _running(tmp_path), "a process of the check's launch outlived it"


# ---------------------------------------------------------------------------------------------------------
# Exercise 5: log_mean_loss, repaired, in 3 processes
# ---------------------------------------------------------------------------------------------------------
def test_05_the_broken_function_is_recognised_without_starting_processes(tmp_path):
    line = rejected(checks.log_mean_loss, written(answer(5, student=True), tmp_path, "mean_loss.py"))
    assert "still the broken one" in line


@TORCHRUN
@pytest.mark.slow  # starts 3 processes (10-40 s on a busy 2-core machine)
def test_05_solution_lets_every_process_go_on(tmp_path):
    accepted(checks.log_mean_loss, written(answer(5), tmp_path, "mean_loss.py"))
    assert not _running(tmp_path), "a process of the check's launch outlived it"


BROKEN = answer(5, student=True).split("# YOUR CODE HERE")[0]


@TORCHRUN
@pytest.mark.slow  # starts 3 processes twice (10-40 s each on a busy 2-core machine)
def test_cheat_09_e5(tmp_path):
    # No more hang, but every process prints its line: the "fix" of removing the `if`.
    everyone = BROKEN.replace(
        "    if rank == 0:  # process 0 reports the mean loss of all processes\n", "    if True:\n"
    )
    assert everyone != BROKEN
    assert everyone != BROKEN
    assert "only process 0" in rejected(checks.log_mean_loss, written(everyone, tmp_path, "mean_loss.py"))
    # No more hang, but no collective either: process 0 divides its own loss alone.
    alone = BROKEN.replace("        dist.all_reduce(loss)", "        pass")
    assert alone != BROKEN
    assert "mean" in rejected(checks.log_mean_loss, written(alone, tmp_path, "mean_loss.py"))
    # Every candidate printed at once (the sum, each process's own, the mean): one of them is right.
    candidates = answer(5).replace(
        'print(f"mean loss {loss.item() / dist.get_world_size():.3f}", flush=True)',
        'print(*(f"{loss.item() / n:.3f}" for n in range(1, 5)), flush=True)',
    )
    assert candidates != answer(5)
    assert "one number" in rejected(checks.log_mean_loss, written(candidates, tmp_path, "mean_loss.py"))
    assert not _running(tmp_path), "a process of the check's launch outlived it"
