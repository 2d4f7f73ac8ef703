"""Tests for course_utils.engine: fit, evaluate, predict, train_one_epoch and their error messages."""

from __future__ import annotations

import _thread
import signal

import pytest
import torch
from support import has_real
from torch import nn

import course_utils as cu
from course_utils import _fit as engine
from course_utils import data
from course_utils._models import ImprovedCNN, SimpleCNN
from course_utils._setup import bf16_native


def _setup(lr: float = 1e-3, model: nn.Module | None = None):
    torch.manual_seed(0)
    model = model or SimpleCNN()
    return model, torch.optim.Adam(model.parameters(), lr=lr), nn.CrossEntropyLoss()


def test_fit_learns_and_returns_history(digits):
    train, test = digits
    model, optimizer, loss_fn = _setup()
    history = engine.fit(model, train, test, epochs=2, optimizer=optimizer, loss_fn=loss_fn)
    assert history.epochs == 2 and len(history.val_acc) == 2 and len(history.epoch_time) == 2
    assert history.train_loss[1] < history.train_loss[0]
    assert history.val_acc[-1] > 0.6  # 10 classes: chance is 0.1
    assert history.best_epoch in (1, 2)
    assert "epoch 2" in repr(history)


def test_fit_does_not_reinitialise_weights(digits):
    train, _ = digits
    model, _, loss_fn = _setup()
    before = model.conv1.weight.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: weights must stay exactly the same
    engine.fit(model, train, epochs=1, optimizer=optimizer, loss_fn=loss_fn, verbose=False)
    assert torch.equal(model.conv1.weight, before)


def test_fit_restores_previous_mode(digits):
    train, test = digits
    model, optimizer, loss_fn = _setup()
    model.eval()
    engine.fit(model, train, test, epochs=1, optimizer=optimizer, loss_fn=loss_fn, verbose=False)
    assert not model.training
    model.train()
    engine.evaluate(model, test)
    assert model.training


def test_metrics_are_weighted_by_sample_count():
    # 3 samples in a batch of 2 and a batch of 1: per-batch averaging would give (1 + 0) / 2 = 0.5.
    model = nn.Linear(1, 2)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.copy_(torch.tensor([1.0, 0.0]))  # always predicts class 0
    loader = [(torch.zeros(2, 1), torch.tensor([0, 0])), (torch.zeros(1, 1), torch.tensor([1]))]
    result = engine.evaluate(model, loader, loss_fn=nn.CrossEntropyLoss())
    assert result["acc"] == pytest.approx(2 / 3)
    assert result["n"] == 3


def test_keep_best_needs_validation(digits):
    model, optimizer, loss_fn = _setup()
    with pytest.raises(ValueError, match="val_loader"):
        engine.fit(model, digits[0], epochs=1, optimizer=optimizer, loss_fn=loss_fn, keep_best=True)


def test_too_few_classes_is_explained(digits):
    model, optimizer, loss_fn = _setup(model=SimpleCNN(num_classes=5))
    with pytest.raises(ValueError, match=r"outputs 5 class scores.*labels go up to 9.*at least 10"):
        engine.fit(model, digits[0], epochs=1, optimizer=optimizer, loss_fn=loss_fn)


def test_wrong_channels_are_explained():
    model, optimizer, loss_fn = _setup()
    loader = [(torch.zeros(4, 3, 28, 28), torch.zeros(4, dtype=torch.long))]
    with pytest.raises(
        ValueError, match=r"expects images of shape \(batch, 1, 28, 28\), got \(4, 3, 28, 28\)"
    ):
        engine.fit(model, loader, epochs=1, optimizer=optimizer, loss_fn=loss_fn)


def test_wrong_size_in_plain_model_is_explained():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
    loader = [(torch.zeros(4, 1, 32, 32), torch.zeros(4, dtype=torch.long))]
    with pytest.raises(
        ValueError, match=r"layer '2' of Sequential.*in_features=2704.*\(4, 3600\).*\(4, 1, 32, 32\)"
    ):
        engine.evaluate(model, loader)


