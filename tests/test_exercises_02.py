"""Notebook 02's exercise checks: each accepts the notebook's solution and refuses placeholders and cheating."""

from __future__ import annotations

import inspect
from functools import cache
from pathlib import Path
from typing import Any

import nbformat
import pytest
import torch
import torch.nn.functional as F
from support import exercises
from support.exercises import accepted, in_ipython, rejected
from torch import nn

import course_utils as cu
from course_machinery.checks import lesson02 as checks

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "02_simple_cnn.ipynb"


@cache
def _cells() -> dict[str, str]:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    return {c.metadata["nbgrader"]["grade_id"]: c.source for c in nb.cells if "nbgrader" in c.metadata}


def answer_source(k: int, *, student: bool = False) -> str:
    """Exercise k's answer cell, as stored (teacher) or as nbgrader hands it out (student)."""
    return exercises.answer_source(f"02-e{k}-answer", student=student)


def answer(k: int, name: str, *, student: bool = False) -> Any:
    namespace: dict[str, Any] = {"torch": torch, "nn": nn, "F": F, "cu": cu}
    exec(answer_source(k, student=student), namespace)
    return namespace[name]


def test_cells_follow_the_format():
    cells = _cells()
    assert sorted(cells) == sorted(f"02-e{k}-{part}" for k in range(1, 5) for part in ("answer", "check"))
    for k in range(1, 5):
        assert "### BEGIN SOLUTION" in cells[f"02-e{k}-answer"]
        assert "### BEGIN HIDDEN TESTS" in cells[f"02-e{k}-check"]


# --- Exercise 1: conv_parameters ------------------------------------------------------------------------
def test_02_e1_solution_and_placeholder():
    accepted(checks.conv_parameters, answer(1, "conv_parameters"))
    rejected(checks.conv_parameters, answer(1, "conv_parameters", student=True))


def test_cheat_02_e1():
    def library(in_channels, out_channels, kernel_size, bias=True):
        return cu.count_parameters(nn.Conv2d(in_channels, out_channels, kernel_size, bias=bias))

    def by_hand_on_a_layer(in_channels, out_channels, kernel_size, bias=True):
        layer = nn.Conv2d(in_channels, out_channels, kernel_size, bias=bias)
        return sum(p.numel() for p in layer.parameters())

    line = rejected(checks.conv_parameters, library)
    assert "building a layer" in line
    rejected(checks.conv_parameters, by_hand_on_a_layer)
    rejected(checks.conv_parameters, lambda *args, **kwargs: 18496)  # the value printed in the table
    assert "biases" in rejected(checks.conv_parameters, lambda i, o, k, bias=True: o * i * k * k)
    assert "bias=False" in rejected(checks.conv_parameters, lambda i, o, k, bias=True: o * i * k * k + o)
    rejected(checks.conv_parameters, lambda i, o, k, bias=True: o * i * k + (o if bias else 0))
    # the hidden test tries more layers: one that gets the visible ones right by luck still fails there
    visible = {(i, o, k, b): o * i * k * k + (o if b else 0) for i, o, k, b in checks._CONV_CASES}
    with pytest.raises(AssertionError):
        checks.grade(checks.conv_parameters, lambda i, o, k, bias=True: visible.get((i, o, k, bias), 0))


# --- Exercise 2: predicted_shape ------------------------------------------------------------------------
def test_02_e2_solution_and_placeholder():
    accepted(checks.predicted_shape, answer(2, "predicted_shape"), source=answer_source(2))
    rejected(
        checks.predicted_shape,
        answer(2, "predicted_shape", student=True),
        source=answer_source(2, student=True),
    )


def test_02_e2_in_ipython_reads_how_the_answer_was_typed():
    check = "from course_machinery.checks import lesson02 as checks\nchecks.predicted_shape(predicted_shape)"
    assert in_ipython(answer_source(2), check).startswith("✅")
    computed = (
        "import torch\nfrom torch import nn\n"
        "predicted_shape = tuple(nn.Conv2d(32, 64, kernel_size=5)(torch.zeros(64, 32, 14, 14)).shape)"
    )
    out = in_ipython(computed, check)
    assert out.startswith("❌") and "as a value" in out


