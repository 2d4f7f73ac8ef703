"""Lesson 07's exercise checks: each accepts the notebook's solution, refuses the student edition's placeholder and
refuses cheating."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from support.exercises import accepted, answer_source, in_ipython, rejected
from torch import nn

import course_utils as cu
from course_machinery.checks import lesson06
from course_machinery.checks import lesson07 as checks
from course_machinery.lessons import lesson_code

ns = lesson_code("07")  # the lesson's own ResidualBlock and SmallResNet
SETUP = (
    "from course_machinery.checks import lesson07 as checks\nfrom course_machinery.lessons import lesson_code\n"
    "import course_utils as cu\nResidualBlock = lesson_code('07').ResidualBlock"
)


def _solution(grade_id: str, *, student: bool = False, **names: object) -> dict:
    """Run the notebook's answer cell ``grade_id`` with ``names``; return what it defines."""
    namespace = {"torch": torch, "nn": nn, "cu": cu, **names}
    exec(answer_source(grade_id, student=student), namespace)
    return namespace


@pytest.fixture(autouse=True)
def _fresh_kernel(monkeypatch):
    """Each test a new kernel: no wrong counts remembered from another test."""
    monkeypatch.setattr(lesson06, "_WRONG_COUNTS", {})  # where the prediction checks keep them


@pytest.fixture(scope="module")
def block_cls() -> type:
    return _solution("07-e1-answer")["MyBlock"]


@pytest.fixture(scope="module")
def net_cls(block_cls: type) -> type:
    return _solution("07-e4-answer", MyBlock=block_cls)["MyResNet"]


# ---------------------------------------------------------------------------------------------------------
# Exercise 1: MyBlock
# ---------------------------------------------------------------------------------------------------------
class _Skeleton(nn.Module):  # the exercise cell as the student edition has it
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        ...

    def forward(self, x): ...


def test_07_e1_solution_accepted_placeholder_rejected(block_cls):
    accepted(checks.residual_block, block_cls)
    assert "no answer yet" in rejected(checks.residual_block, _Skeleton)
    student = _solution("07-e1-answer", student=True)["MyBlock"]  # as nbgrader hands it out
    assert "no answer yet" in rejected(checks.residual_block, student)
    rejected(checks.residual_block, None)


def test_cheat_07_e1(block_cls):
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
def test_07_e1_wrong_blocks_get_a_hint_without_the_expected_shape(wrong, says):
    line = rejected(checks.residual_block, wrong)
    assert says in line and "5x5" not in line


# ---------------------------------------------------------------------------------------------------------
# Exercise 2: predict ResidualBlock(16, 32, stride=2)'s parameters
# ---------------------------------------------------------------------------------------------------------
BLOCK_PARAMS = 32 * 16 * 9 + 32 * 32 * 9 + 32 * 16 + 3 * 2 * 32


def test_07_e2_solution_accepted_placeholder_rejected():
    assert (
        cu.count_parameters(ns.ResidualBlock(16, 32, stride=2)) == BLOCK_PARAMS
    )  # the check's is the lesson's
    assert checks._block_count() == BLOCK_PARAMS
    accepted(checks.block_parameters, _solution("07-e2-answer")["block_params"])
    assert "no answer yet" in rejected(
        checks.block_parameters, _solution("07-e2-answer", student=True)["block_params"]
    )
    said = in_ipython(SETUP, answer_source("07-e2-answer"), "checks.block_parameters(block_params)")
    assert said.startswith("✅"), said


def _buffers(block: nn.Module) -> int:
    return sum(b.numel() for b in block.buffers())