def test_a_wrong_layer_is_named_with_the_shape_it_expected_and_got():
    """Lesson 02's fc changed by the learner: the error names fc, not the images (which are right)."""
    model = SimpleCNN()
    model.fc = nn.Linear(3100, 10)
    loader = [(torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.long))]
    with pytest.raises(
        ValueError, match=r"layer 'fc' of SimpleCNN.*in_features=3100.*gave shape \(4, 3136\)"
    ) as info:
        engine.fit(
            model,
            loader,
            epochs=1,
            optimizer=torch.optim.SGD(model.parameters(), 0.1),
            loss_fn=nn.CrossEntropyLoss(),
        )
    assert "could not process a batch of images" not in str(info.value)


def test_a_failing_view_in_forward_is_placed_after_the_last_layer_that_ran():
    class Viewing(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)
            self.fc = nn.Linear(5, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.conv(x).view(-1, 5 * 5 * 3))  # 5*5*3 does not divide 2*28*28*4

    loader = [(torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.long))]
    with pytest.raises(ValueError, match=r"forward failed after layer 'conv'.*\(4, 2, 28, 28\)"):
        engine.evaluate(Viewing(), loader)


def test_optimizer_without_trainable_parameters_is_explained():
    # The source's mistake: replace the head, then freeze everything (the new head included).
    model = SimpleCNN()
    model.fc = nn.Linear(7 * 7 * 64, 2)
    for p in model.parameters():
        p.requires_grad = False
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="no trainable parameter.*freezes the new head"):
        engine.fit(model, [], epochs=1, optimizer=optimizer, loss_fn=nn.CrossEntropyLoss())


def test_non_finite_loss_stops_with_epoch_and_step(digits):
    train, test = digits
    model, optimizer, loss_fn = _setup()
    calls = {"n": 0}

    def exploding_loss(outputs, labels):
        calls["n"] += torch.is_grad_enabled()  # count training steps only, not validation batches
        loss = loss_fn(outputs, labels)
        return loss * float("nan") if calls["n"] == 17 else loss  # 12 steps per epoch: epoch 2, step 5

    # Read at the end of the epoch (the epoch is shorter than CHECK_EVERY steps), so between its steps 1 and 12.
    with pytest.raises(cu.NonFiniteLossError, match="epoch 2, steps 1-12") as info:
        engine.fit(
            model,
            train,
            test,
            epochs=3,
            optimizer=optimizer,
            loss_fn=exploding_loss,
            keep_best=True,
            verbose=False,
        )
    assert info.value.history.epochs == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the best (epoch 1) weights are back


