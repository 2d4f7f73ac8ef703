"""Notebook 04's exercise checks: each accepts the notebook's solution, refuses its placeholder (the student
edition's code) and refuses realistic ways of passing without understanding."""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Sequence
from typing import Any

import pytest
import torch
from support.exercises import accepted, answer_source, rejected
from torch import nn
from torchvision.models import resnet18
from torchvision.ops.misc import FrozenBatchNorm2d

import course_utils as cu
from course_machinery.checks import lesson04 as checks


@pytest.fixture(autouse=True)
def one_thread():
    """The checks train small models for a few steps: one thread is quicker than two competing ones here."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _answer_cell(exercise: str, *, student: bool = False) -> str:
    return answer_source(f"04-{exercise}-answer", student=student)


def _run(source: str) -> dict[str, Any]:
    """Run an answer cell in the names the notebook's setup cell defines."""
    namespace: dict[str, Any] = {
        "torch": torch,
        "nn": nn,
        "cu": cu,
        "resnet18": resnet18,
        "Sequence": Sequence,
    }
    exec(compile(source, "<answer cell>", "exec", dont_inherit=True), namespace)
    return namespace


def solution(exercise: str, name: str) -> Any:
    """What the teacher's edition's answer cell defines as ``name``."""
    return _run(_answer_cell(exercise))[name]


def placeholder(exercise: str, name: str) -> Any:
    """What the student edition's answer cell defines: the solution region replaced as nbgrader replaces it."""
    return _run(_answer_cell(exercise, student=True))[name]


# --- Exercise 1 (fix): freeze, then add the head ------------------------------------------------------------------


def test_e1_solution_accepted_and_broken_code_rejected():
    accepted(checks.feature_extractor, solution("e1", "feature_extractor"))
    line = rejected(checks.feature_extractor, placeholder("e1", "feature_extractor"))
    assert "backward() fails" in line


def test_e1_the_other_repair_is_accepted():
    def unfreeze_the_head_again(model: nn.Module, num_classes: int) -> nn.Module:
        model.fc = nn.Linear(model.fc.in_features, num_classes)
        for param in model.parameters():
            param.requires_grad = False
        model.fc.requires_grad_(True)
        return model

    accepted(checks.feature_extractor, unfreeze_the_head_again)


