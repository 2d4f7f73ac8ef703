"""Lesson 06's exercise checks: each accepts the notebook's solution, refuses the placeholder and refuses cheating."""

from __future__ import annotations

import json

import pytest
import torch
from support.exercises import accepted, rejected
from torch import nn

import course_utils as cu
from course_machinery.checks import lesson06 as checks
from course_machinery.lessons import NOTEBOOKS, lesson_code
from course_machinery.standins import rendered_digits
from course_utils.data import TensorLoader

ns = lesson_code("06")  # the lesson's own ResidualBlock and SmallResNet
_NOTEBOOK_LOAD_DATA = checks._notebook_load_data


def _solution(grade_id: str, **names: object) -> dict:
    """Run the notebook's answer cell ``grade_id`` (solution included) with ``names``; return what it defines."""
    (path,) = NOTEBOOKS.glob("06_*.ipynb")
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    (source,) = [
        "".join(c["source"]) for c in cells if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id
    ]
    namespace = {"torch": torch, "nn": nn, "cu": cu, "SmallResNet": ns.SmallResNet, **names}
    exec(source, namespace)
    return namespace


@pytest.fixture(scope="module")
def block_cls() -> type:
    return _solution("06-e2-answer")["MyBlock"]


@pytest.fixture(scope="module")
def net_cls(block_cls: type) -> type:
    return _solution("06-e3-answer", MyBlock=block_cls)["MyResNet"]


# ---------------------------------------------------------------------------------------------------------
# Exercise 1: bottleneck_ratio(channels, reduced)
# ---------------------------------------------------------------------------------------------------------
def test_06_e1_solution_accepted_placeholder_rejected():
    accepted(checks.bottleneck_ratio, _solution("06-e1-answer")["bottleneck_ratio"])

    def skeleton(channels, reduced): ...

    assert "no answer yet" in rejected(checks.bottleneck_ratio, skeleton)
    rejected(checks.bottleneck_ratio, None)


def test_cheat_06_e1():
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


def test_cheat_06_e1_switching_off_and_tables():
    import sys

    def switch_off(channels, reduced):
        sys.setprofile(None)
        return cu.count_parameters(nn.Conv2d(channels, channels, 3, bias=False)) / (
            2 * channels * reduced + 9 * reduced**2
        )

    assert "sys.setprofile" in rejected(checks.bottleneck_ratio, switch_off)
    right, table = _solution("06-e1-answer")["bottleneck_ratio"], {}

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
# Exercise 2: MyBlock
# ---------------------------------------------------------------------------------------------------------
class _Skeleton(nn.Module):  # the exercise cell as the student edition has it
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        ...

    def forward(self, x): ...


def test_06_e2_solution_accepted_placeholder_rejected(block_cls):
    accepted(checks.residual_block, block_cls)
    assert "no answer yet" in rejected(checks.residual_block, _Skeleton)
    rejected(checks.residual_block, None)


def test_cheat_06_e2(block_cls):
    assert "not the lesson's ResidualBlock" in rejected(
        checks.residual_block, ns.ResidualBlock
    )  # MyBlock = ...

    class Sub(ns.ResidualBlock):
        pass

    rejected(checks.residual_block, Sub)

    # A copy of the lesson's code under another name (as a learner would paste it): refused by its code.
    copied = type("MyBlock", (nn.Module,), dict(ns.ResidualBlock.__dict__))
    assert "copy of its code" in rejected(checks.residual_block, copied)

    class Wrapper(nn.Module):
        def __init__(self, cin, cout, stride=1):
            super().__init__()
            self.inner = ns.ResidualBlock(cin, cout, stride)

        def forward(self, x):
            return self.inner(x)

    assert "yourself" in rejected(checks.residual_block, Wrapper)

    from torchvision.models.resnet import BasicBlock

    class TorchvisionWrapper(nn.Module):  # torchvision's block, with a 1x1 projection where the shape changes
        def __init__(self, cin, cout, stride=1):
            super().__init__()
            down = None
            if cin != cout or stride != 1:
                down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            self.inner = BasicBlock(cin, cout, stride, downsample=down)

        def forward(self, x):
            return self.inner(x)

    assert "yourself" in rejected(checks.residual_block, TorchvisionWrapper)

    class Transplant(nn.Module):  # the lesson's block built, its layers moved in, its forward borrowed
        def __init__(self, cin, cout, stride=1):
            super().__init__()
            self._modules.update(ns.ResidualBlock(cin, cout, stride)._modules)

        def forward(self, x):
            return ns.ResidualBlock.forward(self, x)

    assert "yourself" in rejected(checks.residual_block, Transplant)
    assert "not an instance" in rejected(checks.residual_block, block_cls(8, 8))


