"""Tests for course_machinery.checks: each check passes a right answer, hints on a wrong one, never raises."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_machinery import checks


def right_size(size, kernel_size, stride=1, padding=0, dilation=1):
    return (size + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1


def no_dilation_size(size, kernel_size, stride=1, padding=0, dilation=1):
    return (size + 2 * padding - kernel_size) // stride + 1


def assert_passed(result, capsys):
    out = capsys.readouterr().out
    assert isinstance(result, checks.Verdict) and result.passed is True, result
    assert out.startswith("✅ Correct") and out.count("\n") == 1, out  # one line of feedback
    return out


def assert_failed(result, capsys, prefix="❌ Not yet:"):
    out = capsys.readouterr().out
    assert isinstance(result, checks.Verdict) and result.passed is False, result
    assert out.startswith(prefix) and out.count("\n") == 1, out
    return out


def test_a_verdict_shows_nothing_in_a_notebook():
    """Jupyter shows a cell's last value unless it has _ipython_display_; a check cell shows only its line."""
    from IPython.core.formatters import DisplayFormatter

    for verdict in (checks.Verdict(True), checks.Verdict(False)):
        data, _ = DisplayFormatter().format(verdict)
        assert data == {}, data
    assert bool(checks.Verdict(True)) and not checks.Verdict(False)


def test_conv_output_size(capsys):
    assert_passed(checks.check_conv_output_size(right_size), capsys)
    out = assert_failed(checks.check_conv_output_size(no_dilation_size), capsys)
    assert "dilation=2" in out and "you returned" in out

    def ignores_padding(size, kernel_size, stride=1, padding=0, dilation=1):
        return size - kernel_size + 1

    out = assert_failed(checks.check_conv_output_size(ignores_padding), capsys)
    assert "for size=28, kernel_size=5, padding=2 you returned 24" in out


def test_conv_output_size_does_not_reveal_the_answer(capsys):
    checks.check_conv_output_size(lambda size, k, stride=1, padding=0, dilation=1: 0)
    out = capsys.readouterr().out
    assert "size=28, kernel_size=3 you returned 0" in out and "26" not in out


def test_learner_exception_is_reported_not_raised(capsys):
    def broken(size, kernel_size, stride=1, padding=0, dilation=1):
        raise ZeroDivisionError("division by zero")

    out = assert_failed(checks.check_conv_output_size(broken), capsys, prefix="❌ Your code raised")
    assert "ZeroDivisionError" in out and "division by zero" in out
    out = assert_failed(
        checks.check_conv2d_manual(lambda image, kernel: image @ torch.ones(2, 2)),
        capsys,
        prefix="❌ Your code raised",
    )
    assert "RuntimeError" in out


def test_output_shape(capsys):
    layer = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.MaxPool2d(2))
    assert_passed(checks.check_output_shape((2, 8, 16, 16), layer, (2, 3, 32, 32)), capsys)
    out = assert_failed(checks.check_output_shape((2, 8, 32, 32), layer, (2, 3, 32, 32)), capsys)
    assert "spatial" in out and "16" not in out
    assert_failed(checks.check_output_shape((8, 16, 16), layer, (2, 3, 32, 32)), capsys)
    assert_failed(checks.check_output_shape("big", layer, (2, 3, 32, 32)), capsys)
    assert_failed(
        checks.check_output_shape((1, 8, 3, 3), nn.Conv2d(1, 8, 3), (1, 3, 5, 5)),
        capsys,
        prefix="❌ Your code raised",
    )


def test_output_shape_leaves_batchnorm_statistics_alone(capsys):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)).train()
    assert_passed(checks.check_output_shape((1, 2, 3, 3), model, (1, 1, 5, 5)), capsys)
    assert model.training and torch.equal(model[1].running_mean, torch.zeros(2))


def test_conv_params(capsys):
    assert_passed(checks.check_conv_params(3 * 16 * 9 + 16, 3, 16, 3), capsys)
    assert_passed(checks.check_conv_params(3 * 16 * 9, 3, 16, 3, bias=False), capsys)
    assert_passed(
        checks.check_conv_params(sum(p.numel() for p in nn.Conv2d(4, 5, (3, 5)).parameters()), 4, 5, (3, 5)),
        capsys,
    )
    out = assert_failed(checks.check_conv_params(3 * 16 * 9, 3, 16, 3), capsys)
    assert "bias" in out
    out = assert_failed(checks.check_conv_params(16 * 9 + 16, 3, 16, 3), capsys)
    assert "in_channels" in out and "bias" in out and str(3 * 16 * 9 + 16) not in out


def test_flatten_features(capsys):
    layers = [nn.Conv2d(1, 8, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3), nn.MaxPool2d(2)]
    assert_passed(checks.check_flatten_features(16 * 6 * 6, layers, (1, 28, 28)), capsys)
    assert_passed(checks.check_flatten_features(16 * 6 * 6, nn.Sequential(*layers), (4, 1, 28, 28)), capsys)
    out = assert_failed(checks.check_flatten_features(16 * 7 * 7, layers, (1, 28, 28)), capsys)
    assert str(16 * 6 * 6) not in out
    out = assert_failed(checks.check_flatten_features(4 * 16 * 6 * 6, layers, (4, 1, 28, 28)), capsys)
    assert "batch" in out
    assert_failed(checks.check_flatten_features(1, layers, (3, 28, 28)), capsys, prefix="❌ Your code raised")