def _frozen_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with each BatchNorm2d replaced by an equal FrozenBatchNorm2d (what cu.resnet18_transfer does)."""
    if isinstance(module, nn.BatchNorm2d):
        frozen = FrozenBatchNorm2d(module.num_features, eps=module.eps)
        for key in ("weight", "bias", "running_mean", "running_var"):
            getattr(frozen, key).copy_(getattr(module, key).detach())
        return frozen
    for name, child in module.named_children():
        setattr(module, name, _frozen_batchnorm(child))
    return module


def test_e1_frozen_batchnorm_is_accepted():
    def with_frozen_batchnorm(model: nn.Module, num_classes: int) -> nn.Module:
        for name, child in model.named_children():  # section 4's advice: the frozen BatchNorm stays fixed too
            setattr(model, name, _frozen_batchnorm(child.requires_grad_(False)))
        model.fc = nn.Linear(model.fc.in_features, num_classes)
        return model

    accepted(checks.feature_extractor, with_frozen_batchnorm)


def test_cheat_04_e1():
    def package(model: nn.Module, num_classes: int) -> nn.Module:  # the package's helper does it right
        return cu.resnet18_transfer(num_classes, weights=None, verbose=False)

    assert "yourself" in rejected(checks.feature_extractor, package)
    rejected(checks.feature_extractor, cu.resnet18_transfer)

    def nothing_frozen(
        model: nn.Module, num_classes: int
    ) -> nn.Module:  # backward() works, the backbone trains
        model.fc = nn.Linear(model.fc.in_features, num_classes)
        return model

    assert "frozen backbone" in rejected(checks.feature_extractor, nothing_frozen)

    def resnet_only(model: nn.Module, num_classes: int) -> nn.Module:  # 512 typed in from ResNet18
        model.requires_grad_(False)
        model.fc = nn.Linear(512, num_classes)
        return model

    rejected(checks.feature_extractor, resnet_only)

    def new_model(model: nn.Module, num_classes: int) -> nn.Module:  # a fresh ResNet18: the weights are lost
        fresh = resnet18(weights=None)
        fresh.requires_grad_(False)
        fresh.fc = nn.Linear(512, num_classes)
        return fresh

    assert "weights" in rejected(checks.feature_extractor, new_model)

    def forgot_return(model: nn.Module, num_classes: int) -> None:
        model.requires_grad_(False)
        model.fc = nn.Linear(model.fc.in_features, num_classes)

    assert "returns nothing" in rejected(checks.feature_extractor, forgot_return)


# --- Exercise 2 (compute): count before you build -----------------------------------------------------------------


def test_e2_solution_accepted_and_placeholder_rejected():
    accepted(checks.head_parameters, solution("e2", "head_parameters"))
    assert "no answer yet" in rejected(checks.head_parameters, placeholder("e2", "head_parameters"))


def test_cheat_04_e2():
    rejected(
        checks.head_parameters, lambda in_features, num_classes: 2565
    )  # the count for ResNet18, 5 classes
    rejected(checks.head_parameters, lambda in_features, num_classes: 512 * num_classes + num_classes)
    rejected(checks.head_parameters, lambda in_features, num_classes: in_features * num_classes)  # no biases

    def built(in_features: int, num_classes: int) -> int:
        return sum(p.numel() for p in nn.Linear(in_features, num_classes).parameters())

    assert "without building" in rejected(checks.head_parameters, built)

    def counted(in_features: int, num_classes: int) -> int:
        model = cu.resnet18_transfer(num_classes, weights=None, verbose=False)
        return cu.count_parameters(model, trainable_only=True)

    assert "without building" in rejected(checks.head_parameters, counted)
    rejected(checks.head_parameters, lambda in_features, num_classes: "2565")

    def in_a_thread(in_features: int, num_classes: int) -> int:  # out of sight of a watch on one thread
        found: list[int] = []
        worker = threading.Thread(
            target=lambda: found.append(cu.count_parameters(nn.Linear(in_features, num_classes)))
        )
        worker.start()
        worker.join()
        return found[0]

    rejected(checks.head_parameters, in_a_thread)

    def unwatched(in_features: int, num_classes: int) -> int:  # the check's profiler switched off first
        sys.setprofile(None)
        return cu.count_parameters(nn.Linear(in_features, num_classes))

    assert "reaches past" in rejected(checks.head_parameters, unwatched)

    table = {(512, 5): 2565, (2048, 37): 75813, (512, 1000): 513000, (1280, 10): 12810, (768, 3): 2307}
    table[(64, 2)] = 130  # every case the check once tried, looked up

    def looked_up(in_features: int, num_classes: int) -> int:
        return table.get((in_features, num_classes), 0)

    rejected(checks.head_parameters, looked_up)

    def no_biases(in_features: int, num_classes: int) -> int:
        return in_features * num_classes

    assert "512 features" in rejected(checks.head_parameters, no_biases)  # the visible line names its case
    with pytest.raises(AssertionError) as graded:
        checks.grade(checks.head_parameters, no_biases)
    assert not re.search(r"\d", str(graded.value)), str(graded.value)  # the graded line names no hidden input


# --- Exercise 3 (build): fine-tune the blocks you name ------------------------------------------------------------


def test_e3_solution_accepted_and_placeholder_rejected():
    accepted(checks.fine_tuning_model, solution("e3", "fine_tuning_model"))
    assert "no answer yet" in rejected(checks.fine_tuning_model, placeholder("e3", "fine_tuning_model"))


def test_e3_freezing_by_parameter_names_is_accepted():
    def by_names(model: nn.Module, trainable: Sequence[str], num_classes: int) -> nn.Module:
        for name, param in model.named_parameters():
            param.requires_grad = name.split(".")[0] in trainable
        model.fc = nn.Linear(model.fc.in_features, num_classes)
        return model

    accepted(checks.fine_tuning_model, by_names)


def test_e3_frozen_batchnorm_in_the_frozen_blocks_is_accepted():
    def with_frozen_batchnorm(model: nn.Module, trainable: Sequence[str], num_classes: int) -> nn.Module:
        for name, child in model.named_children():
            if name not in trainable:
                setattr(model, name, _frozen_batchnorm(child.requires_grad_(False)))
        model.fc = nn.Linear(model.fc.in_features, num_classes)
        return model

    accepted(checks.fine_tuning_model, with_frozen_batchnorm)


def test_cheat_04_e3():
    def package(model: nn.Module, trainable: Sequence[str], num_classes: int) -> nn.Module:
        return cu.resnet18_transfer(num_classes, weights=None, unfreeze=tuple(trainable), verbose=False)

    assert "yourself" in rejected(checks.fine_tuning_model, package)

    def the_notebooks_blocks(model: nn.Module, trainable: Sequence[str], num_classes: int) -> nn.Module:
        for name, param in model.named_parameters():  # layer3 and layer4, as in the notebook's example
            param.requires_grad = name.startswith(("layer3.", "layer4."))
        model.fc = nn.Linear(model.fc.in_features, num_classes)
        return model

    rejected(checks.fine_tuning_model, the_notebooks_blocks)

    def head_first(model: nn.Module, trainable: Sequence[str], num_classes: int) -> nn.Module:
        model.fc = nn.Linear(model.fc.in_features, num_classes)  # the source's order again
        for name, param in model.named_parameters():
            param.requires_grad = name.split(".")[0] in trainable
        return model

    assert "head" in rejected(checks.fine_tuning_model, head_first)

    def only_the_head(model: nn.Module, trainable: Sequence[str], num_classes: int) -> nn.Module:
        return solution("e1", "feature_extractor")(model, num_classes)  # Exercise 1's answer, blocks ignored

    rejected(checks.fine_tuning_model, only_the_head)

    def every_batchnorm_frozen(model: nn.Module, trainable: Sequence[str], num_classes: int) -> nn.Module:
        for (
            name,
            param,
        ) in model.named_parameters():  # the blocks to fine-tune lose their BatchNorm's training
            param.requires_grad = name.split(".")[0] in trainable
        _frozen_batchnorm(model)
        model.fc = nn.Linear(model.fc.in_features, num_classes)
        return model

    assert "FrozenBatchNorm2d" in rejected(checks.fine_tuning_model, every_batchnorm_frozen)

    def convolutions_as_buffers(model: nn.Module, trainable: Sequence[str], num_classes: int) -> nn.Module:
        for name, module in list(
            model.named_modules()
        ):  # a frozen conv's weight made a buffer: not BatchNorm
            if isinstance(module, nn.Conv2d) and name.split(".")[0] not in trainable:
                weight = module.weight.detach()
                del module.weight
                module.register_buffer("weight", weight)
        for name, param in model.named_parameters():
            param.requires_grad = name.split(".")[0] in trainable
        model.fc = nn.Linear(model.fc.in_features, num_classes)
        return model

    assert "weights" in rejected(checks.fine_tuning_model, convolutions_as_buffers)


# --- Exercise 4 (build): two parameter groups ---------------------------------------------------------------------


def test_e4_solution_accepted_and_placeholder_rejected():
    accepted(checks.fine_tuning_optimizer, solution("e4", "fine_tuning_optimizer"))
    assert "no answer yet" in rejected(
        checks.fine_tuning_optimizer, placeholder("e4", "fine_tuning_optimizer")
    )


def test_cheat_04_e4():
    def the_notebooks_blocks(model: nn.Module, backbone_lr: float, head_lr: float) -> torch.optim.Adam:
        return torch.optim.Adam(
            [
                {"params": [*model.layer3.parameters(), *model.layer4.parameters()], "lr": backbone_lr},
                {"params": model.fc.parameters(), "lr": head_lr},
            ]
        )

    rejected(checks.fine_tuning_optimizer, the_notebooks_blocks)

    def everything_but_the_head(model: nn.Module, backbone_lr: float, head_lr: float) -> torch.optim.Adam:
        body = [p for n, p in model.named_parameters() if not n.startswith("fc.")]  # frozen ones too
        return torch.optim.Adam(
            [{"params": body, "lr": backbone_lr}, {"params": model.fc.parameters(), "lr": head_lr}]
        )

    assert "frozen" in rejected(checks.fine_tuning_optimizer, everything_but_the_head)

    def copied_rates(model: nn.Module, backbone_lr: float, head_lr: float) -> torch.optim.Adam:
        body = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("fc.")]
        return torch.optim.Adam([{"params": body, "lr": 1e-4}, {"params": model.fc.parameters(), "lr": 1e-3}])

    assert "learning rate" in rejected(checks.fine_tuning_optimizer, copied_rates)

    def head_first(model: nn.Module, backbone_lr: float, head_lr: float) -> torch.optim.Adam:
        body = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("fc.")]
        return torch.optim.Adam(
            [{"params": model.fc.parameters(), "lr": head_lr}, {"params": body, "lr": backbone_lr}]
        )

    rejected(checks.fine_tuning_optimizer, head_first)

    def one_rate(model: nn.Module, backbone_lr: float, head_lr: float) -> torch.optim.Adam:
        return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=head_lr)

    rejected(checks.fine_tuning_optimizer, one_rate)


@pytest.mark.parametrize("exercise", ["e1", "e2", "e3", "e4"])
def test_checks_leave_the_global_random_state_alone(exercise):
    names = {"e1": "feature_extractor", "e2": "head_parameters", "e3": "fine_tuning_model"}
    names["e4"] = "fine_tuning_optimizer"
    before = torch.random.get_rng_state()
    accepted(getattr(checks, names[exercise]), solution(exercise, names[exercise]))
    assert torch.equal(before, torch.random.get_rng_state())
