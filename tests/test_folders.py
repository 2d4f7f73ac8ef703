"""Tests for course_utils.folders: ImageFolder-layout folders and the ants/bees set."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image
from support import has_real

from course_utils import _files as _download
from course_utils import _folders as folders
from course_utils import data


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


def test_skipped_files_leave_targets_and_imgs_in_agreement(tmp_path):
    _make_folder(tmp_path)
    (tmp_path / "train" / "cats" / "broken.jpg").write_bytes(b"not really a jpeg")
    with pytest.warns(UserWarning, match="broken.jpg"):
        bundle = data.image_folder(tmp_path, batch_size=4, val_fraction=0.5)
    for split in (bundle.train, bundle.val):
        ds = split.dataset.dataset  # the ImageFolder under the Subset
        assert len(ds.targets) == len(ds.imgs) == len(ds.samples) == 6
        assert ds.targets == [t for _, t in ds.samples] and ds.imgs == ds.samples
        assert not any("broken" in path for path, _ in ds.samples)


def test_val_folder_with_other_classes_is_refused(tmp_path):
    _make_folder(tmp_path)
    (tmp_path / "val" / "dogs").rename(tmp_path / "val" / "wolves")
    with pytest.raises(
        ValueError,
        match=r"train/ has the classes \['cats', 'dogs'\], but val/ has \['cats', "
        r"'wolves'\] \(missing there: \['dogs'\]; only there: \['wolves'\]\)",
    ):
        data.image_folder(tmp_path)
    shutil.rmtree(tmp_path / "val" / "wolves")  # val/ lacks a class: its labels would shift too
    with pytest.raises(ValueError, match=r"but val/ has \['cats'\] \(missing there: \['dogs'\]\)"):
        data.image_folder(tmp_path)


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


def test_hymenoptera_download_failure_is_clear(tmp_data, no_network):
    with pytest.raises(data.DatasetNotFoundError, match="hymenoptera_data.zip"):
        data.hymenoptera(data_dir=tmp_data)
    assert list(tmp_data.iterdir()) == []


def test_hymenoptera_has_no_fallback_of_its_own_in_smoke_mode(tmp_data, no_network, monkeypatch):
    """Stand-ins are the test set-up's business (conftest.py); the loader fails clearly in any mode."""
    monkeypatch.setenv("COURSE_SMOKE", "1")
    with pytest.raises(data.DatasetNotFoundError, match="hymenoptera_data.zip"):
        data.hymenoptera(data_dir=tmp_data)


def test_hymenoptera_zip_is_verified_and_extracted(tmp_data, tmp_path, monkeypatch):
    import zipfile

    source = tmp_path / "src" / "hymenoptera_data"
    _make_folder(source)
    archive = tmp_path / "h.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in source.rglob("*.jpg"):
            zf.write(f, f.relative_to(source.parent))
    monkeypatch.setattr(folders, "HYMENOPTERA_MD5", _download.file_digest(archive))
    monkeypatch.setattr(folders, "HYMENOPTERA_URL", archive.as_uri())
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
    custom = data.transforms.Compose(
        [data.transforms.ToTensor(), data.transforms.Normalize((0.5,) * 3, (0.2,) * 3)]
    )
    assert data.image_folder(tmp_path, transform=custom).std == (0.2, 0.2, 0.2)
