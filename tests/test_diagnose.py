"""Tests for course_utils._diagnose: each beginner mistake gets its own plain message, through fit and evaluate."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import course_utils as cu
from course_utils import _fit as engine
from course_utils._models import SimpleCNN


def _fit(model: nn.Module, loader: list) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    engine.fit(
        model,
        loader,
        epochs=1,
        optimizer=optimizer,
        loss_fn=nn.CrossEntropyLoss(),
        verbose=False,
    )


def _batch(images: torch.Tensor | None = None, labels: torch.Tensor | None = None) -> list:
    images = torch.zeros(4, 1, 28, 28) if images is None else images
    labels = torch.zeros(4, dtype=torch.long) if labels is None else labels
    return [(images, labels)]


def test_raw_uint8_pixels_are_explained():
    with pytest.raises(
        ValueError, match=r"torch.uint8 tensor \(raw pixel values 0-255\?\).*ToTensor.*float\(\) / 255"
    ):
        _fit(SimpleCNN(), _batch(images=torch.zeros(4, 1, 28, 28, dtype=torch.uint8)))
    with pytest.raises(ValueError, match="torch.uint8"):
        cu.predict(SimpleCNN(), torch.zeros(2, 1, 28, 28, dtype=torch.uint8))


def test_images_on_another_device_than_the_model_are_explained():
    # The CPU-only stand-in for "model on the GPU, images on the CPU": the model lives on the meta device.
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).to("meta")
    with pytest.raises(
        ValueError, match=r"images are on cpu, but Sequential's weights are on meta.*images.to\(device\)"
    ):
        engine.evaluate(model, _batch(), device="cpu")


def test_images_of_another_float_type_are_explained():
    with pytest.raises(
        ValueError, match=r"images are torch.float64, but SimpleCNN's weights are torch.float32"
    ):
        engine.evaluate(SimpleCNN(), _batch(images=torch.zeros(4, 1, 28, 28, dtype=torch.float64)))


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (torch.zeros(4), r"labels are torch.float32 of shape \(4,\).*integers.*labels.long\(\)"),
        (torch.zeros(4, 1, dtype=torch.long), r"labels have shape \(4, 1\).*labels.squeeze\(1\)"),
        (torch.zeros(4, dtype=torch.int32), r"labels are torch.int32.*torch.long.*labels.long\(\)"),
        (
            torch.zeros(5, dtype=torch.long),
            r"labels have shape \(5,\), but the model gave scores for 4 images",
        ),
        (torch.full((4,), -1), r"labels include -1, but class indices start at 0"),
        (torch.full((4,), 12), r"outputs 10 class scores, but the labels go up to 12.*at least 13"),
    ],
)
def test_wrong_labels_are_explained(labels, message):
    with pytest.raises(ValueError, match=message):
        _fit(SimpleCNN(), _batch(labels=labels))


def test_class_probabilities_are_accepted_as_labels():
    probabilities = torch.full(
        (4, 10), 0.1
    )  # soft labels of the outputs' shape are valid for CrossEntropyLoss
    _fit(SimpleCNN(), _batch(labels=probabilities))


def test_a_shape_error_is_still_a_shape_error():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
    with pytest.raises(
        ValueError, match=r"layer '2' of Sequential.*images, of shape \(4, 1, 32, 32\)"
    ) as info:
        engine.evaluate(model, _batch(images=torch.zeros(4, 1, 32, 32)))
    assert "device" not in str(info.value).split("PyTorch said")[0]


def test_other_runtime_errors_pass_through_unchanged():
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(1, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("something unrelated went wrong")

    with pytest.raises(RuntimeError, match="something unrelated"):
        engine.evaluate(Broken(), _batch())
