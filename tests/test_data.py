"""Tests for course_utils.data: loaders, splits, errors for missing data, the smoke fallback, image folders."""

from __future__ import annotations

import time

import pytest
import torch
from support import REAL_DATA, has_real

from course_utils import data


def test_missing_mnist_without_network_fails_fast_and_names_folder(tmp_data, no_network):
    start = time.perf_counter()
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.mnist(data_dir=tmp_data)
    assert time.perf_counter() - start < 5
    message = str(info.value)
    assert str(tmp_data / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte.gz" in message and "COURSE_DATA_DIR" in message
    assert list((tmp_data / "MNIST" / "raw").iterdir()) == []  # nothing half-written left behind


def test_download_false_says_so(tmp_data):
    with pytest.raises(data.DatasetNotFoundError, match="download=False"):
        data.fashion_mnist(data_dir=tmp_data, download=False)


@pytest.mark.parametrize("fast", [True, False])
def test_a_stand_in_folder_is_announced_loudly_and_read_like_the_real_one(tmp_path, no_network, capsys, fast):
    """Smoke runs on a machine without MNIST: the test set-up writes a stand-in; the loader only says so."""
    from course_machinery.standins import write_standins

    made = write_standins(tmp_path / "nothing-here", tmp_path / "data")
    assert made == ["MNIST", "FashionMNIST", "hymenoptera"]
    bundle = data.mnist(data_dir=tmp_path / "data", device="cpu", fast=fast)
    assert "!!! STAND-IN DATA" in capsys.readouterr().out
    assert bundle.source.startswith("SYNTHETIC stand-in for MNIST")
    images, labels = next(iter(bundle.train))
    assert images.shape == (64, 1, 28, 28) and labels.max() <= 9
    # torchvision's own class reads the stand-in files, as notebook 02 does with bundle.root
    classic = data.datasets.MNIST(root=bundle.root, train=False, download=False)
    assert len(classic) == 1024 and classic[0][0].size == (28, 28)
    photos = data.hymenoptera(data_dir=tmp_path / "data", batch_size=8)
    assert "!!! STAND-IN DATA" in capsys.readouterr().out and photos.classes == ["ants", "bees"]
    assert next(iter(photos.train))[0].shape == (8, 3, 224, 224)


def test_stand_ins_link_the_real_datasets_present(tmp_path):
    from course_machinery.standins import write_standins

    real = tmp_path / "real"
    write_standins(tmp_path / "none", real)  # a folder that "has" all three
    (real / "MNIST" / "STAND-IN.txt").unlink()
    assert write_standins(real, tmp_path / "mixed") == []
    assert (tmp_path / "mixed" / "MNIST").is_symlink()


def test_smoke_mode_keeps_small_subsets(tmp_path, monkeypatch):
    from course_machinery.standins import write_idx_dataset

    write_idx_dataset(tmp_path / "MNIST" / "raw", 3000, 1500)
    monkeypatch.setenv("COURSE_SMOKE", "1")  # read at each call: no re-import needed
    bundle = data.mnist(data_dir=tmp_path, device="cpu")
    assert len(bundle.train.dataset) + len(bundle.val.dataset) == data.SMOKE_TRAIN
    assert len(bundle.test.dataset) == data.SMOKE_TEST


def test_augment_with_a_custom_transform_is_refused_not_ignored(tmp_path):
    """augment's shifts belong to the default transform; silently dropping them would surprise a learner."""
    from course_machinery.standins import write_idx_dataset

    write_idx_dataset(tmp_path / "MNIST" / "raw", 100, 50)
    with pytest.raises(ValueError, match="put the shifts in it"):
        data.mnist(data_dir=tmp_path, augment=True, transform=data.transforms.ToTensor())


def test_synthetic_idx_files_are_reused(tmp_path):
    from course_machinery.standins import write_idx_dataset

    raw = write_idx_dataset(tmp_path / "MNIST" / "raw", 100, 50)
    first = {f.name: f.stat().st_mtime_ns for f in raw.iterdir()}
    assert sorted(first) == sorted(name.removesuffix(".gz") for name, _ in data.datasets.MNIST.resources)
    write_idx_dataset(raw, 100, 50)
    assert {f.name: f.stat().st_mtime_ns for f in raw.iterdir()} == first
    assert len(data.datasets.MNIST(root=tmp_path, train=True)) == 100


@pytest.mark.parametrize("smoke", ["0", "1"])
def test_a_missing_dataset_fails_clearly_in_any_mode(tmp_data, no_network, monkeypatch, smoke):
    monkeypatch.setenv("COURSE_SMOKE", smoke)
    with pytest.raises(data.DatasetNotFoundError, match="MNIST was not found"):
        data.mnist(data_dir=tmp_data)


def test_truncated_idx_file_is_reported(tmp_data):
    raw = tmp_data / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for gz, _ in data.datasets.MNIST.resources:
        (raw / gz.removesuffix(".gz")).write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 20)  # header, no images
    with pytest.raises(data.DatasetNotFoundError, match="truncated or corrupt"):
        data.mnist(data_dir=tmp_data)