def test_ctrl_c_returns_history_with_best_weights(digits):
    # Ctrl-C reaches Python as KeyboardInterrupt only where SIGINT has Python's handler: a test run started in the
    # background (`cmd &` in a script) inherits SIGINT ignored, and interrupt_main would then do nothing.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    train, test = digits
    model, optimizer, loss_fn = _setup()
    calls = {"n": 0}

    def interrupting_loss(outputs, labels):
        calls["n"] += torch.is_grad_enabled()  # training steps only; validation computes its loss too
        if calls["n"] == 2 * len(train) + 3 and torch.is_grad_enabled():  # the 3rd batch of epoch 3
            # A real Ctrl-C: Python's SIGINT path raises KeyboardInterrupt in the main thread at its next
            # check, here, in the middle of a training step (no timer, so a busy machine cannot move it).
            _thread.interrupt_main()
        return loss_fn(outputs, labels)

    try:
        history = engine.fit(
            model,
            train,
            test,
            epochs=50,
            optimizer=optimizer,
            loss_fn=interrupting_loss,
            keep_best=True,
            verbose=False,
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    assert history.interrupted
    assert history.epochs == 2
    best = history.val_acc[history.best_epoch - 1]
    assert engine.evaluate(model, test)["acc"] == pytest.approx(best)


def test_predict_on_loader_and_tensor(digits):
    _, test = digits
    model = SimpleCNN().train()
    out = cu.predict(model, test)
    assert out.preds.shape == (256,) and out.labels.shape == (256,)
    assert torch.allclose(out.probs.sum(1), torch.ones(256), atol=1e-5)
    single = cu.predict(model, next(iter(test))[0][:3])
    assert single.labels is None and single.preds.shape == (3,)
    assert model.training


def test_bf16_and_channels_last_train(digits, monkeypatch):
    train, test = digits
    model, optimizer, loss_fn = _setup(model=ImprovedCNN())
    model.to(memory_format=torch.channels_last)  # fit follows the model's layout: no option needed
    layouts = []
    original = model.conv1.forward
    monkeypatch.setattr(
        model.conv1,
        "forward",
        lambda x: layouts.append(x.is_contiguous(memory_format=torch.channels_last)) or original(x),
    )
    history = engine.fit(
        model, train, test, epochs=1, optimizer=optimizer, loss_fn=loss_fn, precision="bf16", verbose=False
    )
    assert layouts and all(layouts), "every batch should arrive in the model's channels-last layout"
    assert model.conv2.weight.is_contiguous(memory_format=torch.channels_last)
    assert history.val_acc[0] > 0.3
    assert history.precision == "bf16"
    auto = engine.fit(
        model,
        train,
        epochs=1,
        optimizer=optimizer,
        loss_fn=loss_fn,
        precision="auto",
        verbose=False,
    )
    assert auto.precision == ("bf16" if bf16_native("cpu") else "fp32")
    with pytest.raises(ValueError, match="precision"):
        engine.fit(model, train, epochs=1, optimizer=optimizer, loss_fn=loss_fn, precision="fp8")


def test_one_cycle_scheduler_steps_per_batch(digits):
    train, _ = digits
    model, optimizer, loss_fn = _setup()
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=2 * len(train))
    history = engine.fit(
        model,
        train,
        epochs=2,
        optimizer=optimizer,
        loss_fn=loss_fn,
        scheduler=scheduler,
        verbose=False,
    )
    assert history.lr[-1] < 1e-4  # annealed to the end of the cycle: it stepped once per batch


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.skipif(not has_real("MNIST"), reason="real MNIST not in COURSE_DATA_DIR")
def test_simple_cnn_reaches_98_5_percent_on_real_mnist():
    torch.manual_seed(0)
    bundle = data.mnist(val_fraction=0.0, device="cpu")
    model, optimizer, loss_fn = _setup()
    engine.fit(model, bundle.train, epochs=2, optimizer=optimizer, loss_fn=loss_fn)
    assert engine.evaluate(model, bundle.test)["acc"] >= 0.985


# ---------------------------------------------------------------------------------------------------------
# Bookkeeping, schedulers, non-finite losses and modes
# ---------------------------------------------------------------------------------------------------------
def _interrupting(real, after_calls: int):
    """Wrap ``real`` so that its call number ``after_calls`` raises KeyboardInterrupt (as Ctrl-C would)."""
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == after_calls:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    return wrapper


@pytest.mark.parametrize("where", ["validation", "scheduler", "training batch"])
def test_ctrl_c_anywhere_leaves_a_consistent_history(digits, monkeypatch, where):
    train, test = digits
    model, optimizer, loss_fn = _setup()
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    if where == "validation":  # the 2nd epoch's validation: its training numbers must not be recorded
        monkeypatch.setattr(engine, "evaluate", _interrupting(engine.evaluate, 2))
    elif where == "scheduler":
        monkeypatch.setattr(scheduler, "step", _interrupting(scheduler.step, 2))
    else:  # the 5th batch of epoch 2
        loss_fn = _interrupting(loss_fn, len(train) + 5)
    history = engine.fit(
        model,
        train,
        test,
        epochs=4,
        optimizer=optimizer,
        loss_fn=loss_fn,
        scheduler=scheduler,
        scheduler_step="epoch",
        keep_best=True,
        verbose=False,
    )
    completed = 2 if where == "scheduler" else 1  # the scheduler steps after the epoch is recorded
    assert history.interrupted and history.epochs == completed
    lengths = {
        len(v)
        for v in (
            history.train_loss,
            history.train_acc,
            history.val_loss,
            history.val_acc,
            history.lr,
            history.epoch_time,
        )
    }
    assert lengths == {completed}
    assert "epoch 1:" in repr(history) and history.best_epoch in (1, completed)
    history.plot()  # plots without complaint


