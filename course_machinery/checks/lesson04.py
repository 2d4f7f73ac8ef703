"""Lesson 04's exercise checks: freezing in the right order, counting what trains, fine-tuning chosen blocks, and
an optimizer with a parameter group per learning rate.

Every check builds its own models (torchvision's ResNet18 with ``weights=None``, and a small network whose blocks
have other names), runs the learner's function on them and judges what it did: which parameters train and move in
a few training steps on small random images, what the optimizer holds. Nothing here downloads.
"""

from __future__ import annotations

import _thread
import multiprocessing
import os
import random
import subprocess
import threading
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torchvision.models import resnet18

from course_utils._models import count_parameters, resnet18_transfer

from ._feedback import NOT_YET, Verdict, failed, grade, number, passed, raised, unanswered, watch_calls

__all__ = ["grade", "feature_extractor", "head_parameters", "fine_tuning_model", "fine_tuning_optimizer"]

_HEAD = "fc"


class _SmallNet(nn.Module):
    """A small image classifier whose blocks are named unlike ResNet18's: stem, block1, block2, pool, fc."""

    def __init__(self, width: int, num_classes: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.block1 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.block2 = nn.Sequential(
            nn.Conv2d(16, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.block2(self.block1(self.stem(x)))))  # (batch, num_classes)


def _model(kind: str) -> nn.Module:
    """A model the check chooses: "resnet18" (torchvision's, 1000 classes, random weights) or "small:<width>"."""
    with (
        torch.random.fork_rng()
    ):  # the same weights every time, and the learner's random state stays as it was
        torch.manual_seed(404)
        if kind == "resnet18":
            return resnet18(weights=None)
        return _SmallNet(int(kind.split(":")[1]), num_classes=6)


def _input_shape(kind: str) -> tuple[int, int, int, int]:
    # Small images, so that a training step takes milliseconds on a CPU
    return (2, 3, 32, 32) if kind == "resnet18" else (4, 3, 16, 16)


def _block(name: str) -> str:
    return name.split(".", 1)[0]


def _forbidden() -> dict[str, Any]:
    return {"cu.resnet18_transfer": resnet18_transfer}


def _call_watched(fn: Callable[..., Any], *args: Any) -> tuple[Any, set[str]]:
    with watch_calls(_forbidden()) as seen:
        result = fn(*args)
    return result, set(seen)


def _judge_freezing(
    fn: Callable[..., Any],
    args: Callable[[nn.Module], tuple],
    kind: str,
    trainable: Sequence[str],
    num_classes: int,
    seed: int,
) -> Verdict | None:
    """Run ``fn`` on a model the check builds, train it a few steps, and judge what trained (None: all right)."""
    model = _model(kind)
    old_head, in_features = model.fc, model.fc.in_features
    before = {n: p.detach().clone() for n, p in model.named_parameters() if _block(n) != _HEAD}
    batchnorm = {  # the BatchNorm layers' parameters: a frozen one may hold them as buffers afterwards
        f"{m}.{k}" if m else k
        for m, module in model.named_modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm)
        for k, _ in module.named_parameters(recurse=False)
    }
    try:
        with torch.random.fork_rng():  # the new head's random weights repeat, and the global state is kept
            torch.manual_seed(seed)
            result, seen = _call_watched(fn, *args(model))
    except Exception as exc:  # the learner's error, reported as one line
        return raised(exc)
    if seen:
        return failed(
            "this exercise asks you to do the freezing yourself, on the model you are given: "
            "cu.resnet18_transfer builds a ResNet18 of its own."
        )
    if result is None:
        if model.fc is not old_head or any(not p.requires_grad for p in model.parameters()):
            return failed("your function returns nothing: return the model it prepared.")
        unanswered(result)
        return NOT_YET
    if not isinstance(result, nn.Module):
        return failed(f"your function returns a {type(result).__name__}: return the model it prepared.")
    head = getattr(result, _HEAD, None)
    if not isinstance(head, nn.Linear) or head.in_features != in_features or head.out_features != num_classes:
        return failed(
            f"for {num_classes} classes the model needs a new head fc: an nn.Linear from the features the "
            "backbone gives (the old head's in_features) to one output per class."
        )
    params = dict(result.named_parameters())
    buffers = dict(result.named_buffers())
    # A frozen BatchNorm may become a FrozenBatchNorm2d (as cu.resnet18_transfer does): its weight and bias are
    # then buffers, judged by their values; every other parameter of the backbone stays a parameter.
    as_buffers = {n for n in before if n not in params and n in batchnorm and n in buffers}
    kept = {n: params.get(n, buffers.get(n)) for n in before}
    if (
        {n for n in params if _block(n) != _HEAD} | as_buffers != set(before)
        or any(kept[n] is None or kept[n].shape != before[n].shape for n in before)
        or any(not torch.equal(kept[n].detach(), before[n]) for n in before)
    ):
        return failed(
            "the backbone's weights are not the ones the model came with: prepare the model you are given "
            "(its pretrained weights are the point of transfer learning); only the head is new."
        )
    # A few training steps, as any training loop would take them, on images and labels the check chooses
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(_input_shape(kind), generator=gen)
    labels = torch.randint(0, num_classes, (images.shape[0],), generator=gen)
    start = {**before, **{n: p.detach().clone() for n, p in params.items() if _block(n) == _HEAD}}
    result.train()
    for _ in range(2):
        loss = nn.functional.cross_entropy(result(images), labels)
        try:
            loss.backward()
        except RuntimeError:
            return failed(
                "backward() fails: no parameter of the model requires a gradient, not even the new head's. "
                "Which parameters exist when the freezing runs, and is a newly created layer trainable?"
            )
        with torch.no_grad():
            for p in params.values():
                if p.grad is not None:
                    p -= 0.1 * p.grad  # a plain SGD step on what has a gradient
                    p.grad = None
    should_train = {_HEAD, *trainable}
    if swapped := sorted({_block(n) for n in as_buffers} & should_train):
        return failed(
            f"{swapped[0]} is in the blocks to fine-tune, but its BatchNorm layers no longer train: only the "
            "frozen blocks' BatchNorm layers may become FrozenBatchNorm2d."
        )
    for block in dict.fromkeys(_block(n) for n in params):
        names = [n for n in params if _block(n) == block]
        grads = {params[n].requires_grad for n in names}
        moved = any(not torch.equal(params[n].detach(), start[n]) for n in names)
        if block == _HEAD and not (grads == {True} and moved):
            return failed(
                "the new head did not learn in training: fc must be trainable (requires_grad) after the "
                "freezing. Which parameters exist when the freezing runs?"
            )
        if block in should_train and not (grads == {True} and moved):
            return failed(
                f"{block} is in the blocks to fine-tune, but not all of it trained: every parameter of the "
                "blocks named in trainable keeps requires_grad=True."
            )
        if block not in should_train and (True in grads or moved):
            return failed(
                f"{block} changed in training, but it belongs to the frozen backbone: every parameter outside "
                f"the head{' and the blocks to fine-tune' if trainable else ''} needs requires_grad=False."
            )
    return None