def test_gz_files_are_extracted(tmp_data):
    import gzip

    raw = tmp_data / "MNIST" / "raw"
    raw.mkdir(parents=True)
    x = torch.randint(0, 255, (5, 28, 28), dtype=torch.uint8)
    y = torch.arange(5, dtype=torch.uint8)
    images = (
        (2051).to_bytes(4, "big") + (5).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + x.numpy().tobytes()
    )
    labels = (2049).to_bytes(4, "big") + (5).to_bytes(4, "big") + y.numpy().tobytes()
    for prefix in ("train", "t10k"):
        (raw / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(images))
        (raw / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
    bundle = data.mnist(data_dir=tmp_data, val_fraction=0.0, batch_size=5, device="cpu")
    batch, targets = next(iter(bundle.test))
    assert torch.equal(targets, y.long())
    expected = (x.float() / 255 - 0.1307) / 0.3081
    assert torch.allclose(batch[:, 0], expected, atol=1e-5)


def test_split_is_seeded_and_disjoint():
    train_a, val_a = data._split(100, 0.2, None, seed=3)
    train_b, val_b = data._split(100, 0.2, None, seed=3)
    assert torch.equal(train_a, train_b) and len(val_a) == 20
    assert not set(train_a.tolist()) & set(val_a.tolist())
    with pytest.raises(ValueError, match="val_fraction"):
        data._split(100, 1.5, None, seed=0)


@pytest.mark.realdata
@pytest.mark.skipif(not has_real("MNIST"), reason="real MNIST not in COURSE_DATA_DIR")
def test_real_mnist_fast_and_torchvision_paths_agree():
    fast = data.mnist(subset=512, test_subset=256, val_fraction=0.25, device="cpu")
    slow = data.mnist(subset=512, test_subset=256, val_fraction=0.25, fast=False)
    assert len(fast.train.dataset) == len(slow.train.dataset) == 384
    # Same test images, same normalisation, whichever path produced them.
    x_fast, y_fast = next(iter(fast.test))
    x_slow, y_slow = next(iter(slow.test))
    assert torch.equal(y_fast, y_slow)
    assert torch.allclose(x_fast, x_slow, atol=1e-5)
    assert fast.classes[0].startswith("0")


@pytest.mark.realdata
@pytest.mark.skipif(not has_real("MNIST"), reason="real MNIST not in COURSE_DATA_DIR")
def test_real_mnist_normalisation_constants():
    x = data.datasets.MNIST(str(REAL_DATA), train=True).data.float() / 255
    assert x.mean().item() == pytest.approx(data.MNIST_MEAN[0], abs=1e-4)
    assert x.std().item() == pytest.approx(data.MNIST_STD[0], abs=1e-4)


def test_dataset_status(tmp_path):
    assert data.dataset_status(tmp_path) == {"MNIST": False, "FashionMNIST": False, "hymenoptera": False}
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"):
        (raw / name).touch()
    (raw / "t10k-labels-idx1-ubyte.gz").touch()
    assert data.dataset_status(tmp_path)["MNIST"] is True
