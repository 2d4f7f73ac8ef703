"""Tests for course_utils.models: the two CNNs, the ResNet18 transfer helper and parameter counting."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils import _models as models
from course_utils._fit import fit


@pytest.mark.parametrize("cls", [models.SimpleCNN, models.ImprovedCNN])
def test_cnn_shapes_and_parameter_count(cls):
    model = cls()
    assert model(torch.zeros(5, 1, 28, 28)).shape == (5, 10)
    # The source's layers: conv1 320 + conv2 18,496 + fc 31,370 (+ BatchNorm 64 + 128 for ImprovedCNN)
    expected = 50_186 + (192 if cls is models.ImprovedCNN else 0)
    assert models.count_parameters(model) == expected
    layers = [type(m).__name__ for m in model.modules() if m is not model]
    source = ["Conv2d", "Conv2d", "MaxPool2d", "Linear"]
    if cls is models.ImprovedCNN:
        source = ["Conv2d", "BatchNorm2d", "Conv2d", "BatchNorm2d", "MaxPool2d", "Dropout", "Linear"]
    assert layers == source
    assert (model.fc.in_features, model.fc.out_features) == (7 * 7 * 64, 10)


def test_improved_cnn_drops_the_flattened_features():
    # The source puts Dropout(0.5) on the 3,136 flattened features, right before the single Linear.
    torch.manual_seed(0)
    model = models.ImprovedCNN().train()
    seen = []
    model.fc.register_forward_hook(lambda m, inputs, out: seen.append(inputs[0]))
    model(torch.randn(4, 1, 28, 28))
    features = seen[0]  # (4, 3136): after ReLU, so without dropout about half would be zero, never ~3/4
    assert features.shape == (4, 3136)
    zero_fraction = (features == 0).float().mean().item()
    model.dropout.p = 0.0
    seen.clear()
    model(torch.randn(4, 1, 28, 28))
    assert zero_fraction > (seen[0] == 0).float().mean().item() + 0.2


def _source_forward(model: models.SimpleCNN, x: torch.Tensor) -> torch.Tensor:
    """The source's order: ReLU before pooling."""
    x = model.pool(F.relu(model.conv1(x)))
    x = model.pool(F.relu(model.conv2(x)))
    return model.fc(torch.flatten(x, 1))


def test_simple_cnn_computes_the_sources_function():
    # SimpleCNN applies ReLU after pooling (faster); outputs and gradients must equal the source's order.
    torch.manual_seed(0)
    model = models.SimpleCNN()
    x = torch.randn(8, 1, 28, 28)
    ours, source = model(x), _source_forward(model, x)
    torch.testing.assert_close(ours, source, rtol=0, atol=0)
    grads = [torch.autograd.grad(out.square().sum(), list(model.parameters())) for out in (ours, source)]
    for g_ours, g_source in zip(*grads, strict=True):
        torch.testing.assert_close(g_ours, g_source)


def test_cnn_rejects_wrong_shapes_clearly():
    model = models.SimpleCNN()
    with pytest.raises(ValueError, match=r"\(batch, 1, 28, 28\), got \(1, 28, 28\).*unsqueeze"):
        model(torch.zeros(1, 28, 28))
    with pytest.raises(ValueError, match=r"got \(2, 1, 32, 32\).*in_channels=1, image_size=32"):
        model(torch.zeros(2, 1, 32, 32))
    assert models.SimpleCNN(in_channels=3, image_size=32)(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="divisible by 4"):
        models.SimpleCNN(image_size=30)


def test_dropout_only_in_train_mode():
    torch.manual_seed(0)
    model = models.ImprovedCNN().eval()
    x = torch.randn(4, 1, 28, 28)
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))


def test_trainable_summary():
    model = models.SimpleCNN()
    model.conv1.requires_grad_(False)
    table = models.trainable_summary(model)
    assert "conv1" in table and "total" in table
    assert f"{models.count_parameters(model, trainable_only=True):,}" in table.splitlines()[-1]


def _resnet(**kwargs):
    return models.resnet18_transfer(2, weights=None, verbose=False, **kwargs)


def test_resnet_feature_extraction_trains_only_the_head():
    model = _resnet()
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"fc"}
    assert model.fc.out_features == 2 and model.pretrained is False
    # The frozen backbone's BatchNorm is frozen too: train() and eval() give the same features.
    model.fc = nn.Identity()
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(model.train()(x), model.eval()(x))


def test_resnet_fine_tune_layer4():
    model = _resnet(unfreeze=("layer4",))
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"layer4", "fc"}
    with pytest.raises(ValueError, match="unknown blocks"):
        _resnet(unfreeze=("layer9",))


def test_resnet_head_trains_with_loss_backward():
    model = _resnet()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    loader = [(torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 0, 1]))]
    before = model.fc.weight.detach().clone()
    fit(
        model,
        loader,
        epochs=1,
        optimizer=optimizer,
        loss_fn=nn.CrossEntropyLoss(),
        verbose=False,
    )
    assert not torch.equal(before, model.fc.weight)


def test_resnet_from_scratch_is_all_trainable():
    model = _resnet(freeze_backbone=False)
    assert models.count_parameters(model, trainable_only=True) == models.count_parameters(model) == 11_177_538


def test_resnet_weights_unavailable(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no cached weights here

    def offline(*args, **kwargs):
        raise OSError("network is unreachable (test)")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(models.WeightsUnavailableError, match="download.pytorch.org.*copy it to that path"):
        models.resnet18_transfer(2)
    with pytest.warns(UserWarning, match="RANDOM WEIGHTS"):
        model = models.resnet18_transfer(2, allow_random=True)
    assert model.pretrained is False
    assert "random weights (NOT pretrained)" in capsys.readouterr().out


def test_resnet_download_failure_changes_no_global_state_and_leaves_no_file(
    monkeypatch, tmp_path, no_network
):
    import socket

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    calls = []
    monkeypatch.setattr(socket, "setdefaulttimeout", lambda *a: calls.append(a))
    with pytest.raises(models.WeightsUnavailableError, match=r"URLError|could not download"):
        models.resnet18_transfer(2, verbose=False)
    assert calls == []  # no process-wide socket timeout
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []  # no half-written weights file


def test_resnet_weights_file_with_a_wrong_hash_is_refused(monkeypatch, tmp_path):
    import io

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    class FakeResponse(io.BytesIO):
        headers: dict = {}

    monkeypatch.setattr("urllib.request.urlopen", lambda url, timeout: FakeResponse(b"not the real weights"))
    with pytest.raises(models.WeightsUnavailableError, match="checksum mismatch"):
        models.resnet18_transfer(2, verbose=False)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
