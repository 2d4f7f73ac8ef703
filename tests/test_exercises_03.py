"""Lesson 03's exercise checks: each accepts the solution, refuses the placeholder and refuses ways of cheating."""

from __future__ import annotations

import copy
import warnings

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


def _check_frames():
    """The frames above the learner's function, as a traceback reaches them (no sys._getframe, which is watched)."""
    try:
        raise RuntimeError
    except RuntimeError as exc:
        frame = exc.__traceback__.tb_frame.f_back  # the cheat's own frame, then its callers
    while frame is not None:
        yield frame
        frame = frame.f_back


def _silence_the_watch():
    """What a cheat does with the check's frames: empty every set of names it finds there."""
    for frame in _check_frames():
        for value in list(frame.f_locals.values()):
            if isinstance(value, set) and all(isinstance(v, str) for v in value):
                value.clear()


def _read_from_the_check(*names):
    """What a cheat reads from the check's frames: the first frame that holds all of ``names``."""
    for frame in _check_frames():
        found = frame.f_locals
        if all(name in found for name in names):
            return tuple(found[name] for name in names)
    return None


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


def _by_operator(normalise):
    """A cheat whose y comes from ``normalise(x, weight, bias, eps)`` (torch's own normalisation, reached below
    the Python functions), with the running statistics worked out by hand: only y is borrowed."""

    def cheat(x, weight, bias, running_mean, running_var, momentum=0.1, eps=1e-5):
        _, new_mean, new_var = batchnorm_solution(x, weight, bias, running_mean, running_var, momentum, eps)
        return normalise(x, weight, bias, eps), new_mean, new_var

    return cheat


def _per_channel(x):
    """(channels, batch * height * width): every value of a channel in one row."""
    return x.transpose(0, 1).reshape(x.shape[1], -1)


def _from_rows(rows, x, weight, bias):
    y = rows.reshape(x.shape[1], x.shape[0], *x.shape[2:]).transpose(0, 1)
    return weight.view(1, -1, 1, 1) * y + bias.view(1, -1, 1, 1)


with warnings.catch_warnings():  # torch.jit.script is deprecated, but still runs
    warnings.simplefilter("ignore")

    @torch.jit.script
    def _scripted_batch_norm(x, weight, bias, eps: float):
        c = x.shape[1]
        return F.batch_norm(x, torch.zeros(c), torch.ones(c), weight, bias, True, 0.1, eps)

    @torch.jit.script
    def _scripted_dropout(x, p: float, training: bool):
        return F.dropout(x, p, training)


def test_cheat_03_e2_operators_below_the_python_functions():
    aten = torch.ops.aten

    def stats(x):
        c = x.shape[1]
        return torch.zeros(c), torch.ones(c)

    routes = {
        "aten.native_batch_norm": lambda x, w, b, eps: aten.native_batch_norm(
            x, w, b, *stats(x), True, 0.1, eps
        )[0],
        "aten.batch_norm": lambda x, w, b, eps: aten.batch_norm(x, w, b, *stats(x), True, 0.1, eps, False),
        "aten._native_batch_norm_legit": lambda x, w, b, eps: aten._native_batch_norm_legit(
            x, w, b, *stats(x), True, 0.1, eps
        )[0],
        "torch._native_batch_norm_legit": lambda x, w, b, eps: torch._native_batch_norm_legit(
            x, w, b, *stats(x), True, 0.1, eps
        )[0],
        "torch._batch_norm_impl_index": lambda x, w, b, eps: torch._batch_norm_impl_index(
            x, w, b, *stats(x), True, 0.1, eps, False
        )[0],
        "aten.instance_norm": lambda x, w, b, eps: _from_rows(
            aten.instance_norm(_per_channel(x)[None], None, None, None, None, True, 0.1, eps, False)[0],
            x,
            w,
            b,
        ),
        "torch.native_group_norm": lambda x, w, b, eps: _from_rows(
            torch.native_group_norm(
                _per_channel(x)[:, None], None, None, x.shape[1], 1, _per_channel(x).shape[1], 1, eps
            )[0][:, 0],
            x,
            w,
            b,
        ),
        "torch.native_layer_norm": lambda x, w, b, eps: _from_rows(
            torch.native_layer_norm(_per_channel(x), [_per_channel(x).shape[1]], None, None, eps)[0], x, w, b
        ),
        "TorchScript F.batch_norm": _scripted_batch_norm,
    }
    for route, normalise in routes.items():
        cheat = _by_operator(normalise)
        # each gives nn.BatchNorm2d's numbers: only the watch can tell
        y, *_ = cheat(**checks._bn_cases(False)[0])
        assert checks._close(y, checks._bn_reference(checks._bn_cases(False)[0])[0]), route
        line = rejected(checks.batchnorm_train, cheat)
        assert "yourself" in line and "aten." in line, (route, line)


