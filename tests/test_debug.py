"""Tests for lesson 08's debugging tools and the worked example's check (lesson08.fixed_run): hooks always
removed, models left unchanged, honest numbers, and a clear message when there is nothing to train."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import course_utils as cu
from course_machinery.checks import lesson08
from course_machinery.checks.lesson08 import _ROUTINE
from course_machinery.lessons import lesson_code

ns = lesson_code("08")  # the tools as notebook 08 writes them
LayerStats, layer_stats, loss_at_init = ns.LayerStats, ns.layer_stats, ns.loss_at_init
lr_range_test, overfit_one_batch = ns.lr_range_test, ns.overfit_one_batch
input_independent_baseline, batch_dependencies = ns.input_independent_baseline, ns.batch_dependencies

MEAN, STD = 0.1, 0.25  # the digits fixture's normalisation


def tiny_cnn(batchnorm: bool = False) -> nn.Sequential:
    """A small CNN with ReLU modules (hooks see them), fast enough for many short runs."""
    norm = nn.BatchNorm2d if batchnorm else (lambda channels: nn.Identity())
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        norm(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        norm(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 7 * 7, 10),
    )


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def hook_count(model: nn.Module, loss_fn: nn.Module | None = None) -> int:
    modules = list(model.modules()) + ([loss_fn] if loss_fn is not None else [])
    count = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in modules)
    return count + sum(len(p._post_accumulate_grad_hooks or {}) for p in model.parameters())


# ---------------------------------------------------------------------------------------------------------
# LayerStats and layer_stats
# ---------------------------------------------------------------------------------------------------------
def test_layer_stats_removes_its_hooks_even_after_an_error(digits):
    model, loss_fn = tiny_cnn(), nn.CrossEntropyLoss()
    images, labels = next(iter(digits[0]))
    with LayerStats(model, loss_fn=loss_fn) as stats:
        assert hook_count(model, loss_fn) > 0
        loss_fn(model(images), labels).backward()
    assert hook_count(model, loss_fn) == 0
    assert len(stats.losses) == 1 and stats.records["9"]["grad_norm"]  # "9" is the Linear layer

    with pytest.raises(RuntimeError, match="boom"), LayerStats(model, loss_fn=loss_fn):
        model(images)
        raise RuntimeError("boom")
    assert hook_count(model, loss_fn) == 0


def test_dead_and_zero_fractions_on_a_constructed_layer():
    layer = nn.Linear(2, 4)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]]))
        layer.bias.copy_(torch.tensor([0.0, 0.0, -1.0, 0.0]))  # unit 2 always negative, unit 3 always 0
    model = nn.Sequential(layer, nn.ReLU())
    x = torch.tensor([[1.0, -1.0], [2.0, 3.0], [-1.0, 1.0]])  # unit 0: 1, 2, 0; unit 1: 0, 3, 1
    with LayerStats(model) as stats:
        model(x)
    relu = stats.records["1"]
    assert relu["dead_frac"] == [0.5]  # units 2 and 3 are 0 for every input
    assert relu["zero_frac"] == [pytest.approx(8 / 12)]  # 2 zeros in units 0-1, 6 in units 2-3


def test_a_forgotten_zero_grad_shows_as_growing_gradients(digits):
    model, loss_fn = tiny_cnn(), nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: the same gradient every step
    images, labels = next(iter(digits[0]))
    with LayerStats(model) as stats:
        for _ in range(3):
            loss_fn(model(images), labels).backward()  # no zero_grad: .grad accumulates
            optimizer.step()
    norms = stats.records["9"]["grad_norm"]
    assert norms[1] == pytest.approx(2 * norms[0], rel=1e-4) and norms[2] == pytest.approx(
        3 * norms[0], rel=1e-4
    )
    assert stats.records["9"]["update_ratio"] == [0.0, 0.0]  # lr 0: the weights never move


def test_layer_stats_only_counts_training_passes(digits):
    model = tiny_cnn()
    images, _ = next(iter(digits[0]))
    with LayerStats(model) as stats, torch.no_grad():
        model(images)
    assert all(not any(r.values()) for r in stats.records.values()) and stats.first_batch is None


def test_layer_stats_keeps_the_first_batch_and_the_losses(digits):
    model, loss_fn = tiny_cnn(), nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    batches = [next(iter(digits[0])) for _ in range(2)]
    with LayerStats(model, loss_fn=loss_fn) as stats:
        for images, labels in batches:
            loss = loss_fn(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    assert torch.equal(stats.first_batch[0], batches[0][0]) and torch.equal(
        stats.first_batch[1], batches[0][1]
    )
    assert len(stats.losses) == 2 and len(stats.records["0"]["grad_norm"]) == 2
    assert len(stats.records["0"]["update_ratio"]) == 1  # an update is measured at the next forward pass


def test_a_frozen_layer_shows_no_gradient(digits):
    model, loss_fn = tiny_cnn(), nn.CrossEntropyLoss()
    model[0].requires_grad_(False)
    images, labels = next(iter(digits[0]))
    with LayerStats(model) as stats:
        loss_fn(model(images), labels).backward()
    assert stats.records["0"]["grad_norm"] == [] and stats.records["9"]["grad_norm"]
    row = next(line for line in stats.table().splitlines() if line.startswith("0 Conv2d"))
    assert row.split()[-2:] == ["-", "-"]


def test_layer_stats_needs_modules():
    with pytest.raises(ValueError, match="no layer"):
        LayerStats(nn.Sequential(nn.Flatten()))


def test_layer_stats_function_leaves_the_model_as_it_was(digits):
    model, loss_fn = tiny_cnn(batchnorm=True), nn.CrossEntropyLoss()
    images, labels = next(iter(digits[0]))
    before = state(model)
    stats = layer_stats(model, images, labels, loss_fn)
    assert same_state(before, state(model))  # BatchNorm's running statistics too
    assert all(p.grad is None for p in model.parameters()) and hook_count(model) == 0
    assert "grad norm" in stats.table() and stats.records["0"]["grad_norm"]
    stats.plot()


def test_layer_stats_function_shows_the_activations_of_a_frozen_model(digits):
    model = tiny_cnn().requires_grad_(False)
    images, labels = next(iter(digits[0]))
    stats = layer_stats(model, images, labels, nn.CrossEntropyLoss())
    assert stats.records["0"]["act_std"] and stats.records["9"]["grad_norm"] == []


# ---------------------------------------------------------------------------------------------------------
# loss_at_init, overfit_one_batch, lr_range_test
# ---------------------------------------------------------------------------------------------------------
def test_loss_at_init_is_about_ln_10_for_a_fresh_simple_cnn(digits, capsys):
    cu.set_seed(0)
    images, labels = next(iter(digits[0]))
    model = cu.SimpleCNN()
    loss = loss_at_init(model, images, labels, nn.CrossEntropyLoss())
    assert abs(loss - math.log(10)) < 0.1
    assert "ln(10) = 2.3026" in capsys.readouterr().out
    assert model.training  # computed in eval mode, on a copy


def sgd(params):
    return torch.optim.SGD(params, lr=0.05, momentum=0.9)


def test_overfit_one_batch_fits_and_leaves_the_model_as_it_was(digits):
    cu.set_seed(0)
    model, loss_fn = tiny_cnn(batchnorm=True), nn.CrossEntropyLoss()
    model[1].eval()  # a mode the learner chose on purpose
    images, labels = next(iter(digits[0]))
    before = state(model)
    result = overfit_one_batch(model, images[:16], labels[:16], loss_fn, sgd, steps=60, verbose=False)
    assert result.fits and result.acc == 1.0 and len(result.losses) == 60
    assert same_state(before, state(model))  # BatchNorm's running statistics too
    assert all(p.grad is None for p in model.parameters())
    assert model.training and not model[1].training


def test_overfit_one_batch_sees_that_softmax_before_the_loss_cannot_fit(digits):
    cu.set_seed(0)
    model = nn.Sequential(tiny_cnn(), nn.Softmax(dim=1))  # probabilities fed to CrossEntropyLoss
    images, labels = next(iter(digits[0]))
    result = overfit_one_batch(
        model,
        images[:16],
        labels[:16],
        nn.CrossEntropyLoss(),
        lambda params: torch.optim.Adam(params, lr=1e-2),
        steps=60,
        verbose=False,
    )
    assert not result.fits and min(result.losses) > 1.46  # -log(e / (e + 9)) = 1.4612 is its floor


def test_lr_range_test_leaves_the_model_as_it_was(digits):
    cu.set_seed(0)
    model, loss_fn = tiny_cnn(batchnorm=True), nn.CrossEntropyLoss()
    images, labels = next(iter(digits[0]))
    loss_fn(model(images), labels).backward()  # gradients exist
    model[1].eval()  # a mode the learner chose on purpose
    before = state(model)
    grads = [p.grad.clone() for p in model.parameters()]

    result = lr_range_test(model, digits[0], loss_fn, sgd, start_lr=1e-4, end_lr=100.0, steps=30)

    assert same_state(before, state(model))
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads, strict=True))
    assert model.training and not model[1].training
    assert len(result.lrs) == len(result.losses) == len(result.raw_losses) >= 2
    assert result.lrs == sorted(result.lrs) and 1e-4 <= result.suggestion <= 10
    result.plot(mark={"mine": 0.01})


def test_lr_range_test_stops_when_the_loss_explodes(digits):
    cu.set_seed(0)
    model = tiny_cnn()
    result = lr_range_test(
        model,
        digits[0],
        nn.CrossEntropyLoss(),
        lambda params: torch.optim.SGD(params, lr=1.0),
        start_lr=1e-3,
        end_lr=1e4,
        steps=60,
    )
    assert len(result.lrs) < 60 and result.suggestion < 1e3


def test_lr_range_test_says_what_is_wrong():
    model = tiny_cnn()
    with pytest.raises(ValueError, match="start_lr"):
        lr_range_test(model, [], nn.CrossEntropyLoss(), sgd, start_lr=1, end_lr=0.1)
    with pytest.raises(ValueError, match="no batches"):
        lr_range_test(model, [], nn.CrossEntropyLoss(), sgd)
    batch = [(torch.zeros(1, 1, 28, 28), torch.zeros(1).long())]
    with pytest.raises(TypeError, match="optimizer"):
        lr_range_test(model, batch, nn.CrossEntropyLoss(), 0.1)
    with pytest.raises(TypeError, match="function that builds the optimizer"):  # the tools train a copy
        lr_range_test(model, batch, nn.CrossEntropyLoss(), sgd(model.parameters()))
    with pytest.raises(ValueError, match="parameters make_optimizer is given"):
        lr_range_test(model, batch, nn.CrossEntropyLoss(), lambda params: sgd(model.parameters()))


# ---------------------------------------------------------------------------------------------------------
# input_independent_baseline and batch_dependencies (Karpathy's recipe)
# ---------------------------------------------------------------------------------------------------------
def test_input_independent_baseline_tells_a_model_that_uses_its_inputs(digits, capsys):
    cu.set_seed(0)
    model, loss_fn = tiny_cnn(batchnorm=True), nn.CrossEntropyLoss()
    model[1].eval()  # a mode the learner chose on purpose
    before = state(model)
    result = input_independent_baseline(model, digits[0], digits[1], loss_fn, sgd, steps=40)
    assert result.uses_inputs and result.real["acc"] > 0.5
    assert result.real["loss"] < 0.5 * result.zeroed["loss"]
    assert result.zeroed["acc"] < 0.35 and result.real["n"] == result.zeroed["n"] == len(digits[1].labels)
    assert same_state(before, state(model)) and all(p.grad is None for p in model.parameters())
    assert model.training and not model[1].training
    assert "it uses its inputs" in capsys.readouterr().out


def test_input_independent_baseline_sees_a_model_that_ignores_its_inputs(digits, capsys):
    class Blind(nn.Module):  # answers from its own bias only: its input never reaches the output
        def __init__(self) -> None:
            super().__init__()
            self.bias = nn.Parameter(torch.zeros(10))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bias.expand(len(x), 10)

    result = input_independent_baseline(Blind(), digits[0], digits[1], nn.CrossEntropyLoss(), sgd, steps=20)
    assert not result.uses_inputs
    assert result.real["loss"] == pytest.approx(result.zeroed["loss"], abs=0.02)  # other batches, same bias
    assert "does NOT clearly beat zeros" in capsys.readouterr().out


def test_input_independent_baseline_needs_something_to_train(digits):
    with pytest.raises(ValueError, match="nothing to train"):
        input_independent_baseline(
            tiny_cnn().requires_grad_(False), digits[0], digits[1], nn.CrossEntropyLoss(), sgd, steps=2
        )


class MixingFlatten(nn.Module):
    """A flatten with the bug the notebook shows: view(-1, batch).t() mixes numbers of different images."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(-1, len(x)).t()