def test_ctrl_c_message_names_the_interrupted_epoch(digits, monkeypatch, capsys):
    train, test = digits
    model, optimizer, loss_fn = _setup()
    monkeypatch.setattr(engine, "evaluate", _interrupting(engine.evaluate, 2))
    engine.fit(model, train, test, epochs=3, optimizer=optimizer, loss_fn=loss_fn)
    assert (
        "Interrupted during epoch 2: returning the history of 1 completed epoch(s)" in capsys.readouterr().out
    )


def test_best_epoch_is_derived_and_keep_best_restores_a_middle_epoch(digits, monkeypatch):
    train, test = digits
    model, optimizer, loss_fn = _setup()
    scores = iter([0.5, 0.9, 0.7])  # validation accuracy of epochs 1-3: the best is epoch 2, not the last
    weights = []
    real = engine.evaluate

    def scripted(m, loader, **kw):
        weights.append(m.fc.weight.detach().clone())
        return real(m, loader, **kw) | {"acc": next(scores)}

    monkeypatch.setattr(engine, "evaluate", scripted)
    history = engine.fit(
        model,
        train,
        test,
        epochs=3,
        optimizer=optimizer,
        loss_fn=loss_fn,
        keep_best=True,
        verbose=False,
    )
    assert history.best_epoch == 2
    assert torch.equal(model.fc.weight, weights[1]) and not torch.equal(model.fc.weight, weights[2])


def test_scheduler_stepping_must_be_said_unless_the_type_settles_it(digits):
    train, _ = digits
    model, optimizer, loss_fn = _setup()
    warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 5))
    with pytest.raises(ValueError, match="say when LambdaLR should step.*scheduler_step='batch'"):
        engine.fit(model, train, epochs=1, optimizer=optimizer, loss_fn=loss_fn, scheduler=warmup)
    with pytest.raises(ValueError, match="ReduceLROnPlateau.*scheduler_step='epoch'"):
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)
        engine.fit(
            model,
            train,
            epochs=1,
            optimizer=optimizer,
            loss_fn=loss_fn,
            scheduler=plateau,
            scheduler_step="batch",
        )


def test_per_batch_warmup_steps_every_batch(digits, capsys):
    train, _ = digits  # 12 batches per epoch
    model, optimizer, loss_fn = _setup(lr=1e-3)
    warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 100))
    history = engine.fit(
        model,
        train,
        epochs=2,
        optimizer=optimizer,
        loss_fn=loss_fn,
        scheduler=warmup,
        scheduler_step="batch",
    )
    assert history.lr == pytest.approx([1e-3 * 12 / 100, 1e-3 * 24 / 100])  # each epoch's last step
    assert "LambdaLR steps after every batch" in capsys.readouterr().out


def test_per_epoch_and_plateau_schedulers(digits):
    train, test = digits
    model, optimizer, loss_fn = _setup(lr=1e-3)
    step = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    history = engine.fit(
        model,
        train,
        test,
        epochs=2,
        optimizer=optimizer,
        loss_fn=loss_fn,
        scheduler=step,
        scheduler_step="epoch",
        verbose=False,
    )
    assert history.lr == pytest.approx([1e-3, 5e-4])  # the rate each epoch trained with
    model, optimizer, loss_fn = _setup(lr=1e-3)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=0, factor=0.1)
    seen = []
    real_step = plateau.step
    plateau.step = lambda metric: (seen.append(metric), real_step(metric))
    history = engine.fit(
        model,
        train,
        test,
        epochs=2,
        optimizer=optimizer,
        loss_fn=loss_fn,
        scheduler=plateau,
        verbose=False,
    )
    assert seen == pytest.approx(history.val_loss)  # stepped once per epoch, on the validation loss