def manual_conv(image, kernel):
    kh, kw = kernel.shape
    out = torch.zeros(image.shape[0] - kh + 1, image.shape[1] - kw + 1)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = (image[i : i + kh, j : j + kw] * kernel).sum()
    return out


def test_conv2d_manual(capsys):
    assert_passed(checks.check_conv2d_manual(manual_conv), capsys)
    assert_passed(checks.check_conv2d_manual(lambda img, k: manual_conv(img, k).tolist()), capsys)
    out = assert_failed(checks.check_conv2d_manual(lambda img, k: manual_conv(img, k.flip(0, 1))), capsys)
    assert "flip" in out

    def same_size(img, k):
        return F.conv2d(img[None, None], k[None, None], padding="same")[0, 0]  # padded: output too big

    same = checks.check_conv2d_manual(same_size)
    out = assert_failed(same, capsys)
    assert "shape" in out
    out = assert_failed(checks.check_conv2d_manual(lambda img, k: manual_conv(img, k) * 2), capsys)
    assert "values differ" in out


def test_kernel(capsys):
    sobel_x = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]
    assert_passed(checks.check_kernel(sobel_x, "vertical_edges"), capsys)
    assert_passed(checks.check_kernel(torch.tensor(sobel_x).T, "horizontal_edges"), capsys)
    assert_passed(checks.check_kernel(torch.ones(3, 3) / 9, "blur"), capsys)
    out = assert_failed(checks.check_kernel(sobel_x, "horizontal_edges"), capsys)
    assert "barely responds to a horizontal edge" in out
    out = assert_failed(checks.check_kernel([[0, 0, 0], [0, 2, 0], [0, 0, 0]], "vertical_edges"), capsys)
    assert "add up" in out
    out = assert_failed(checks.check_kernel([[1, 0], [0, -1]], "vertical_edges"), capsys)  # diagonal
    assert "not vertical" in out
    assert_failed(checks.check_kernel(torch.ones(3, 3), "blur"), capsys)
    assert_failed(checks.check_kernel([[0, 0, 0], [0, 1, 0], [0, 0, 0]], "blur"), capsys)
    assert_failed(checks.check_kernel([[-1, 2, -1]] * 3, "blur"), capsys)
    with pytest.raises(ValueError):  # a typo by the notebook author is not the learner's fault
        checks.check_kernel(sobel_x, "diagonal")


def test_trainable(capsys):
    model = nn.Sequential()
    model.add_module("features", nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3)))
    model.add_module("fc", nn.Linear(2, 3))
    for p in model.features.parameters():
        p.requires_grad = False
    assert_passed(checks.check_trainable(model, ["fc"]), capsys)
    out = assert_failed(checks.check_trainable(model, ["features.1", "fc"]), capsys)
    assert "features.1" in out and "frozen" in out
    model.features[0].bias.requires_grad = True
    out = assert_failed(checks.check_trainable(model, ["fc"]), capsys)
    assert "['features'] should be frozen" in out
    out = assert_failed(checks.check_trainable(model, ["head"]), capsys)
    assert "head" in out


def test_equal(capsys):
    assert_passed(checks.check_equal(0.1 + 0.2, 0.3, hint="add them"), capsys)
    assert_passed(checks.check_equal(torch.tensor(7), 7, hint="count"), capsys)
    assert_passed(checks.check_equal((1, 16, 14, 14), torch.Size([1, 16, 14, 14]), hint="shape"), capsys)
    out = assert_failed(checks.check_equal(0.31, 0.3, hint="add the two numbers"), capsys)
    assert out.strip() == "❌ Not yet: add the two numbers"
    assert_failed(checks.check_equal("3", 3, hint="a number, please"), capsys)
    assert_failed(checks.check_equal(torch.ones(2), torch.ones(3), hint="shapes"), capsys)


@pytest.mark.parametrize(
    "call",
    [
        lambda: checks.check_conv_output_size(lambda size, k, stride=1, padding=0, dilation=1: None),
        lambda: checks.check_conv2d_manual(lambda image, kernel: None),
        lambda: checks.check_kernel(None, "blur"),
        lambda: checks.check_conv_params(None, 1, 8, 3),
        lambda: checks.check_output_shape(..., nn.Conv2d(1, 2, 3), (1, 1, 8, 8)),
        lambda: checks.check_flatten_features(None, nn.Conv2d(1, 2, 3), (1, 1, 8, 8)),
        lambda: checks.check_equal(None, 3, hint="think"),
    ],
)
def test_placeholder_answers_get_a_nudge_not_a_blame(call, capsys):
    assert call().passed is False
    out = capsys.readouterr().out
    assert "there is no answer yet" in out and "raised" not in out