def others(grads: torch.Tensor, i: int) -> torch.Tensor:
    return torch.cat([grads[:i], grads[i + 1 :]])


def test_batch_dependencies_finds_only_the_image_itself_in_a_sound_model(digits):
    images, _ = next(iter(digits[0]))
    model = tiny_cnn()
    grads = batch_dependencies(model, images[:6], i=2)
    assert grads.shape == (6,) and grads[2] > 0 and torch.all(others(grads, 2) == 0)
    assert all(p.grad is None for p in model.parameters())


def test_batch_dependencies_finds_a_view_that_mixes_the_batch(digits):
    images, _ = next(iter(digits[0]))
    model = tiny_cnn()
    model[8] = MixingFlatten()  # in place of nn.Flatten()
    grads = batch_dependencies(model, images[:6], i=2)
    assert grads.shape == (6,) and torch.all(others(grads, 2) > 0)


def test_batch_dependencies_finds_batchnorm_in_train_mode_and_leaves_its_statistics(digits):
    images, _ = next(iter(digits[0]))
    model = tiny_cnn(batchnorm=True)
    before = state(model)
    assert torch.all(
        others(batch_dependencies(model, images[:6], i=0), 0) > 0
    )  # train mode: the batch's stats
    assert same_state(before, state(model)) and model.training  # the running statistics of a copy moved
    assert torch.all(others(batch_dependencies(model.eval(), images[:6], i=0), 0) == 0)  # eval: running stats


