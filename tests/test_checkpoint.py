"""Tests for course_utils.checkpoint: atomic saves and clear errors for wrong or damaged files."""

from __future__ import annotations

import pytest
import torch

from course_utils import _checkpoint as checkpoint
from course_utils._models import ImprovedCNN, SimpleCNN


def test_round_trip_with_optimizer(tmp_path):
    model = SimpleCNN()
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.zeros(2, 1, 28, 28)).sum().backward()
    optimizer.step()
    path = checkpoint.save_checkpoint(model, tmp_path / "m.pt", optimizer=optimizer, note="hi")
    fresh, fresh_opt = SimpleCNN(), torch.optim.Adam(SimpleCNN().parameters())
    fresh_opt = torch.optim.Adam(fresh.parameters())
    meta = checkpoint.load_checkpoint(fresh, path, optimizer=fresh_opt)
    assert meta["extra"] == {"note": "hi"} and meta["model_class"] == "SimpleCNN"
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True)
    )
    assert fresh_opt.state_dict()["state"][0]["step"] == 1


def test_plain_state_dict_loads(tmp_path):
    model = SimpleCNN()
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    fresh = SimpleCNN()  # other random weights
    meta = checkpoint.load_checkpoint(fresh, tmp_path / "plain.pt")
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True)
    )
    assert meta["history"] is None and meta["model_class"] is None


def test_other_architecture_is_explained_and_model_untouched(tmp_path):
    path = checkpoint.save_checkpoint(ImprovedCNN(), tmp_path / "improved.pt")
    model = SimpleCNN()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(
        checkpoint.CheckpointError,
        match=r"(?s)another architecture.*class ImprovedCNN.*not in the model: bn1",
    ):
        checkpoint.load_checkpoint(model, path)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    other = checkpoint.save_checkpoint(SimpleCNN(num_classes=3), tmp_path / "three.pt")
    with pytest.raises(
        checkpoint.CheckpointError, match=r"fc.weight: checkpoint \(3, 3136\) vs model \(10, 3136\)"
    ):
        checkpoint.load_checkpoint(SimpleCNN(), other)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_checkpoint_is_explained(tmp_path, damage):
    path = checkpoint.save_checkpoint(SimpleCNN(), tmp_path / "m.pt")
    content = path.read_bytes()
    path.write_bytes(
        {"truncate": content[: len(content) // 2], "garbage": b"\x00garbage" * 50, "empty": b""}[damage]
    )
    with pytest.raises(checkpoint.CheckpointError, match="corrupt, truncated or not a PyTorch file"):
        checkpoint.load_checkpoint(SimpleCNN(), path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint at"):
        checkpoint.load_checkpoint(SimpleCNN(), tmp_path / "nope.pt")


def test_failed_save_keeps_previous_file(tmp_path, monkeypatch):
    path = checkpoint.save_checkpoint(SimpleCNN(), tmp_path / "m.pt")
    good = path.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C in the middle of writing

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_checkpoint(SimpleCNN(), path)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_saved_file_has_a_normal_mode_without_touching_the_umask(tmp_path, monkeypatch):
    import os
    import stat

    mask = os.umask(0)
    os.umask(mask)

    def no_umask(*args):
        raise AssertionError("save_checkpoint changed the process-wide umask")

    monkeypatch.setattr(os, "umask", no_umask)
    path = checkpoint.save_checkpoint(SimpleCNN(), tmp_path / "m.pt")
    monkeypatch.undo()
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_wrapped_models_save_and_load_as_the_plain_model(tmp_path):
    """DDP-style (``module.``) and torch.compile (``_orig_mod.``) wrappers are looked through both ways."""
    torch.manual_seed(0)
    trained = SimpleCNN()
    wrapped = torch.nn.DataParallel(trained)  # the same ``module.`` prefix as DistributedDataParallel
    path = checkpoint.save_checkpoint(wrapped, tmp_path / "wrapped.pt")
    saved = torch.load(path, weights_only=True)
    assert saved["model_class"] == "SimpleCNN"
    assert set(saved["state_dict"]) == set(trained.state_dict())  # no "module." prefix in the file

    plain = SimpleCNN()
    checkpoint.load_checkpoint(plain, path)
    compiled = torch.compile(SimpleCNN())  # compiles lazily: nothing runs here
    checkpoint.load_checkpoint(compiled, path)
    for model in (plain, compiled._orig_mod):
        assert all(torch.equal(model.state_dict()[k], v) for k, v in trained.state_dict().items())

    # A plain state_dict saved from a wrapper, as torch.save(ddp_model.state_dict(), ...) writes it.
    torch.save(wrapped.state_dict(), tmp_path / "raw.pt")
    fresh = SimpleCNN()
    checkpoint.load_checkpoint(fresh, tmp_path / "raw.pt")
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in trained.state_dict().items())


def test_a_submodule_named_module_keeps_its_name(tmp_path):
    """Only a prefix on every key is a wrapper's: a model with a child called ``module`` loads as it is."""
    model = torch.nn.Sequential()
    model.add_module("module", torch.nn.Linear(2, 2))
    model.add_module("head", torch.nn.Linear(2, 1))
    path = checkpoint.save_checkpoint(model, tmp_path / "m.pt")
    other = torch.nn.Sequential()
    other.add_module("module", torch.nn.Linear(2, 2))
    other.add_module("head", torch.nn.Linear(2, 1))
    checkpoint.load_checkpoint(other, path)
    assert torch.equal(other.module.weight, model.module.weight)