# --- Exercise 1 (fix): freeze the backbone, then add the head ---------------------------------------------------


def feature_extractor(fn: Callable[[nn.Module, int], nn.Module], *, hidden: bool = False) -> Verdict:
    """Exercise 1: the repaired ``feature_extractor(model, num_classes)`` leaves only a new head trainable.

    Tried on torchvision's ResNet18 and on a small network with other block names, for class counts the notebook
    does not use; each model takes two training steps on random images and only the head may move.
    """
    if unanswered(fn):
        return NOT_YET
    if fn is resnet18_transfer:
        return failed("repair the function in the cell: cu.resnet18_transfer builds a ResNet18 of its own.")
    cases = [("resnet18", 3, 11), ("small:24", 4, 12)]
    if hidden:
        cases += [("resnet18", 10, 13), ("small:40", 2, 14), ("small:16", 7, 15)]
    for kind, num_classes, seed in cases:
        verdict = _judge_freezing(fn, lambda m, n=num_classes: (m, n), kind, (), num_classes, seed)
        if verdict is not None:
            return verdict
    return passed(
        "the backbone stays frozen, the new head trains, and backward() works, on a ResNet18 and another network."
    )


# --- Exercise 2 (compute): what trains in a feature extractor -------------------------------------------------


def _trainable_in_feature_extractor(in_features: int, num_classes: int) -> int:
    """Build the feature extractor and count its trainable parameters (the check's own way to the answer)."""
    with torch.random.fork_rng():  # building draws random weights: the learner's random state stays as it was
        if in_features == 512:  # ResNet18's backbone gives 512 features per image
            model = resnet18(weights=None)
        else:  # a backbone that ends in `in_features` features per image
            model = nn.Sequential(nn.Conv2d(3, in_features, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        model.requires_grad_(False)  # freeze, then the new head
        model.fc = nn.Linear(in_features, num_classes)
    return count_parameters(model, trainable_only=True)


def _head_cases(hidden: bool) -> list[tuple[int, int]]:
    """(in_features, num_classes) pairs: ResNet18 for 5 classes (the notebook's example), then pairs drawn afresh
    at every call, from the operating system's randomness, so that no table of answers can hold them."""
    draw = random.SystemRandom()
    cases = [(512, 5)]
    while len(cases) < (6 if hidden else 2):
        width = draw.randrange(16, 4097)
        if len(cases) > 1:  # the second case is always another backbone than ResNet18; later ones may be one
            width = draw.choice([512, width])
        num_classes = draw.randrange(2, 1001)
        if (len(cases) > 1 or width != 512) and num_classes not in _EARLIER_CLASSES:
            cases.append((width, num_classes))
    return cases


# The class counts this check once tried every time: never drawn, so that a table of their answers finds nothing.
_EARLIER_CLASSES = {5, 37, 1000, 10, 3, 2}


def head_parameters(fn: Callable[[int, int], int], *, hidden: bool = False) -> Verdict:
    """Exercise 2: ``head_parameters(in_features, num_classes)`` counts what trains in a feature extractor.

    The expected counts come from models the check builds (a ResNet18 for 5 classes, and backbone widths and class
    counts drawn afresh at every call), not from a stored number; the learner's function may not build a model or
    count one, in any thread, nor switch off the watching.
    """
    if unanswered(fn):
        return NOT_YET
    building = {
        "nn.Module.__init__": nn.Module.__init__,  # building any layer or model
        "cu.count_parameters": count_parameters,
        "cu.resnet18_transfer": resnet18_transfer,
    }
    elsewhere = {  # another thread or process, where a count could be made out of the watch's sight
        "threading.Thread.start": threading.Thread.start,
        "_thread.start_new_thread": _thread.start_new_thread,
        "subprocess.Popen": subprocess.Popen.__init__,
        "multiprocessing": multiprocessing.process.BaseProcess.start,
        "os.system": os.system,
        **{f"os.{name}": getattr(os, name) for name in ("fork", "posix_spawn") if hasattr(os, name)},
    }
    for in_features, num_classes in _head_cases(hidden):
        try:
            with watch_calls({**building, **elsewhere}) as seen:
                answer = fn(in_features, num_classes)
        except Exception as exc:
            return raised(exc)
        if seen & set(building):
            return failed(
                "work the count out from the head's shape, without building a layer or a model and counting it."
            )
        if seen:  # a thread, a process, or switching off (sys.setprofile) or inspecting the check
            return failed(
                "your function reaches past its arguments (another thread or process, the profiler, the check's "
                "frames): work the count out from the head's shape, with arithmetic alone."
            )
        if answer is None:
            unanswered(answer)
            return NOT_YET
        value = number(answer)
        if value is None:
            return failed(f"your function returns {answer!r}: return the count as a whole number.")
        if value != _trainable_in_feature_extractor(in_features, num_classes):
            if hidden:  # the graded line names no input: the next run draws others anyway
                return failed(
                    "for one of the backbone widths and class counts tried, your count is not the number of "
                    "parameters that train. Only the new head trains: count its weights and its biases."
                )
            return failed(
                f"for {in_features} features and {num_classes} classes your function returns {answer!r}, not the "
                "number of parameters that train. Only the new head trains: count its weights and its biases."
            )
    return passed("your count holds for every backbone width and number of classes tried.")


# --- Exercise 3 (build): fine-tune the blocks you name -----------------------------------------------------------


def fine_tuning_model(
    fn: Callable[[nn.Module, Sequence[str], int], nn.Module], *, hidden: bool = False
) -> Verdict:
    """Exercise 3: ``fine_tuning_model(model, trainable, num_classes)`` freezes all but the named blocks and the head.

    Tried on torchvision's ResNet18 and on a network whose blocks have other names, with block lists and class
    counts the notebook does not use; each model takes two training steps, and exactly the named blocks and the
    head may move.
    """
    if unanswered(fn):
        return NOT_YET
    if fn is resnet18_transfer:
        return failed("write the function yourself: cu.resnet18_transfer builds a ResNet18 of its own.")
    cases = [("resnet18", ("layer2", "layer4"), 7, 21), ("small:24", ["block2"], 3, 22)]
    if hidden:
        cases += [
            ("resnet18", ["layer1"], 10, 23),
            ("small:32", ("stem", "block1"), 5, 24),
            ("small:16", [], 2, 25),
            ("resnet18", ["conv1", "bn1", "layer3", "layer4"], 4, 26),
        ]
    for kind, trainable, num_classes, seed in cases:
        verdict = _judge_freezing(
            fn, lambda m, t=trainable, n=num_classes: (m, t, n), kind, list(trainable), num_classes, seed
        )
        if verdict is not None:
            return verdict
    return passed("exactly the blocks you name and the new head train, on a ResNet18 and on another network.")


# --- Exercise 4 (build): two parameter groups --------------------------------------------------------------------


def _prepared(kind: str, trainable: Sequence[str], num_classes: int, seed: int) -> nn.Module:
    """A model ready for fine-tuning, prepared by the check: ``trainable`` blocks and a new head train."""
    model = _model(kind)
    model.requires_grad_(False)
    for name in trainable:
        getattr(model, name).requires_grad_(True)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def fine_tuning_optimizer(fn: Callable[[nn.Module, float, float], Any], *, hidden: bool = False) -> Verdict:
    """Exercise 4: ``fine_tuning_optimizer(model, backbone_lr, head_lr)`` is Adam with two parameter groups.

    The check prepares models with other trainable blocks than the notebook's and passes learning rates of its
    own; the first group must hold exactly the trainable parameters outside the head, the second the head's.
    """
    if unanswered(fn):
        return NOT_YET
    cases = [("resnet18", ["layer3"], 3e-5, 2e-3, 31), ("small:24", ["block1", "block2"], 5e-4, 1e-2, 32)]
    if hidden:
        cases += [
            ("resnet18", ["layer2", "layer3", "layer4"], 1e-5, 1e-3, 33),
            ("small:16", ["stem"], 2e-4, 3e-3, 34),
        ]
    for kind, trainable, backbone_lr, head_lr, seed in cases:
        model = _prepared(kind, trainable, 3, seed)
        try:
            optimizer = fn(model, backbone_lr, head_lr)
        except Exception as exc:
            return raised(exc)
        if optimizer is None:
            unanswered(optimizer)
            return NOT_YET
        if not isinstance(optimizer, torch.optim.Adam):
            return failed(f"your function returns a {type(optimizer).__name__}: build a torch.optim.Adam.")
        groups = optimizer.param_groups
        if len(groups) != 2:
            return failed(
                f"the optimizer has {len(groups)} parameter group(s): pass Adam a list of two dicts, "
                "each with its 'params' and its 'lr'."
            )
        ids = [{id(p) for p in g["params"]} for g in groups]
        frozen = {id(p) for p in model.parameters() if not p.requires_grad}
        head = {id(p) for p in model.fc.parameters()}
        body = {id(p) for n, p in model.named_parameters() if p.requires_grad and _block(n) != _HEAD}
        if frozen & (ids[0] | ids[1]):
            return failed(
                "the optimizer holds frozen parameters: give it only the parameters that train (requires_grad)."
            )
        if ids[1] != head:
            return failed(
                "the second group holds the head's parameters, those of model.fc, and nothing else."
            )
        if ids[0] != body:
            return failed(
                f"with {', '.join(trainable)} trainable, the first group misses some of their parameters or holds "
                "others: it holds every trainable parameter outside the head, whichever blocks those are."
            )
        if not (number(groups[0]["lr"]) == backbone_lr and number(groups[1]["lr"]) == head_lr):
            return failed(
                "a group's learning rate is not the one passed for it: the first group (the backbone's blocks) "
                "takes backbone_lr, the second (the head) head_lr."
            )
    return passed(
        "two groups, the trainable blocks at backbone_lr then the head at head_lr, for every model tried."
    )
