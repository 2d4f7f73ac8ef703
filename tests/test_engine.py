"""Tests for course_utils.engine: fit, evaluate, predict, train_one_epoch and their error messages."""

from __future__ import annotations

import _thread
import threading

import pytest
import torch
from conftest import has_real
from torch import nn

from course_utils import config, data, engine
from course_utils import utils as cu_utils
from course_utils.models import ImprovedCNN, SimpleCNN


def _setup(lr: float = 1e-3, model: nn.Module | None = None):
    torch.manual_seed(0)
    model = model or SimpleCNN()
    return model, torch.optim.Adam(model.parameters(), lr=lr), nn.CrossEntropyLoss()


def test_fit_learns_and_returns_history(digits):
    train, test = digits
    model, optimizer, loss_fn = _setup()
    history = engine.fit(model, train, test, epochs=2, optimizer=optimizer, loss_fn=loss_fn, progress=False)
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
    engine.fit(model, train, epochs=1, optimizer=optimizer, loss_fn=loss_fn, progress=False, verbose=False)
    assert torch.equal(model.conv1.weight, before)


def test_fit_restores_previous_mode(digits):
    train, test = digits
    model, optimizer, loss_fn = _setup()
    model.eval()
    engine.fit(model, train, test, epochs=1, optimizer=optimizer, loss_fn=loss_fn, progress=False, verbose=False)
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


def test_keep_best_restores_best_epoch_weights(digits):
    train, test = digits
    model, optimizer, loss_fn = _setup(lr=3e-3)
    snapshots = []
    original = engine.evaluate

    def spy(m, loader, **kw):
        snapshots.append(m.fc.weight.detach().clone())
        return original(m, loader, **kw)

    engine.evaluate = spy
    try:
        history = engine.fit(model, train, test, epochs=3, optimizer=optimizer, loss_fn=loss_fn, keep_best=True,
                             progress=False, verbose=False)
    finally:
        engine.evaluate = original
    assert torch.equal(model.fc.weight, snapshots[history.best_epoch - 1])


def test_keep_best_needs_validation(digits):
    model, optimizer, loss_fn = _setup()
    with pytest.raises(ValueError, match="val_loader"):
        engine.fit(model, digits[0], epochs=1, optimizer=optimizer, loss_fn=loss_fn, keep_best=True)


def test_too_few_classes_is_explained(digits):
    model, optimizer, loss_fn = _setup(model=SimpleCNN(num_classes=5))
    with pytest.raises(ValueError, match=r"outputs 5 class scores.*labels go up to 9.*at least 10"):
        engine.fit(model, digits[0], epochs=1, optimizer=optimizer, loss_fn=loss_fn, progress=False)


def test_wrong_channels_are_explained():
    model, optimizer, loss_fn = _setup()
    loader = [(torch.zeros(4, 3, 28, 28), torch.zeros(4, dtype=torch.long))]
    with pytest.raises(ValueError, match=r"expects images of shape \(batch, 1, 28, 28\), got \(4, 3, 28, 28\)"):
        engine.fit(model, loader, epochs=1, optimizer=optimizer, loss_fn=loss_fn, progress=False)


def test_wrong_size_in_plain_model_is_explained():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
    loader = [(torch.zeros(4, 1, 32, 32), torch.zeros(4, dtype=torch.long))]
    with pytest.raises(ValueError, match=r"could not process a batch of images of shape \(4, 1, 32, 32\)"):
        engine.evaluate(model, loader)


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

    with pytest.raises(engine.NonFiniteLossError, match="epoch 2, step 5") as info:
        engine.fit(model, train, test, epochs=3, optimizer=optimizer, loss_fn=exploding_loss, keep_best=True,
                   progress=False, verbose=False)
    assert info.value.history.epochs == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the best (epoch 1) weights are back