def test_a_nan_stops_training_within_check_every_steps_and_never_reaches_the_weights(digits):
    """The loss is read every CHECK_EVERY steps (a host sync), not every step: a NaN stops training within that
    bound, and the model gets back the weights of the last completed epoch."""
    from course_utils._loop import CHECK_EVERY

    train, _ = digits
    long_epoch = [batch for _ in range(10) for batch in train]  # 120 steps per epoch
    model, optimizer, loss_fn = _setup()
    calls = {"n": 0}

    def late_nan(outputs, labels):
        calls["n"] += 1
        loss = loss_fn(outputs, labels)
        return loss * float("nan") if calls["n"] >= 120 + 7 else loss  # epoch 2, step 7, and on

    with pytest.raises(cu.NonFiniteLossError, match="epoch 2, steps 1-50") as info:
        engine.fit(model, long_epoch, epochs=3, optimizer=optimizer, loss_fn=late_nan, verbose=False)
    assert calls["n"] == 120 + CHECK_EVERY  # not one step past the check that saw it
    assert info.value.history.epochs == 1
    assert all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point())


def test_keep_best_with_a_nan_in_the_first_epoch_raises_the_nan_error_not_a_type_error(digits):
    """There is no best epoch yet: fit restores the initial weights (it used to call load_state_dict(None))."""
    train, test = digits
    model, optimizer, loss_fn = _setup()
    initial = {k: v.clone() for k, v in model.state_dict().items()}

    def nan_loss(outputs, labels):
        return loss_fn(outputs, labels) * float("nan")

    with pytest.raises(cu.NonFiniteLossError):
        engine.fit(
            model, train, test, epochs=2, optimizer=optimizer, loss_fn=nan_loss, keep_best=True, verbose=False
        )
    assert all(torch.equal(v, initial[k]) for k, v in model.state_dict().items())


def test_history_records_the_learning_rate_each_epoch_used(digits):
    """An epoch-level scheduler steps after the epoch is recorded: epoch 1 trained at 0.1, not at the next 0.01."""
    train, _ = digits
    model, _, loss_fn = _setup()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.1)
    history = engine.fit(
        model, train, epochs=3, optimizer=optimizer, loss_fn=loss_fn, scheduler=scheduler,
        scheduler_step="epoch", verbose=False,
    )  # fmt: skip
    assert history.lr == pytest.approx([0.1, 0.01, 0.001])


def test_weights_that_turned_non_finite_are_replaced_by_the_last_epochs(digits):
    train, _ = digits
    model, optimizer, loss_fn = _setup()
    real_step, steps = optimizer.step, {"n": 0}

    def poisoning_step(
        *args, **kwargs
    ):  # a finite loss whose update breaks the weights (e.g. an inf gradient)
        steps["n"] += 1
        real_step(*args, **kwargs)
        if steps["n"] == 15:
            with torch.no_grad():
                model.fc.weight.fill_(float("inf"))

    optimizer.step = poisoning_step
    with pytest.raises(cu.NonFiniteLossError, match="epoch 2, steps 1-12"):
        engine.fit(model, train, epochs=3, optimizer=optimizer, loss_fn=loss_fn, verbose=False)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def _frozen_backbone_model() -> nn.Module:
    model = SimpleCNN()
    model.conv1.eval()  # the learner froze this block in eval mode on purpose
    return model


def test_evaluate_predict_and_fit_give_every_submodule_its_mode_back(digits):
    train, test = digits
    model = _frozen_backbone_model().train()
    model.conv1.eval()
    engine.evaluate(model, test)
    cu.predict(model, test)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    engine.fit(
        model,
        train,
        epochs=1,
        optimizer=optimizer,
        loss_fn=nn.CrossEntropyLoss(),
        verbose=False,
    )
    assert model.training and not model.conv1.training and model.conv2.training


def test_train_one_epoch_weights_metrics_by_sample_count():
    model = nn.Linear(1, 2)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.copy_(torch.tensor([1.0, 0.0]))  # always predicts class 0
    loader = [(torch.zeros(3, 1), torch.tensor([0, 0, 0])), (torch.zeros(1, 1), torch.tensor([1]))]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # no learning: the metrics describe one model
    result = engine.train_one_epoch(model, loader, optimizer=optimizer, loss_fn=nn.CrossEntropyLoss())
    assert result["acc"] == pytest.approx(3 / 4)  # per batch it would be (1 + 0) / 2
    logits = torch.tensor([[1.0, 0.0]])
    low, high = (nn.functional.cross_entropy(logits, torch.tensor([c])) for c in (0, 1))
    assert result["loss"] == pytest.approx((3 * low.item() + high.item()) / 4)