@pytest.mark.parametrize(
    ("wrong", "says"),
    [
        (cu.count_parameters(ns.ResidualBlock(16, 32, stride=2)) - 32 * 16 - 64, "shortcut is missing"),
        # the plain block of section 4: the same layers without the shortcut
        (cu.count_parameters(ns.ResidualBlock(16, 32, 2, residual=False)), "shortcut is missing"),
        (BLOCK_PARAMS - 32 * 16, "1×1 convolution is missing"),
        (BLOCK_PARAMS - 3 * 64, "parameters too"),  # BatchNorm left out
        (BLOCK_PARAMS - 64, "a BatchNorm is missing"),  # the projection's BatchNorm forgotten
        (BLOCK_PARAMS + 3 * 64, "buffers"),  # running mean and variance counted
        (BLOCK_PARAMS + _buffers(ns.ResidualBlock(16, 32, stride=2)), "buffers"),  # and num_batches_tracked
        (BLOCK_PARAMS + 3 * 32, "no biases"),
        (BLOCK_PARAMS + 2 * 32, "no biases"),
        (BLOCK_PARAMS + 32 * 16 * 8, "1×1"),  # the projection counted as a 3x3 convolution
        (BLOCK_PARAMS - 32 * 16 * 9, "own channels"),  # conv2 counted as 16 -> 32
        (BLOCK_PARAMS - 32 * 16 + 3 * 32, "no biases"),  # two mistakes at once: both said
        (BLOCK_PARAMS + 1000, "too many"),
    ],
)
def test_07_e2_wrong_counts_say_the_mistake_not_the_answer(wrong, says):
    line = rejected(checks.block_parameters, wrong)
    assert says in line and "14,528" not in line and "14528" not in line


def test_cheat_07_e2():
    for computed in (
        "block_params = cu.count_parameters(ResidualBlock(16, 32, stride=2))",
        "block_params = sum(p.numel() for p in ResidualBlock(16, 32, 2).parameters())",
        "c = 32\nblock_params = c * 16 * 9 + c * c * 9 + c * 16 + 6 * c",  # arithmetic on a name: not typed
    ):
        said = in_ipython(SETUP, computed, "checks.block_parameters(block_params)")
        assert said.startswith("❌") and "type `block_params`" in said, said
    rejected(checks.block_parameters, torch.tensor(BLOCK_PARAMS))  # read off a tensor: not a typed number
    rejected(checks.block_parameters, True)


# ---------------------------------------------------------------------------------------------------------
# Exercise 3: GapCNN, SimpleCNN with a global average pooling head
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gap_cls() -> type:
    return _solution("07-e3-answer")["GapCNN"]


class _Body(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc = nn.Linear(64, num_classes)

    def features(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        return F.max_pool2d(F.relu(self.conv2(x)), 2)


class _MaxHead(_Body):
    def forward(self, x):
        return self.fc(self.features(x).amax(dim=(2, 3)))


class _NoRelu(_Body):
    def forward(self, x):
        x = F.max_pool2d(self.conv1(x), 2)
        return self.fc(F.max_pool2d(self.conv2(x), 2).mean(dim=(2, 3)))


class _OnePool(_Body):
    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        return self.fc(F.relu(self.conv2(x)).mean(dim=(2, 3)))


class _FlattenHead(_Body):  # SimpleCNN's head: one image size only
    def __init__(self, num_classes=10):
        super().__init__(num_classes)
        self.fc = nn.Linear(64 * 7 * 7, num_classes)

    def forward(self, x):
        return self.fc(self.features(x).flatten(1))


class _ExtraLayer(_Body):  # a hidden layer in the head: more parameters than fc
    def __init__(self, num_classes=10):
        super().__init__(num_classes)
        self.hidden = nn.Linear(64, 64)

    def forward(self, x):
        return self.fc(F.relu(self.hidden(self.features(x).mean(dim=(2, 3)))))


class _NoPadding(_Body):
    def __init__(self, num_classes=10):
        super().__init__(num_classes)
        self.conv1 = nn.Conv2d(1, 32, 3)

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3)))


class _FixedClasses(_Body):  # ignores num_classes
    def __init__(self, num_classes=10):
        super().__init__(10)

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3)))


@pytest.mark.parametrize(
    ("wrong", "says"),
    [
        (_MaxHead, "largest value"),
        (_NoRelu, "not those of"),
        (_OnePool, "not those of"),
        (_FlattenHead, "one value per channel"),
        (_ExtraLayer, "besides conv1 and conv2"),
        (_NoPadding, "padding=1"),
        (_FixedClasses, "one score per class"),
    ],
)
def test_07_e3_wrong_networks_get_a_hint(wrong, says):
    assert says in rejected(checks.gap_cnn, wrong)


def test_07_e3_solution_accepted_placeholder_rejected(gap_cls):
    accepted(checks.gap_cnn, gap_cls)
    assert "no answer yet" in rejected(checks.gap_cnn, _solution("07-e3-answer", student=True)["GapCNN"])
    rejected(checks.gap_cnn, None)
    assert "not an instance" in rejected(checks.gap_cnn, gap_cls())