def test_batch_dependencies_works_on_a_frozen_model(digits):
    images, _ = next(iter(digits[0]))
    grads = batch_dependencies(tiny_cnn().requires_grad_(False), images[:4], i=3)
    assert grads[3] > 0 and torch.all(grads[:3] == 0)


# ---------------------------------------------------------------------------------------------------------
# Nothing to train: a clear ValueError, not PyTorch's "element 0 of tensors does not require grad"
# ---------------------------------------------------------------------------------------------------------
def only_first_conv(params):
    """An optimizer holding only the first convolution's weight and bias (frozen in the test below)."""
    return torch.optim.SGD(list(params)[:2], lr=0.05)


@pytest.mark.parametrize("tool", ["overfit_one_batch", "lr_range_test"])
def test_nothing_to_train_raises_a_clear_error(digits, tool):
    images, labels = next(iter(digits[0]))

    def run(model, make_optimizer):
        if tool == "overfit_one_batch":
            return overfit_one_batch(
                model, images[:8], labels[:8], nn.CrossEntropyLoss(), make_optimizer, steps=2, verbose=False
            )
        return lr_range_test(model, digits[0], nn.CrossEntropyLoss(), make_optimizer, steps=3)

    frozen = tiny_cnn().requires_grad_(False)  # every parameter frozen
    with pytest.raises(ValueError, match=r"nothing to train.*requires_grad=False.*Unfreeze"):
        run(frozen, sgd)

    model = tiny_cnn()
    model[0].requires_grad_(False)  # the rest is trainable, but the optimizer holds only this layer
    before = state(model)
    with pytest.raises(ValueError, match=r"no trainable parameter.*requires_grad=False.*p\.requires_grad"):
        run(model, only_first_conv)
    assert same_state(before, state(model))