def test_cheat_03_e2_through_the_check_frames():
    def read_expected(x, weight, bias, running_mean, running_var, momentum=0.1, eps=1e-5):
        found = _read_from_the_check("y_ref", "mean_ref", "var_ref")  # computed before the call, once
        return found if found is not None else (x, running_mean, running_var)

    def silenced(x, weight, bias, running_mean, running_var, momentum=0.1, eps=1e-5):
        y = F.batch_norm(
            x, running_mean, running_var, weight, bias, training=True, momentum=momentum, eps=eps
        )
        _silence_the_watch()  # the live set of names used to be a local of the check's frame
        return y, running_mean, running_var

    rejected(checks.batchnorm_train, read_expected)
    assert "yourself" in rejected(checks.batchnorm_train, silenced)


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


def test_cheat_03_e4_operators_and_the_check_frames():
    aten = torch.ops.aten

    def native(x, p, training=True):
        return aten.native_dropout(x, p, training)[0]

    def aten_dropout(x, p, training=True):  # on the CPU it breaks into bernoulli_ and mul below dispatch
        return aten.dropout(x, p, training)

    def aten_dropout_overload(x, p, training=True):
        return aten.dropout.default(x, p, training)

    def scripted(x, p, training=True):
        return _scripted_dropout(x, p, training)

    def silenced(x, p, training=True):
        out = F.dropout(x, p, training)
        _silence_the_watch()
        return out

    for cheat in (native, aten_dropout, aten_dropout_overload, scripted, silenced):
        line = rejected(checks.dropout_by_hand, cheat)
        assert "yourself" in line, (cheat.__name__, line)

    def bernoulli_by_hand(x, p, training=True):  # the same operators as aten.dropout on the CPU, written out
        if not training or p == 0:
            return x
        return x * torch.empty_like(x).bernoulli_(1 - p) / (1 - p)

    accepted(checks.dropout_by_hand, bernoulli_by_hand)


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

    def shallow_copy(
        model, loader, device
    ):  # the copy's modules are copies too: the given ones stay in train
        copied = copy.copy(model)
        copied._modules = {name: copy.copy(module) for name, module in model._modules.items()}
        copied.eval()
        with torch.no_grad():
            return broken_val_accuracy(copied, loader, device)

    def copied_by_hand(model, loader, device):  # the same, without the copy module
        def clone(module):
            new = object.__new__(type(module))
            new.__dict__.update(module.__dict__)
            new._modules = {name: clone(child) for name, child in module._modules.items()}
            return new

        copied = clone(model).eval()
        with torch.no_grad():
            return broken_val_accuracy(copied, loader, device)

    def silenced_copy(model, loader, device):
        copied = copy.deepcopy(model).eval()
        _silence_the_watch()
        with torch.no_grad():
            return broken_val_accuracy(copied, loader, device)

    def expected_read(model, loader, device):  # the expected accuracy, if the check had worked it out before
        found = _read_from_the_check("expected")
        return found[0] if found is not None else 0.0

    def package_silenced(model, loader, device):
        acc = cu.evaluate(model, loader, device=device)["acc"]
        _silence_the_watch()
        return acc

    for cheat in (shallow_copy, copied_by_hand, silenced_copy):
        assert "copy" in rejected(checks.val_accuracy, cheat), cheat.__name__
    rejected(checks.val_accuracy, expected_read)
    assert "cu.evaluate" in rejected(checks.val_accuracy, package_silenced)