def test_cheat_02_e2():
    expected = answer(2, "predicted_shape")
    computed = "predicted_shape = tuple(nn.Conv2d(32, 64, kernel_size=5)(torch.zeros(64, 32, 14, 14)).shape)"
    rejected(checks.predicted_shape, expected, source=computed)  # running the layer is not predicting
    rejected(checks.predicted_shape, (64, 64, 14, 14))  # padding forgotten: the spatial size kept
    rejected(checks.predicted_shape, (64, 32, 10, 10))  # in_channels instead of out_channels
    rejected(checks.predicted_shape, (64, 10, 10))  # the batch dimension left out
    line = rejected(checks.predicted_shape, "(64, 64, 10, 10)")  # a string is not a shape
    assert str(expected) not in line


def test_cheat_02_e2_sizes_are_integers_and_hints_run_out():
    for wrong in [(64.0, 64.9, 10.5, 10), ("64", "64", "10", "10"), (64, 64, 10.0, 10), (64, True, 10, 10)]:
        assert "integers" in rejected(checks.predicted_shape, wrong, source=f"predicted_shape = {wrong!r}")
    typed = "predicted_shape = (64, 64, 14 - 5 + 1, 14 - 5 + 1)"  # arithmetic typed by hand is a prediction
    accepted(checks.predicted_shape, (64, 64, 14 - 5 + 1, 14 - 5 + 1), source=typed)
    checks._WRONG_SHAPES.clear()  # a fresh kernel
    said = [rejected(checks.predicted_shape, (64, 64, h, h)) for h in range(11, 18)]
    assert "height and width" in said[0]
    assert not any("height" in line or "channels not" in line for line in said[checks._SHAPE_HINTS :])


# --- Exercise 3: AnySizeCNN -----------------------------------------------------------------------------
def test_02_e3_solution_and_placeholder():
    accepted(checks.any_size_cnn, answer(3, "AnySizeCNN"))
    line = rejected(checks.any_size_cnn, answer(3, "AnySizeCNN", student=True))
    assert "no answer yet" in line


def _variant(forward_flatten, fc_features=None):
    """A class with SimpleCNN's layers whose flatten (and optionally fc size) is given."""

    class Variant(nn.Module):
        def __init__(self, image_size: int = 28, num_classes: int = 10) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, 32, kernel_size=3, padding=1)
            self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
            self.pool = nn.MaxPool2d(2)
            features = fc_features if fc_features is not None else 64 * (image_size // 4) ** 2
            self.fc = nn.Linear(features, num_classes)

        def forward(self, x):
            x = self.pool(F.relu(self.conv1(x)))
            x = self.pool(F.relu(self.conv2(x)))
            return self.fc(forward_flatten(self, x))

    return Variant


def test_cheat_02_e3():
    solution = answer(3, "AnySizeCNN")

    class Subclass(cu.SimpleCNN):
        def __init__(self, image_size: int = 28, num_classes: int = 10) -> None:
            super().__init__(num_classes=num_classes, image_size=image_size)

    class Wrapper(nn.Module):
        def __init__(self, image_size: int = 28, num_classes: int = 10) -> None:
            super().__init__()
            self.inner = cu.SimpleCNN(num_classes=num_classes, image_size=image_size)

        def forward(self, x):
            return self.inner(x)

    # the package's class copied under another name
    source = inspect.getsource(cu.SimpleCNN).replace("class SimpleCNN", "class Copied")
    namespace = {"nn": nn, "F": F, "torch": torch, "_check_input": lambda *args: None}
    exec(source, namespace)

    build = "write the class yourself"
    assert build in rejected(checks.any_size_cnn, cu.SimpleCNN)  # an alias
    assert build in rejected(checks.any_size_cnn, Subclass)
    assert build in rejected(checks.any_size_cnn, Wrapper)
    assert build in rejected(checks.any_size_cnn, namespace["Copied"])
    # the source's pitfall: view(-1, features) folds images of a wrong size into the batch
    view = _variant(lambda self, x: x.view(-1, self.fc.in_features))
    assert "batch size" in rejected(checks.any_size_cnn, view)
    # the size of 28x28 images, whatever image_size says (the notebook's FlattenCNN, copied)
    assert "fc must take" in rejected(
        checks.any_size_cnn, _variant(lambda self, x: torch.flatten(x, 1), 7 * 7 * 64)
    )
    # a lazy layer that takes its size from the first batch
    lazy = _variant(lambda self, x: torch.flatten(x, 1))
    lazy_init = lazy.__init__

    def with_lazy_fc(self, image_size: int = 28, num_classes: int = 10) -> None:
        lazy_init(self, image_size, num_classes)
        self.fc = nn.LazyLinear(num_classes)

    lazy.__init__ = with_lazy_fc
    assert "lazy" in rejected(checks.any_size_cnn, lazy)

    class Softmaxed(solution):
        def forward(self, x):
            return super().forward(x).softmax(dim=1)

    assert "raw scores" in rejected(checks.any_size_cnn, Softmaxed)


def test_02_e3_accepts_padding_same():
    solution = answer(3, "AnySizeCNN")

    class Same(solution):
        def __init__(self, image_size: int = 28, num_classes: int = 10) -> None:
            super().__init__(image_size, num_classes)
            self.conv1 = nn.Conv2d(1, 32, kernel_size=3, padding="same")
            self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding="same")

    accepted(checks.any_size_cnn, Same)


