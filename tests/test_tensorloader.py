"""Tests for course_utils.tensorloader: the in-memory fast path."""

from __future__ import annotations

import pytest
import torch

from course_utils._tensorloader import TensorLoader, random_shift


def _data(n=10):
    return torch.arange(n * 4, dtype=torch.uint8).view(n, 1, 2, 2), torch.arange(n)


def test_batches_cover_everything_once_and_normalise():
    images, labels = _data()
    loader = TensorLoader(images, labels, batch_size=4, shuffle=True, mean=(0.5,), std=(0.25,), seed=1)
    assert len(loader) == 3
    seen = torch.cat([y for _, y in loader])
    assert sorted(seen.tolist()) == list(range(10))
    x, y = next(iter(TensorLoader(images, labels, batch_size=4, mean=(0.5,), std=(0.25,))))
    assert torch.allclose(x, (images[:4].float() / 255 - 0.5) / 0.25)


def test_shuffle_is_seeded_and_changes_each_epoch():
    images, labels = _data(50)
    a = TensorLoader(images, labels, batch_size=50, shuffle=True, seed=7)
    b = TensorLoader(images, labels, batch_size=50, shuffle=True, seed=7)
    first = next(iter(a))[1]
    assert torch.equal(first, next(iter(b))[1])
    assert not torch.equal(first, next(iter(a))[1])


def test_reseed_repeats_the_batches_of_a_fresh_loader():
    images, labels = _data(50)
    loader = TensorLoader(images, labels, batch_size=16, shuffle=True, max_shift=1, seed=3)
    first = [(x.clone(), y.clone()) for x, y in loader]
    second = [y for _, y in loader]
    assert not all(torch.equal(a[1], b) for a, b in zip(first, second, strict=True))  # a new order each pass
    loader.reseed(3)
    for (x_first, y_first), (x, y) in zip(first, loader, strict=True):
        assert torch.equal(y_first, y) and torch.equal(x_first, x)  # same order, same random shifts


def test_drop_last_and_dataset_view():
    images, labels = _data()
    loader = TensorLoader(images, labels, batch_size=4, drop_last=True)
    assert len(loader) == 2 and sum(len(y) for _, y in loader) == 8
    image, label = loader.dataset[3]
    assert image.shape == (1, 2, 2) and label == 3 and len(loader.dataset) == 10


def test_random_shift_moves_content_and_pads_with_zero():
    images = torch.zeros(64, 1, 5, 5)
    images[:, :, 2, 2] = 1.0
    shifted = random_shift(images, 2, torch.Generator().manual_seed(0))
    assert shifted.shape == images.shape
    assert torch.all(shifted.sum(dim=(1, 2, 3)) == 1)  # the dot stays inside a 2-pixel margin
    positions = {tuple(torch.nonzero(s[0])[0].tolist()) for s in shifted}
    assert len(positions) > 10  # many different offsets


def test_bad_input_is_explained():
    with pytest.raises(TypeError, match="uint8"):
        TensorLoader(torch.zeros(3, 1, 2, 2), torch.zeros(3))
    with pytest.raises(ValueError, match=r"labels \(N,\)"):
        TensorLoader(torch.zeros(3, 1, 2, 2, dtype=torch.uint8), torch.zeros(4))