def test_ctrl_c_returns_history_with_best_weights(digits):
    train, test = digits
    model, optimizer, loss_fn = _setup()
    done = {"epochs": 0}
    original = engine.evaluate

    def interrupt_after_two(m, loader, **kw):
        result = original(m, loader, **kw)
        done["epochs"] += 1
        if done["epochs"] == 2:
            threading.Timer(0.05, _thread.interrupt_main).start()  # a real KeyboardInterrupt, mid-epoch 3
        return result

    engine.evaluate = interrupt_after_two
    try:
        history = engine.fit(model, train, test, epochs=50, optimizer=optimizer, loss_fn=loss_fn,
                             keep_best=True, progress=False, verbose=False)
    finally:
        engine.evaluate = original
    assert history.interrupted
    assert 2 <= history.epochs < 50
    best = history.val_acc[history.best_epoch - 1]
    assert engine.evaluate(model, test)["acc"] == pytest.approx(best)


def test_checkpoint_written_during_fit(digits, tmp_path):
    from course_utils.checkpoint import load_checkpoint

    train, test = digits
    model, optimizer, loss_fn = _setup()
    path = tmp_path / "ckpt" / "best.pt"
    history = engine.fit(model, train, test, epochs=2, optimizer=optimizer, loss_fn=loss_fn,
                         checkpoint_path=path, progress=False, verbose=False)
    fresh = SimpleCNN()
    meta = load_checkpoint(fresh, path)
    assert meta["model_class"] == "SimpleCNN"
    assert meta["history"]["best_epoch"] == history.best_epoch
    assert list(path.parent.iterdir()) == [path]  # no temporary files left behind


def test_predict_on_loader_and_tensor(digits):
    _, test = digits
    model = SimpleCNN().train()
    out = engine.predict(model, test)
    assert out.preds.shape == (256,) and out.labels.shape == (256,)
    assert torch.allclose(out.probs.sum(1), torch.ones(256), atol=1e-5)
    single = engine.predict(model, next(iter(test))[0][:3])
    assert single.labels is None and single.preds.shape == (3,)
    assert model.training


def test_bf16_and_channels_last_train(digits):
    train, test = digits
    model, optimizer, loss_fn = _setup(model=ImprovedCNN())
    history = engine.fit(model, train, test, epochs=1, optimizer=optimizer, loss_fn=loss_fn, precision="bf16",
                         channels_last=True, progress=False, verbose=False)
    assert history.val_acc[0] > 0.3
    assert history.precision == "bf16"
    auto = engine.fit(model, train, epochs=1, optimizer=optimizer, loss_fn=loss_fn, precision="auto",
                      progress=False, verbose=False)
    assert auto.precision == ("bf16" if cu_utils.bf16_supported("cpu") else "fp32")
    with pytest.raises(ValueError, match="precision"):
        engine.fit(model, train, epochs=1, optimizer=optimizer, loss_fn=loss_fn, precision="fp8")


def test_one_cycle_scheduler_steps_per_batch(digits):
    train, _ = digits
    model, optimizer, loss_fn = _setup()
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=2 * len(train))
    history = engine.fit(model, train, epochs=2, optimizer=optimizer, loss_fn=loss_fn, scheduler=scheduler,
                         progress=False, verbose=False)
    assert history.lr[-1] < 1e-4  # annealed to the end of the cycle: it stepped once per batch


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.skipif(not has_real("MNIST"), reason="real MNIST not in COURSE_DATA_DIR")
def test_simple_cnn_reaches_98_5_percent_on_real_mnist(monkeypatch):
    monkeypatch.setattr(config, "SMOKE", False)
    torch.manual_seed(0)
    bundle = data.mnist(val_fraction=0.0, device="cpu")
    model, optimizer, loss_fn = _setup()
    engine.fit(model, bundle.train, epochs=2, optimizer=optimizer, loss_fn=loss_fn, progress=False)
    assert engine.evaluate(model, bundle.test)["acc"] >= 0.985