# ---------------------------------------------------------------------------------------------------------
# check_fixed_run: a correct setup passes, each broken one fails without naming its bug
# ---------------------------------------------------------------------------------------------------------
def make_run(bug: str | None = None):
    """A training run like the notebook's, with one of its bugs (or none)."""

    def run(model, loss_fn, train_images, train_labels, val_images, steps):
        lr = 0.05 * (100 if bug == "lr" else 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        scale = 1 if bug == "pixels" else 255
        images = (train_images.float() / scale - MEAN) / STD
        if bug == "labels":
            images, labels = images[torch.randperm(len(images))], train_labels[torch.randperm(len(images))]
        else:
            order = torch.randperm(len(images))
            images, labels = images[order], train_labels[order]
        model.train()
        for step in range(steps):
            start = step * 32 % len(images)
            outputs = model(images[start : start + 32])
            loss = loss_fn(
                outputs.softmax(dim=1) if bug == "softmax" else outputs, labels[start : start + 32]
            )
            if bug != "zero_grad":
                optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            return torch.cat(
                [model((c.float() / scale - MEAN) / STD).argmax(dim=1) for c in val_images.split(32)]
            )

    return run


BUGS = ["labels", "zero_grad", "softmax", "pixels", "lr"]  # what the notebook's exercises check
STEPS, TARGET = 60, 0.8
REVEALING = ["label", "zero_grad", "softmax", "255", "pixel", "learning rate", "lr", "normali"]


@pytest.fixture
def bundle(digits):
    train, test = digits
    return SimpleNamespace(train=train, val=test)


def test_fixed_run_passes_a_correct_setup(bundle, capsys):
    verdict = lesson08.fixed_run(make_run(), bundle, make_model=tiny_cnn, steps=STEPS, target=TARGET)
    out = capsys.readouterr().out
    assert verdict.passed and out.startswith("✅ Correct") and out.count("\n") == 1, out


@pytest.mark.parametrize("bug", BUGS)
def test_fixed_run_fails_each_broken_setup_without_naming_the_bug(bundle, bug, capsys):
    verdict = lesson08.fixed_run(make_run(bug), bundle, make_model=tiny_cnn, steps=STEPS, target=TARGET)
    out = capsys.readouterr().out
    assert not verdict.passed and out.startswith("❌ Not yet:") and out.count("\n") == 1, out
    symptom = out.replace(_ROUTINE, "")  # the routine's steps are named the same way for every failure
    assert not any(word in symptom.lower() for word in REVEALING), out


def test_fixed_run_leaves_the_random_state_alone(bundle, capsys):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    lesson08.fixed_run(make_run(), bundle, make_model=tiny_cnn, steps=2, target=0.0)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize(
    ("run", "words"),
    [
        (None, "there is no answer yet"),
        (..., "there is no answer yet"),
        ("run_fixed()", "give your function itself"),
        (lambda *args: 1 / 0, "raised ZeroDivisionError"),
        (
            lambda model, loss_fn, x, y, val_images, steps: model(val_images.float()),
            "one predicted class index",
        ),
    ],
)
def test_fixed_run_answers_odd_answers_in_one_line(bundle, run, words, capsys):
    verdict = lesson08.fixed_run(run, bundle, make_model=tiny_cnn, steps=STEPS, target=TARGET)
    out = capsys.readouterr().out
    assert not verdict.passed and words in out and out.count("\n") == 1, out


def test_fixed_run_refuses_a_longer_budget(bundle, capsys):
    def greedy(model, loss_fn, train_images, train_labels, val_images, steps):
        return make_run()(model, loss_fn, train_images, train_labels, val_images, steps * 2)

    assert not lesson08.fixed_run(greedy, bundle, make_model=tiny_cnn, steps=5, target=0.0)
    assert "5 steps only" in capsys.readouterr().out
