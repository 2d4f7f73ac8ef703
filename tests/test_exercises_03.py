"""Lesson 03's exercise checks: each accepts the solution, refuses the placeholder and refuses ways of cheating."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from support.exercises import accepted, in_ipython, rejected
from torch import nn

import course_utils as cu
from course_machinery.checks import lesson03 as checks

SETUP = (
    "from course_machinery.checks import lesson03 as checks\nimport course_utils as cu\nfrom torch import nn"
)


# ------------------------------------------------------------------------------ Exercise 1: BatchNorm's parameters


def test_03_e1_solution_and_placeholder():
    accepted(checks.bn_params, 1024)
    rejected(checks.bn_params, None)
    rejected(checks.bn_params, 2048)  # buffers counted too


def test_03_e1_typed_by_hand_in_ipython():
    assert in_ipython(SETUP, "answer_bn_params = 2 * 512", "checks.bn_params(answer_bn_params)").startswith(
        "✅"
    )


def test_cheat_03_e1():
    # Building the layer and counting is measuring, not predicting: refused even though the value is right.
    said = in_ipython(
        SETUP,
        "answer_bn_params = cu.count_parameters(nn.BatchNorm2d(512))",
        "checks.bn_params(answer_bn_params)",
    )
    assert said.startswith("❌") and "1024" not in said
    said = in_ipython(
        SETUP,
        "answer_bn_params = sum(p.numel() for p in nn.BatchNorm2d(512).parameters())",
        "checks.bn_params(answer_bn_params)",
    )
    assert said.startswith("❌")
    rejected(checks.bn_params, "1024")  # a string is not a number


# ---------------------------------------------------------------------------- Exercise 2: BatchNorm's forward


def batchnorm_solution(x, weight, bias, running_mean, running_var, momentum=0.1, eps=1e-5):
    mean = x.mean(dim=(0, 2, 3))
    var = x.var(dim=(0, 2, 3), unbiased=False)
    n = x.numel() / x.shape[1]
    y = (x - mean.view(1, -1, 1, 1)) / torch.sqrt(var.view(1, -1, 1, 1) + eps)
    y = weight.view(1, -1, 1, 1) * y + bias.view(1, -1, 1, 1)
    new_mean = (1 - momentum) * running_mean + momentum * mean
    new_var = (1 - momentum) * running_var + momentum * var * n / (n - 1)
    return y, new_mean, new_var


def test_03_e2_solution_and_placeholder():
    accepted(checks.batchnorm_train, batchnorm_solution)
    rejected(checks.batchnorm_train, lambda *args, **kwargs: None)


def test_03_e2_common_mistakes_are_refused():
    def biased_running_var(x, weight, bias, running_mean, running_var, momentum=0.1, eps=1e-5):
        y, new_mean, _ = batchnorm_solution(x, weight, bias, running_mean, running_var, momentum, eps)
        var = x.var(dim=(0, 2, 3), unbiased=False)
        return y, new_mean, (1 - momentum) * running_var + momentum * var

    def swapped_momentum(x, weight, bias, running_mean, running_var, momentum=0.1, eps=1e-5):
        y, _, new_var = batchnorm_solution(x, weight, bias, running_mean, running_var, momentum, eps)
        return y, momentum * running_mean + (1 - momentum) * x.mean(dim=(0, 2, 3)), new_var

    def over_all_values(x, weight, bias, running_mean, running_var, momentum=0.1, eps=1e-5):
        _, new_mean, new_var = batchnorm_solution(x, weight, bias, running_mean, running_var, momentum, eps)
        y = (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + eps)
        return weight.view(1, -1, 1, 1) * y + bias.view(1, -1, 1, 1), new_mean, new_var

    assert "variance" in rejected(checks.batchnorm_train, biased_running_var)
    assert "running mean" in rejected(checks.batchnorm_train, swapped_momentum)
    assert "channel" in rejected(checks.batchnorm_train, over_all_values)


def test_03_e2_eps_outside_the_root_is_found_by_the_hidden_cases():
    def eps_outside(x, weight, bias, running_mean, running_var, momentum=0.1, eps=1e-5):
        _, new_mean, new_var = batchnorm_solution(x, weight, bias, running_mean, running_var, momentum, eps)
        mean, var = x.mean(dim=(0, 2, 3), keepdim=True), x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
        y = (x - mean) / (torch.sqrt(var) + eps)
        return weight.view(1, -1, 1, 1) * y + bias.view(1, -1, 1, 1), new_mean, new_var

    with pytest.raises(AssertionError, match="eps"):
        checks.grade(checks.batchnorm_train, eps_outside)


def test_cheat_03_e2():
    def library(x, weight, bias, running_mean, running_var, momentum=0.1, eps=1e-5):
        y = F.batch_norm(
            x, running_mean, running_var, weight, bias, training=True, momentum=momentum, eps=eps
        )
        return y, running_mean, running_var

    def layer(x, weight, bias, running_mean, running_var, momentum=0.1, eps=1e-5):
        bn = nn.BatchNorm2d(x.shape[1], eps=eps, momentum=momentum)
        with torch.no_grad():
            bn.weight.copy_(weight), bn.bias.copy_(bias)
            bn.running_mean.copy_(running_mean), bn.running_var.copy_(running_var)
        return bn(x).detach(), bn.running_mean, bn.running_var

    def improved_cnn(x, weight, bias, running_mean, running_var, momentum=0.1, eps=1e-5):
        bn = cu.ImprovedCNN().bn1  # a BatchNorm2d taken from the package's model
        bn.num_features = x.shape[1]
        with torch.no_grad():
            bn.weight, bn.bias = nn.Parameter(weight.clone()), nn.Parameter(bias.clone())
            bn.running_mean, bn.running_var = running_mean.clone(), running_var.clone()
        bn.eps, bn.momentum = eps, momentum
        return bn(x).detach(), bn.running_mean, bn.running_var

    def instance_norm(x, weight, bias, running_mean, running_var, momentum=0.1, eps=1e-5):
        _, new_mean, new_var = batchnorm_solution(x, weight, bias, running_mean, running_var, momentum, eps)
        c = x.shape[1]
        flat = x.transpose(0, 1).reshape(1, c, -1)  # every value of a channel in one "instance"
        y = F.instance_norm(flat, eps=eps).reshape(c, x.shape[0], *x.shape[2:]).transpose(0, 1)
        return weight.view(1, -1, 1, 1) * y + bias.view(1, -1, 1, 1), new_mean, new_var

    for cheat in (library, layer, improved_cnn, instance_norm):
        assert "yourself" in rejected(checks.batchnorm_train, cheat), cheat.__name__


# --------------------------------------------------------------------------- Exercise 3: dropout's scaling factor


def test_03_e3_solution_and_placeholder():
    accepted(checks.dropout_scale, 1.25)
    assert in_ipython(
        SETUP, "dropout_scale = 1 / (1 - 0.2)", "checks.dropout_scale(dropout_scale)"
    ).startswith("✅")
    rejected(checks.dropout_scale, None)
    rejected(checks.dropout_scale, 0.8)  # the share kept, not the factor


def test_cheat_03_e3():
    said = in_ipython(
        SETUP + "\nimport torch",
        "dropout_scale = nn.Dropout(p=0.2).train()(torch.ones(1000)).max().item()",
        "checks.dropout_scale(dropout_scale)",
    )
    assert said.startswith("❌") and "1.25" not in said
    said = in_ipython(SETUP, "p = 0.2\ndropout_scale = 1 / (1 - p)", "checks.dropout_scale(dropout_scale)")
    assert said.startswith("❌")  # computed from a name: not typed as a value


# ------------------------------------------------------------------------------- Exercise 4: dropout by hand


def dropout_solution(x, p, training=True):
    if not training or p == 0:
        return x
    keep = torch.rand_like(x) >= p
    return x * keep / (1 - p)


def test_03_e4_solution_and_placeholder():
    accepted(checks.dropout_by_hand, dropout_solution)
    rejected(checks.dropout_by_hand, lambda x, p, training=True: None)


def test_03_e4_common_mistakes_are_refused():
    def no_scaling(x, p, training=True):
        return x * (torch.rand_like(x) >= p) if training else x

    def keep_probability(x, p, training=True):
        return x * (torch.rand_like(x) < p) / p if training else x

    def always(x, p, training=True):
        return dropout_solution(x, p, True)

    def one_mask_per_column(x, p, training=True):
        keep = torch.rand(x.shape[-1]) >= p
        return x * keep / (1 - p) if training else x

    def same_mask_every_call(x, p, training=True):
        g = torch.Generator().manual_seed(0)
        return x * (torch.rand(x.shape, generator=g) >= p) / (1 - p) if training else x

    def in_place(x, p, training=True):
        return x.mul_(torch.rand_like(x) >= p).div_(1 - p) if training else x

    for wrong in (no_scaling, keep_probability, always, one_mask_per_column, same_mask_every_call, in_place):
        rejected(checks.dropout_by_hand, wrong)


def test_cheat_03_e4():
    def library(x, p, training=True):
        return F.dropout(x, p, training)

    def layer(x, p, training=True):
        return nn.Dropout(p).train(training)(x)

    def torch_level(x, p, training=True):
        return torch.dropout(x, p, training)

    def improved_cnn(x, p, training=True):
        return cu.ImprovedCNN(dropout=p).dropout.train(training)(x)

    for cheat in (library, layer, torch_level, improved_cnn):
        assert "yourself" in rejected(checks.dropout_by_hand, cheat), cheat.__name__


# --------------------------------------------------------------------------- Exercise 5: evaluating correctly


def broken_val_accuracy(model, loader, device):
    correct = total = 0
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        outputs = model(images)
        correct += (outputs.argmax(dim=1) == labels).sum().item()
        total += len(labels)
    return correct / total


def repaired_val_accuracy(model, loader, device):
    was_training = model.training
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            outputs = model(images)
            correct += (outputs.argmax(dim=1) == labels).sum().item()
            total += len(labels)
    model.train(was_training)
    return correct / total


def test_03_e5_solution_and_placeholder():
    accepted(checks.val_accuracy, repaired_val_accuracy)
    assert "train mode" in rejected(checks.val_accuracy, broken_val_accuracy)  # what the learner starts from


def test_03_e5_partial_repairs_are_refused():
    def no_grad_only(model, loader, device):
        with torch.no_grad():
            return broken_val_accuracy(model, loader, device)

    def eval_only(model, loader, device):
        model.eval()
        with torch.no_grad():
            return broken_val_accuracy(model, loader, device)

    def back_to_train_always(model, loader, device):
        result = eval_only(model, loader, device)
        model.train()
        return result

    def eval_without_no_grad(model, loader, device):
        was_training = model.training
        model.eval()
        result = broken_val_accuracy(model, loader, device)
        model.train(was_training)
        return result

    def mean_of_batch_accuracies(model, loader, device):
        was_training = model.training
        model.eval()
        with torch.no_grad():
            accs = [
                (model(x.to(device)).argmax(dim=1) == y.to(device)).float().mean().item() for x, y in loader
            ]
        model.train(was_training)
        return sum(accs) / len(accs)

    assert "train mode" in rejected(checks.val_accuracy, no_grad_only)
    assert "mode" in rejected(checks.val_accuracy, eval_only)
    rejected(checks.val_accuracy, back_to_train_always)  # the hidden case hands over a model in eval mode
    assert "graph" in rejected(checks.val_accuracy, eval_without_no_grad)
    assert "share" in rejected(checks.val_accuracy, mean_of_batch_accuracies)


def test_cheat_03_e5():
    def package(model, loader, device):
        return cu.evaluate(model, loader, device=device)["acc"]

    def on_a_copy(model, loader, device):
        copied = copy.deepcopy(model).eval()
        with torch.no_grad():
            return broken_val_accuracy(copied, loader, device)

    assert "cu.evaluate" in rejected(checks.val_accuracy, package)
    assert "copy" in rejected(checks.val_accuracy, on_a_copy)
