"""Tests for course_utils.data: loaders, splits, errors for missing data, the smoke fallback, image folders."""

from __future__ import annotations

import shutil
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from conftest import REAL_DATA, has_real
from PIL import Image

from course_utils import _download, config, data


def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable (test)")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def test_missing_mnist_without_network_fails_fast_and_names_folder(tmp_data, monkeypatch):
    _no_network(monkeypatch)
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


def test_smoke_mode_falls_back_to_synthetic_digits_loudly(tmp_data, monkeypatch, capsys):
    _no_network(monkeypatch)
    monkeypatch.setattr(config, "SMOKE", True)
    with pytest.warns(UserWarning, match="SYNTHETIC"):
        bundle = data.mnist(data_dir=tmp_data, device="cpu")
    assert "SMOKE MODE" in capsys.readouterr().out
    assert bundle.source.startswith("synthetic")
    assert len(bundle.train.dataset) + len(bundle.val.dataset) == data.SMOKE_TRAIN
    images, labels = next(iter(bundle.train))
    assert images.shape == (64, 1, 28, 28) and labels.max() <= 9


def test_outside_smoke_mode_there_is_no_synthetic_fallback(tmp_data, monkeypatch):
    _no_network(monkeypatch)
    with pytest.raises(data.DatasetNotFoundError):
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
    images = (2051).to_bytes(4, "big") + (5).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + x.numpy().tobytes()
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


def _make_folder(root: Path, n: int = 3) -> None:
    for split in ("train", "val"):
        for cls, colour in (("cats", (200, 30, 30)), ("dogs", (30, 30, 200))):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (40, 30), colour).save(folder / f"{i}.jpg")


def test_image_folder_loads_and_skips_unreadable_files(tmp_path):
    _make_folder(tmp_path)
    (tmp_path / "train" / "cats" / "broken.jpg").write_bytes(b"not really a jpeg")
    with pytest.warns(UserWarning, match="broken.jpg"):
        bundle = data.image_folder(tmp_path, batch_size=4)
    assert bundle.classes == ["cats", "dogs"]
    assert len(bundle.train.dataset) == 6 and len(bundle.test.dataset) == 6 and bundle.val is None
    images, labels = next(iter(bundle.test))
    assert images.shape == (4, 3, 224, 224)


def test_image_folder_missing_or_empty_is_explained(tmp_path):
    with pytest.raises(data.DatasetNotFoundError, match="does not exist.*expected"):
        data.image_folder(tmp_path / "nowhere")
    _make_folder(tmp_path)
    for f in (tmp_path / "val" / "dogs").iterdir():
        f.unlink()
    with pytest.raises(data.DatasetNotFoundError, match=r"\['dogs'\].*hold no files"):
        data.image_folder(tmp_path)
    shutil.rmtree(tmp_path / "val")
    (tmp_path / "val").mkdir()
    with pytest.raises(data.DatasetNotFoundError, match="no class folders"):
        data.image_folder(tmp_path)


def test_image_folder_val_fraction(tmp_path):
    _make_folder(tmp_path, n=5)
    bundle = data.image_folder(tmp_path, val_fraction=0.2, batch_size=2)
    assert len(bundle.train.dataset) == 8 and len(bundle.val.dataset) == 2


def test_hymenoptera_download_failure_is_clear(tmp_data, monkeypatch):
    _no_network(monkeypatch)
    with pytest.raises(data.DatasetNotFoundError, match="hymenoptera_data.zip"):
        data.hymenoptera(data_dir=tmp_data)
    assert list(tmp_data.iterdir()) == []


def test_hymenoptera_smoke_fallback(tmp_data, monkeypatch):
    _no_network(monkeypatch)
    monkeypatch.setattr(config, "SMOKE", True)
    with pytest.warns(UserWarning, match="SYNTHETIC"):
        bundle = data.hymenoptera(data_dir=tmp_data, batch_size=8)
    assert bundle.classes == ["ants", "bees"]
    assert next(iter(bundle.train))[0].shape == (8, 3, 224, 224)


def test_hymenoptera_zip_is_verified_and_extracted(tmp_data, tmp_path, monkeypatch):
    import zipfile

    source = tmp_path / "src" / "hymenoptera_data"
    _make_folder(source)
    archive = tmp_path / "h.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in source.rglob("*.jpg"):
            zf.write(f, f.relative_to(source.parent))
    monkeypatch.setattr(data, "HYMENOPTERA_MD5", _download.md5sum(archive))
    monkeypatch.setattr(data, "HYMENOPTERA_URL", archive.as_uri())
    bundle = data.hymenoptera(data_dir=tmp_data, batch_size=2)
    assert bundle.classes == ["cats", "dogs"]
    assert sorted(p.name for p in tmp_data.iterdir()) == ["hymenoptera_data"]  # zip removed after extraction


@pytest.mark.realdata
@pytest.mark.skipif(not has_real("hymenoptera"), reason="ants/bees not in COURSE_DATA_DIR")
def test_real_hymenoptera():
    bundle = data.hymenoptera(batch_size=16)
    assert bundle.classes == ["ants", "bees"]
    assert len(bundle.train.dataset) == 244 and len(bundle.test.dataset) == 153  # the .gif is skipped


def test_image_folder_reads_normalisation_from_weights_transforms(tmp_path):
    from torchvision.models import ResNet18_Weights

    _make_folder(tmp_path)
    weights_tf = ResNet18_Weights.DEFAULT.transforms()
    bundle = data.image_folder(tmp_path, transform=weights_tf)
    assert bundle.mean == tuple(weights_tf.mean) and bundle.std == tuple(weights_tf.std)
    custom = data.transforms.Compose([data.transforms.ToTensor(), data.transforms.Normalize((0.5,) * 3, (0.2,) * 3)])
    assert data.image_folder(tmp_path, transform=custom).std == (0.2, 0.2, 0.2)
