"""Tests for course_utils.history: what History reports and stores."""

import matplotlib.pyplot as plt

from course_utils._history import History


def _two_epochs() -> History:
    return History(
        train_loss=[1.0, 0.5],
        train_acc=[0.5, 0.8],
        val_loss=[0.9, 0.6],
        val_acc=[0.6, 0.7],
        epoch_time=[1.5, 2.0],
        lr=[0.1, 0.01],
        precision="bf16",
        name="run",
    )


def test_history_totals_and_repr():
    history = _two_epochs()
    assert history.epochs == 2 and history.total_time == 3.5
    lines = repr(history).splitlines()
    assert lines[0] == "History(run: 2 epochs, 3.5 s)"
    assert (
        lines[2] == "  epoch 2: train_loss 0.5000  train_acc 80.00%  val_loss 0.6000  val_acc 70.00%  (2.0 s)"
    )


def test_history_without_validation_says_interrupted():
    history = History(train_loss=[1.0], train_acc=[0.5], epoch_time=[1.0], interrupted=True)
    text = repr(history)
    assert text.startswith("History(run: 1 epoch, 1.0 s, interrupted)") and "val_" not in text
    assert history.best_epoch is None and history.precision == "fp32"


def test_history_to_dict_is_a_plain_copy():
    history = _two_epochs()
    stored = history.to_dict()
    assert stored["val_acc"] == [0.6, 0.7] and stored["best_epoch"] == 2 and stored["precision"] == "bf16"
    stored["train_loss"].append(9.0)
    assert history.train_loss == [1.0, 0.5]  # changing the dict does not change the history


def test_history_plot_draws_loss_and_accuracy():
    fig = _two_epochs().plot(title="t")
    assert len(fig.axes) >= 2
    plt.close(fig)
