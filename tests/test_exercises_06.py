"""Lesson 06's exercise checks: each accepts the notebook's solution, refuses the student edition's placeholder and
refuses cheating."""

from __future__ import annotations

import json

import pytest
import torch
from support.exercises import accepted, answer_source, in_ipython, rejected
from torch import nn

import course_utils as cu
from course_machinery.checks import lesson06 as checks
from course_machinery.lessons import NOTEBOOKS, lesson_code
from course_machinery.standins import rendered_digits
from course_utils.data import TensorLoader

ns = lesson_code("06")  # the lesson's own MLP
_NOTEBOOK_LOAD_DATA = checks._notebook_load_data
SETUP = (
    "from course_machinery.checks import lesson06 as checks\nfrom course_machinery.lessons import lesson_code\n"
    "import course_utils as cu\nMLP = lesson_code('06').MLP"
)


def _solution(grade_id: str, *, student: bool = False, **names: object) -> dict:
    """Run the notebook's answer cell ``grade_id`` with ``names``; return what it defines."""
    namespace = {"torch": torch, "nn": nn, "cu": cu, **names}
    exec(answer_source(grade_id, student=student), namespace)
    return namespace


@pytest.fixture(autouse=True)
def _fresh_kernel(monkeypatch):
    """Each test a new kernel: no wrong counts remembered from another test."""
    monkeypatch.setattr(checks, "_WRONG_COUNTS", {})


# ---------------------------------------------------------------------------------------------------------
# Exercise 1: predict MLP(hidden=(256, 128))'s parameters
# ---------------------------------------------------------------------------------------------------------
MLP_PARAMS = 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10


def test_06_e1_solution_accepted_placeholder_rejected():
    assert cu.count_parameters(ns.MLP(hidden=(256, 128))) == MLP_PARAMS  # the check's count is the lesson's
    solution = _solution("06-e1-answer")["mlp_params"]
    accepted(checks.mlp_parameters, solution)
    assert "no answer yet" in rejected(
        checks.mlp_parameters, _solution("06-e1-answer", student=True)["mlp_params"]
    )
    said = in_ipython(SETUP, answer_source("06-e1-answer"), "checks.mlp_parameters(mlp_params)")
    assert said.startswith("✅"), said  # arithmetic typed by hand is a prediction


@pytest.mark.parametrize(
    ("wrong", "says"),
    [
        (MLP_PARAMS - 394, "biases"),  # no biases at all
        (MLP_PARAMS - 1290, "a whole layer is missing"),  # the output layer left out
        (MLP_PARAMS - 128, "one layer's biases"),
        (MLP_PARAMS + 774, "not one per input"),  # a bias per input unit
        (MLP_PARAMS + 784, "the input pixels"),
        (MLP_PARAMS - 256 - 10, "one layer's biases"),  # two layers' biases left out
        (MLP_PARAMS + 5000, "too many"),
        (MLP_PARAMS - 20_000, "about 9% too few"),
    ],
)
def test_06_e1_wrong_counts_say_the_mistake_and_how_far_off_not_the_answer(wrong, says):
    line = rejected(checks.mlp_parameters, wrong)
    assert says in line and "235,146" not in line and "235146" not in line


def test_06_e1_only_whole_numbers():
    assert "whole number" in rejected(checks.mlp_parameters, MLP_PARAMS + 0.5)
    assert "single number" in rejected(checks.mlp_parameters, [MLP_PARAMS])
    accepted(checks.mlp_parameters, float(MLP_PARAMS))


def test_cheat_06_e1():
    # Counting the lesson's model, or building the layers, is measuring, not predicting: refused though right.
    for computed in (
        "mlp_params = cu.count_parameters(MLP(hidden=(256, 128)))",
        "mlp_params = sum(p.numel() for p in MLP(hidden=(256, 128)).parameters())",
        "sizes = [784, 256, 128, 10]\nmlp_params = sum(a * b + b for a, b in zip(sizes, sizes[1:]))",
    ):
        said = in_ipython(SETUP, computed, "checks.mlp_parameters(mlp_params)")
        assert said.startswith("❌") and "type `mlp_params`" in said, said
    assert (
        checks.mlp_parameters(MLP_PARAMS, source="mlp_params = cu.count_parameters(MLP())") is checks.NOT_YET
    )
    rejected(checks.mlp_parameters, str(MLP_PARAMS))  # a string is not a number
    # A loop that narrows the answer down by "how far off": after a few wrong counts, no more per cent.
    lines = [
        rejected(checks.mlp_parameters, guess) for guess in (0, 100_000, 200_000, 250_000, 240_000, 236_000)
    ]
    assert "%" in lines[0] and all("%" not in line for line in lines[checks._ROUGH_HINTS :])