def test_07_e3_a_head_written_another_way_is_accepted():
    class SumOverCount(_Body):  # the mean written out; ReLU after pooling, as cu.SimpleCNN does
        def forward(self, x):
            x = F.relu(F.max_pool2d(self.conv1(x), 2))
            x = F.relu(F.max_pool2d(self.conv2(x), 2))
            return self.fc(x.flatten(2).sum(dim=2) / (x.shape[2] * x.shape[3]))

    accepted(checks.gap_cnn, SumOverCount)


def test_cheat_07_e3():
    class Adaptive(_Body):  # the pooling done by torch
        def __init__(self, num_classes=10):
            super().__init__(num_classes)
            self.gap = nn.AdaptiveAvgPool2d(1)

        def forward(self, x):
            return self.fc(self.gap(self.features(x)).flatten(1))

    assert "without nn.AdaptiveAvgPool2d" in rejected(checks.gap_cnn, Adaptive)

    class AdaptiveCall(_Body):
        def forward(self, x):
            return self.fc(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))

    assert "adaptive pooling" in rejected(checks.gap_cnn, AdaptiveCall)

    class SimpleCNNInside(cu.SimpleCNN):  # the course's model, its head swapped
        def __init__(self, num_classes=10):
            super().__init__()
            self.fc = nn.Linear(64, num_classes)

        def forward(self, x):
            x = F.relu(self.pool(self.conv1(x)))
            return self.fc(F.relu(self.pool(self.conv2(x))).mean(dim=(2, 3)))

    assert "your own network" in rejected(checks.gap_cnn, SimpleCNNInside)

    class BorrowsTheLayers(nn.Module):  # builds cu.SimpleCNN and takes its convolutions
        def __init__(self, num_classes=10):
            super().__init__()
            source = cu.SimpleCNN()
            self.conv1, self.conv2 = source.conv1, source.conv2
            self.fc = nn.Linear(64, num_classes)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.conv1(x)), 2)
            return self.fc(F.max_pool2d(F.relu(self.conv2(x)), 2).mean(dim=(2, 3)))

    assert "yourself" in rejected(checks.gap_cnn, BorrowsTheLayers)

    class ResNetInside(_Body):  # the lesson's SmallResNet does the work
        def __init__(self, num_classes=10):
            super().__init__(num_classes)
            self.net = ns.SmallResNet(num_classes=num_classes)

        def forward(self, x):
            return self.net(x)

    assert "yourself" in rejected(checks.gap_cnn, ResNetInside)

    class ByShape(_Body):  # remembers the visible sizes' answers: other sizes in grading
        def forward(self, x):
            h = self.features(x)
            if tuple(x.shape[2:]) in checks._GAP_SIZES:
                return self.fc(h.mean(dim=(2, 3)))
            return self.fc(h.flatten(2)[..., 0])

    assert checks.gap_cnn(ByShape)
    with pytest.raises(AssertionError):
        checks.grade(checks.gap_cnn, ByShape)


# ---------------------------------------------------------------------------------------------------------
# Exercise 4: MyResNet
# ---------------------------------------------------------------------------------------------------------
def test_07_e4_solution_accepted_placeholder_rejected(net_cls, block_cls):
    accepted(checks.my_resnet, net_cls, block_cls)

    class Skeleton(nn.Module):
        def __init__(self, widths=(32, 64, 128), num_classes=10, in_channels=1):
            super().__init__()
            ...

        def forward(self, x): ...

    assert "no answer yet" in rejected(checks.my_resnet, Skeleton, block_cls)
    rejected(checks.my_resnet, None, block_cls)
    assert "finish exercise 1" in rejected(checks.my_resnet, net_cls, _Skeleton)
    student = _solution("07-e4-answer", student=True, MyBlock=block_cls)["MyResNet"]
    assert "no answer yet" in rejected(checks.my_resnet, student, block_cls)


def test_cheat_07_e4(net_cls, block_cls):
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


def test_cheat_07_e4_transplants(block_cls):
    class Transplant(nn.Module):  # the lesson's network built, its layers moved in, its forward borrowed
        def __init__(self, widths=(32, 64, 128), num_classes=10, in_channels=1):
            super().__init__()
            ref = ns.SmallResNet(widths, num_classes=num_classes, in_channels=in_channels)
            self._modules.update(ref._modules)
            self.mine = nn.ModuleList(block_cls(w, w) for w in widths)  # three MyBlocks, never run

        def forward(self, x):
            return ns.SmallResNet.forward(self, x)

    assert "not from the lesson's" in rejected(checks.my_resnet, Transplant, block_cls)