class _ReluBeforeSum(nn.Module):
    """relu(F(x)) + x, then relu: the branch can only add."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        changes = cin != cout or stride != 1
        self.shortcut = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if changes
            else nn.Identity()
        )

    def forward(self, x):
        out = torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))
        return torch.relu(out + self.shortcut(x))


class _AlwaysProjects(_ReluBeforeSum):
    def __init__(self, cin, cout, stride=1):
        super().__init__(cin, cout, stride)
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))) + self.shortcut(x))


class _StrideOnlyInBranch(_AlwaysProjects):  # the projection forgets the stride
    def __init__(self, cin, cout, stride=1):
        super().__init__(cin, cout, stride)
        if cin == cout and stride == 1:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))


@pytest.mark.parametrize(
    ("wrong", "says"),
    [
        (_ReluBeforeSum, "never gives less"),
        (_AlwaysProjects, "should be the identity"),
        (_StrideOnlyInBranch, "project it"),
    ],
)
def test_06_e2_wrong_blocks_get_a_hint_without_the_expected_shape(wrong, says):
    line = rejected(checks.residual_block, wrong)
    assert says in line and "5x5" not in line


# ---------------------------------------------------------------------------------------------------------
# Exercise 3: MyResNet
# ---------------------------------------------------------------------------------------------------------
def test_06_e3_solution_accepted_placeholder_rejected(net_cls, block_cls):
    accepted(checks.my_resnet, net_cls, block_cls)

    class Skeleton(nn.Module):
        def __init__(self, widths=(32, 64, 128), num_classes=10, in_channels=1):
            super().__init__()
            ...

        def forward(self, x): ...

    assert "no answer yet" in rejected(checks.my_resnet, Skeleton, block_cls)
    rejected(checks.my_resnet, None, block_cls)
    assert "finish exercise 2" in rejected(checks.my_resnet, net_cls, _Skeleton)


def test_cheat_06_e3(net_cls, block_cls):
    assert "not the lesson's SmallResNet" in rejected(checks.my_resnet, ns.SmallResNet, block_cls)

    def zero_init_small_resnet(widths=(32, 64, 128), num_classes=10, in_channels=1):  # the lesson's, patched
        model = ns.SmallResNet(widths, num_classes=num_classes, in_channels=in_channels)
        for m in model.modules():
            if isinstance(m, ns.ResidualBlock):
                nn.init.zeros_(m.bn2.weight)
        return model

    assert "not from the lesson's" in rejected(checks.my_resnet, zero_init_small_resnet, block_cls)

    class Sub(ns.SmallResNet):
        pass

    rejected(checks.my_resnet, Sub, block_cls)
    assert "own MyBlock" in rejected(checks.my_resnet, net_cls, ns.ResidualBlock)

    class NoZeroInit(net_cls):  # the right layout, every block starting as a random function
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            for block in self.stages:
                nn.init.ones_(block.bn2.weight)

    assert "does not return its input" in rejected(checks.my_resnet, NoZeroInit, block_cls)

    class ZeroConvInstead(NoZeroInit):  # zeroes conv2's weights: the identity now, but not by the BN scale
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            for block in self.stages:
                nn.init.zeros_(block.conv2.weight)

    assert "new random weights" in rejected(checks.my_resnet, ZeroConvInstead, block_cls)

    class Frozen(net_cls):  # the zeroed scales can never move
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            for block in self.stages:
                block.bn2.weight.requires_grad_(False)

    assert "frozen" in rejected(checks.my_resnet, Frozen, block_cls)

    class FlattenHead(net_cls):  # flatten instead of global average pooling: one image size only
        def forward(self, x):
            return self.classifier(self.stages(self.stem(x)).flatten(1))

    assert "failed on images" in rejected(checks.my_resnet, FlattenHead, block_cls)


def test_cheat_06_e3_transplants(block_cls):
    class Transplant(nn.Module):  # the lesson's network built, its layers moved in, its forward borrowed
        def __init__(self, widths=(32, 64, 128), num_classes=10, in_channels=1):
            super().__init__()
            ref = ns.SmallResNet(widths, num_classes=num_classes, in_channels=in_channels)
            self._modules.update(ref._modules)
            self.mine = nn.ModuleList(block_cls(w, w) for w in widths)  # three MyBlocks, never run

        def forward(self, x):
            return ns.SmallResNet.forward(self, x)

    assert "not from the lesson's" in rejected(checks.my_resnet, Transplant, block_cls)


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