# ---------------------------------------------------------------------------------------------------------
# Exercise 2: FlatNet, repaired
# ---------------------------------------------------------------------------------------------------------
class _Base(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(28 * 28, 10)


class _NoShapeInMessage(_Base):
    def forward(self, x):
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise ValueError("wrong input shape")
        return self.fc(torch.flatten(x, 1))


class _TypeError(_Base):
    def forward(self, x):
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise TypeError(f"expected (batch, 1, 28, 28), got {tuple(x.shape)}")
        return self.fc(torch.flatten(x, 1))


class _ChannelsOnly(_Base):  # a grey 14x56 batch still passes
    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"expected (batch, 1, 28, 28), got {tuple(x.shape)}")
        return self.fc(x.reshape(x.shape[0], -1))


class _LastThree(_Base):  # checks the last three sides: an image without its batch dimension passes
    def forward(self, x):
        if tuple(x.shape[-3:]) != (1, 28, 28):
            raise ValueError(f"expected (batch, 1, 28, 28), got {tuple(x.shape)}")
        return self.fc(torch.flatten(x, -3))


class _NewLayer(_Base):  # the right shape check, but another layer's scores
    def forward(self, x):
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise ValueError(f"expected (batch, 1, 28, 28), got {tuple(x.shape)}")
        return nn.Linear(784, 10)(torch.flatten(x, 1))


class _Transposed(_Base):  # flattens each image column by column
    def forward(self, x):
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise ValueError(f"expected (batch, 1, 28, 28), got {tuple(x.shape)}")
        return self.fc(x.transpose(2, 3).flatten(1))


def test_06_e2_solution_accepted_placeholder_rejected():
    accepted(checks.flat_net, _solution("06-e2-answer")["FlatNet"])
    broken = _solution("06-e2-answer", student=True)[
        "FlatNet"
    ]  # the student edition: the source's view(-1, 784)
    assert "view(-1, 784)" in rejected(checks.flat_net, broken)
    assert "no answer yet" in rejected(checks.flat_net, None)
    assert "not an instance" in rejected(checks.flat_net, broken())


@pytest.mark.parametrize(
    ("wrong", "says"),
    [
        (_NoShapeInMessage, "its message should say"),
        (_TypeError, "raised TypeError"),
        (_ChannelsOnly, "(4, 1, 14, 56)"),
        (_LastThree, "(1, 28, 28)"),
        (_NewLayer, "its own layer fc"),
        (_Transposed, "its own layer fc"),
    ],
)
def test_06_e2_wrong_repairs_get_a_hint(wrong, says):
    assert says in rejected(checks.flat_net, wrong)


def test_06_e2_the_message_may_name_the_shapes_its_own_way():
    class SizeInMessage(_Base):
        def forward(self, x):
            if x.ndim != 4 or x.shape[1:] != (1, 28, 28):
                raise ValueError(f"FlatNet takes batches of 1x28x28 images; this batch is {x.shape}")
            return self.fc(x.flatten(1))

    accepted(checks.flat_net, SizeInMessage)


def test_cheat_06_e2():
    class AlwaysRaises(_Base):  # refuses everything: the wrong shapes too, but also every grey batch
        def forward(self, x):
            raise ValueError(f"FlatNet expects (batch, 1, 28, 28), got {tuple(x.shape)}")

    assert "should accept" in rejected(checks.flat_net, AlwaysRaises)

    class RuntimeFromView(_Base):  # lets view's own error speak where the count does not divide by 784
        def forward(self, x):
            if x.shape[0] * 784 != x.numel():
                raise RuntimeError(f"expected (batch, 1, 28, 28), got {tuple(x.shape)}")
            return self.fc(x.view(-1, 784))

    rejected(checks.flat_net, RuntimeFromView)

    class OnlyTheVisibleShapes(_Base):  # refuses exactly the shapes the visible check tries
        def forward(self, x):
            if tuple(x.shape) in checks._WRONG_BATCHES:
                raise ValueError(f"expected (batch, 1, 28, 28), got {tuple(x.shape)}")
            return self.fc(x.view(-1, 784))

    assert checks.flat_net(OnlyTheVisibleShapes)  # the visible shapes are fixed; grading tries others
    with pytest.raises(AssertionError):
        checks.grade(checks.flat_net, OnlyTheVisibleShapes)

    class ChangesItsLayer(_Base):  # zeroes its layer, then returns zeros: the scores of a layer it broke
        def forward(self, x):
            if x.ndim != 4 or tuple(x.shape[1:]) != (1, 28, 28):
                raise ValueError(f"expected (batch, 1, 28, 28), got {tuple(x.shape)}")
            with torch.no_grad():
                self.fc.weight.zero_()
                self.fc.bias.zero_()
            return torch.zeros(x.shape[0], 10)

    assert "changes the weights" in rejected(checks.flat_net, ChangesItsLayer)