def test_cheat_02_e3_dummy_forward_and_tweaked_copies():
    def dummy_forward(self, image_size: int = 28, num_classes: int = 10) -> None:
        nn.Module.__init__(self)
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2)
        with torch.no_grad():  # measured, not worked out
            features = self.pool(self.conv2(self.pool(self.conv1(torch.zeros(1, 1, image_size, image_size)))))
        self.fc = nn.Linear(features.numel(), num_classes)

    def lazy_then_dummy(self, image_size: int = 28, num_classes: int = 10) -> None:
        nn.Module.__init__(self)
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.LazyLinear(num_classes)
        with torch.no_grad():
            self.forward(
                torch.zeros(1, 1, image_size, image_size)
            )  # fc becomes an nn.Linear of the right size

    for init in (dummy_forward, lazy_then_dummy):
        cheat = _variant(lambda self, x: torch.flatten(x, 1))
        cheat.__init__ = init
        assert "dummy batch" in rejected(checks.any_size_cnn, cheat), init.__name__

    # the package's source, tweaked: another signature, another name, the input check left out
    source = (
        inspect.getsource(cu.SimpleCNN)
        .replace("class SimpleCNN", "class Tweaked")
        .replace(
            "num_classes: int = 10, in_channels: int = 1, image_size: int = 28",
            "image_size=28, num_classes=10, in_channels=1",
        )
        .replace("_check_input(self, x, self.in_channels, self.image_size)", "pass")
    )
    namespace = {"nn": nn, "F": F, "torch": torch}
    exec(source, namespace)
    assert "write the class yourself" in rejected(checks.any_size_cnn, namespace["Tweaked"])


# --- Exercise 4: evaluate_by_hand -----------------------------------------------------------------------
def test_02_e4_solution_and_placeholder():
    accepted(checks.evaluate_by_hand, answer(4, "evaluate_by_hand"))
    rejected(checks.evaluate_by_hand, answer(4, "evaluate_by_hand", student=True))


def test_02_e4_accepts_a_loop_under_the_no_grad_decorator():
    # cu.evaluate is decorated with @torch.no_grad() too: the check must not mistake one for the other
    @torch.no_grad()
    def evaluate(model, loader, loss_fn):
        model.eval()
        loss_sum, correct, seen = 0.0, 0, 0
        for images, labels in loader:
            outputs = model(images)
            loss_sum += loss_fn(outputs, labels).item() * len(labels)
            correct += (outputs.argmax(dim=1) == labels).sum().item()
            seen += len(labels)
        return {"loss": loss_sum / seen, "acc": correct / seen, "n": seen}

    accepted(checks.evaluate_by_hand, evaluate)