# ---------------------------------------------------------------------------------------------------------
# Exercise 3: bottleneck_ratio(channels, reduced)
# ---------------------------------------------------------------------------------------------------------
def test_06_e3_solution_accepted_placeholder_rejected():
    accepted(checks.bottleneck_ratio, _solution("06-e3-answer")["bottleneck_ratio"])
    assert "no answer yet" in rejected(
        checks.bottleneck_ratio, _solution("06-e3-answer", student=True)["bottleneck_ratio"]
    )
    rejected(checks.bottleneck_ratio, None)


def test_cheat_06_e3():
    printed = 589_824 / 69_632  # the notebook's case, copied as a number
    assert "not the ratio" in rejected(checks.bottleneck_ratio, lambda channels, reduced: printed)

    def built(channels, reduced):  # builds the layers and counts their parameters
        single = nn.Conv2d(channels, channels, 3, bias=False)
        bottleneck = nn.Sequential(
            nn.Conv2d(channels, reduced, 1, bias=False),
            nn.Conv2d(reduced, reduced, 3, bias=False),
            nn.Conv2d(reduced, channels, 1, bias=False),
        )
        return cu.count_parameters(single) / cu.count_parameters(bottleneck)

    assert "without building layers" in rejected(checks.bottleneck_ratio, built)

    def inverted(channels, reduced):
        return (2 * channels * reduced + 9 * reduced**2) / (9 * channels**2)

    assert "single / bottleneck" in rejected(checks.bottleneck_ratio, inverted)

    def forgets_a_1x1(channels, reduced):
        return 9 * channels**2 / (channels * reduced + 9 * reduced**2)

    rejected(checks.bottleneck_ratio, forgets_a_1x1)


def test_cheat_06_e3_switching_off_and_tables():
    import sys

    def switch_off(channels, reduced):
        sys.setprofile(None)
        return cu.count_parameters(nn.Conv2d(channels, channels, 3, bias=False)) / (
            2 * channels * reduced + 9 * reduced**2
        )

    assert "sys.setprofile" in rejected(checks.bottleneck_ratio, switch_off)
    right, table = _solution("06-e3-answer")["bottleneck_ratio"], {}

    def remember(channels, reduced):
        table[(channels, reduced)] = right(channels, reduced)
        return table[(channels, reduced)]

    accepted(checks.bottleneck_ratio, remember)
    known = dict(table)  # every pair one grading asked: the next grading draws new ones
    lookup = lambda channels, reduced: known.get((channels, reduced), 1.0)  # noqa: E731
    assert checks.bottleneck_ratio(lookup)  # the visible pairs are fixed
    with pytest.raises(AssertionError):
        checks.grade(checks.bottleneck_ratio, lookup)


# ---------------------------------------------------------------------------------------------------------
# Exercise 4: a target accuracy within a time budget
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def load_digits():
    """A small ``load_data(seed)``: synthetic digits, learnable in a second, split and shuffled by the seed."""
    images, labels = rendered_digits(384, seed=0)
    mean, std = (0.1,), (0.25,)

    class Bundle:
        def __init__(self, seed):
            self.seed = seed
            order = torch.randperm(384, generator=torch.Generator().manual_seed(seed))
            train, val = order[:256], order[256:]
            self.train = TensorLoader(
                images[train], labels[train], batch_size=64, shuffle=True, mean=mean, std=std, seed=seed
            )
            self.val = TensorLoader(images[val], labels[val], batch_size=128, mean=mean, std=std)

    return Bundle


@pytest.fixture
def lesson_data(load_digits, monkeypatch):
    """The check's own data replaced by the small digits (the real lesson's Fashion-MNIST takes minutes)."""
    monkeypatch.setattr(checks, "_lesson_data", load_digits)
    monkeypatch.setenv("COURSE_SMOKE", "1")  # the smoke run's target and epochs: what the small digits allow
    monkeypatch.setattr(checks, "_notebook_load_data", lambda: None)  # the digits' loader is no notebook's
    return load_digits


def test_06_e4_configuration_is_the_lessons():
    import course_utils

    (path,) = NOTEBOOKS.glob("06_*.ipynb")
    (setup,) = [
        "".join(c["source"])
        for c in json.loads(path.read_text(encoding="utf-8"))["cells"]
        if "setup" in c["metadata"].get("tags", [])
    ]
    for smoke in (True, False):
        names = {}
        fake_cu = type("cu", (), {"SMOKE": smoke})
        for line in setup.splitlines():
            name = line.split("=")[0].strip()
            if name in checks._CONFIG:
                names[name] = eval(line.split("=", 1)[1].split("#")[0], {"cu": fake_cu})
        assert names == {k: v[0 if smoke else 1] for k, v in checks._CONFIG.items()}
    assert course_utils.SMOKE in (True, False)


def test_06_e4_solution_accepted_placeholder_rejected(lesson_data):
    load_digits = lesson_data
    torch.manual_seed(0)
    kwargs = {"target": 0.5, "seconds": 10, "precision": "fp32"}
    model = ns.MLP(hidden=(64,))  # learns the synthetic digits in seconds
    accepted(checks.time_to_accuracy, model, load_digits, epochs=2, lr=3e-3, **kwargs)
    assert all(p.grad is None for p in model.parameters())  # the learner's model was not trained
    assert "no answer yet" in rejected(
        checks.time_to_accuracy, None, load_digits, epochs=None, lr=None, **kwargs
    )
    assert "budget" in rejected(
        checks.time_to_accuracy, model, load_digits, epochs=2, lr=3e-3, target=0.5, seconds=1e-3
    )
    assert "below the" in rejected(
        checks.time_to_accuracy, ns.MLP(hidden=()), load_digits, epochs=1, lr=1e-5, target=1.0, seconds=10
    )
    assert "whole number" in rejected(
        checks.time_to_accuracy, model, load_digits, epochs=1.5, lr=1e-3, **kwargs
    )


def test_06_e4_trains_once_per_answer_on_the_second_seed(lesson_data, monkeypatch):
    """The visible check trains on seed + 1; the hidden test right after it reuses that run (the lesson's full
    run and a grading run pay for one training per cell); an answer changed since trains again."""
    load_digits = lesson_data
    seeds, run = [], checks._run

    def counted(net, data, *args, **kwargs):
        seeds.append(data.seed)
        return run(net, data, *args, **kwargs)

    monkeypatch.setattr(checks, "_run", counted)
    torch.manual_seed(0)
    model = ns.MLP(hidden=(64,))
    kwargs = {"epochs": 2, "lr": 3e-3, "target": 0.5, "seconds": 10, "precision": "fp32", "seed": 3}
    accepted(checks.time_to_accuracy, model, load_digits, **kwargs)
    checks.grade(checks.time_to_accuracy, model, load_digits, **kwargs)
    assert seeds == [4]
    with torch.no_grad():
        model.layers[0].weight.add_(0.01)  # another answer now: trained again
    checks.grade(checks.time_to_accuracy, model, load_digits, **kwargs)
    assert seeds == [4, 4]


def test_cheat_06_e4(lesson_data):
    load_digits = lesson_data
    torch.manual_seed(0)
    trained = ns.MLP(hidden=(64,))  # an already trained network (e.g. one of the notebook's results)
    optimizer = torch.optim.Adam(trained.parameters(), lr=3e-3)
    for _ in range(3):
        for images, labels in load_digits(0).train:
            optimizer.zero_grad()
            nn.functional.cross_entropy(trained(images), labels).backward()
            optimizer.step()
    line = rejected(checks.time_to_accuracy, trained, load_digits, epochs=1, lr=1e-6, target=0.5, seconds=10)
    assert "before any training" in line


def test_cheat_06_e4_notebook_names_overwritten(lesson_data, monkeypatch):
    model = ns.MLP(hidden=())  # a network that cannot reach a high target
    # An unreachable budget, or a target lowered to 0: the check keeps the lesson's (at least).
    assert "budget" in rejected(
        checks.time_to_accuracy, model, lesson_data, epochs=1, lr=3e-3, target=0.5, seconds=float("inf")
    )
    assert "budget" in rejected(
        checks.time_to_accuracy, model, lesson_data, epochs=1, lr=3e-3, target=0.5, seconds=1e6
    )
    config = checks._config
    monkeypatch.setattr(checks, "_config", lambda name: 1.0 if name == "TARGET_ACC" else config(name))
    assert "below the" in rejected(
        checks.time_to_accuracy, ns.MLP(hidden=(64,)), lesson_data, epochs=1, lr=3e-3, target=0.0, seconds=10
    )
    monkeypatch.setattr(checks, "_config", config)
    monkeypatch.setattr(checks, "_notebook_load_data", _NOTEBOOK_LOAD_DATA)
    assert _NOTEBOOK_LOAD_DATA() is not None
    # A load_data of one's own (a handful of easy images): refused, the lesson's data is loaded by the check.
    fake = lambda seed, augment=False: lesson_data(seed)  # noqa: E731
    line = rejected(checks.time_to_accuracy, model, fake, epochs=1, lr=3e-3, target=0.5, seconds=10)
    assert "load_data" in line

    def broken(seed):
        raise OSError("no data here")

    monkeypatch.setattr(checks, "_lesson_data", broken)
    monkeypatch.setattr(checks, "_notebook_load_data", lambda: None)
    assert "raised OSError" in rejected(
        checks.time_to_accuracy, model, broken, epochs=1, lr=3e-3, target=0.5, seconds=10
    )