def _loop(*, eval_mode=True, no_grad=True, weighted=True, loss=None, train_step=False):
    """An evaluation loop with one of the usual mistakes switched on."""

    def evaluate(model, loader, loss_fn):
        loss_fn = loss or loss_fn
        if eval_mode:
            model.eval()
        losses, accs, sizes = [], [], []
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1) if train_step else None
        with torch.no_grad() if no_grad else torch.enable_grad():
            for images, labels in loader:
                outputs = model(images)
                batch_loss = loss_fn(outputs, labels)
                if train_step:
                    with torch.enable_grad():
                        optimizer.zero_grad()
                        loss_fn(model(images), labels).backward()
                        optimizer.step()
                losses.append(batch_loss.item())
                accs.append((outputs.argmax(dim=1) == labels).float().mean().item())
                sizes.append(len(labels))
        n = sum(sizes)
        if weighted:
            return {
                "loss": sum(v * s for v, s in zip(losses, sizes, strict=True)) / n,
                "acc": sum(v * s for v, s in zip(accs, sizes, strict=True)) / n,
                "n": n,
            }
        return {"loss": sum(losses) / len(losses), "acc": sum(accs) / len(accs), "n": n}

    return evaluate


def test_cheat_02_e4():
    def library(model, loader, loss_fn):
        return cu.evaluate(model, loader, loss_fn=loss_fn)

    assert "write the loop yourself" in rejected(checks.evaluate_by_hand, library)
    accepted(checks.evaluate_by_hand, _loop())  # the reference of the mistakes below
    assert "evaluation mode" in rejected(checks.evaluate_by_hand, _loop(eval_mode=False))
    assert "no_grad" in rejected(checks.evaluate_by_hand, _loop(no_grad=False))
    assert "weight each batch" in rejected(checks.evaluate_by_hand, _loop(weighted=False))
    assert "must not change" in rejected(checks.evaluate_by_hand, _loop(train_step=True))
    # a loss of its own instead of the one given: the hidden test's label smoothing finds it
    own_loss = _loop(loss=nn.CrossEntropyLoss())
    with pytest.raises(AssertionError, match="loss_fn you are given"):
        checks.grade(checks.evaluate_by_hand, own_loss)
    assert "dict" in rejected(checks.evaluate_by_hand, lambda model, loader, loss_fn: (0.5, 0.5, 10))


def _check_frames():
    """The frames above the learner's function, as a traceback reaches them (no sys._getframe, which is watched)."""
    try:
        raise RuntimeError
    except RuntimeError as exc:
        frame = exc.__traceback__.tb_frame.f_back
    while frame is not None:
        yield frame
        frame = frame.f_back


def _silence_the_watch():
    for frame in _check_frames():
        for value in list(frame.f_locals.values()):
            if isinstance(value, set) and all(isinstance(v, str) for v in value):
                value.clear()


def test_cheat_02_through_the_check_frames():
    def read_expected(model, loader, loss_fn):  # the expected values, if the check had worked them out before
        for frame in _check_frames():
            found = frame.f_locals
            if {"loss", "acc", "count"} <= found.keys():
                return {"loss": found["loss"], "acc": found["acc"], "n": found["count"]}
        return {"loss": 0.0, "acc": 0.0, "n": 0}

    def package_silenced(model, loader, loss_fn):
        result = cu.evaluate(model, loader, loss_fn=loss_fn)
        _silence_the_watch()
        return result

    def count_silenced(in_channels, out_channels, kernel_size, bias=True):
        count = cu.count_parameters(nn.Conv2d(in_channels, out_channels, kernel_size, bias=bias))
        _silence_the_watch()
        return count

    rejected(checks.evaluate_by_hand, read_expected)
    assert "write the loop yourself" in rejected(checks.evaluate_by_hand, package_silenced)
    assert "building a layer" in rejected(checks.conv_parameters, count_silenced)

    class Silenced(nn.Module):
        def __init__(self, image_size: int = 28, num_classes: int = 10) -> None:
            super().__init__()
            self.inner = cu.SimpleCNN(num_classes=num_classes, image_size=image_size)
            self.conv1, self.conv2, self.pool, self.fc = (
                self.inner.conv1,
                self.inner.conv2,
                self.inner.pool,
                self.inner.fc,
            )
            del self._modules["inner"]  # no SimpleCNN among its modules
            _silence_the_watch()

        def forward(self, x):
            return cu.SimpleCNN.forward(self, x)

    assert "write the class yourself" in rejected(checks.any_size_cnn, Silenced)
