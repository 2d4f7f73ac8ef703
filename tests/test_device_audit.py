"""The simulated accelerator (tests/support/device_audit.py) raises where CUDA would, and only there.

It changes global state (a torch function mode, ``get_device``), so it runs in a fresh process.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

TESTS = Path(__file__).resolve().parent

SCRIPT = textwrap.dedent(
    """
    import copy
    import sys

    import torch
    from torch import nn

    sys.path.insert(0, sys.argv[1])
    from support import device_audit as audit

    audit.install()
    import course_utils as cu

    device = cu.get_device()
    assert device == audit.DEVICE and device != torch.device("cpu")


    def raises(what, action, words):
        try:
            action()
        except audit.DeviceMismatch as error:
            assert words in str(error), (what, str(error))
            print("caught:", what)
        else:
            raise AssertionError(f"no DeviceMismatch: {what}")


    # What fails on a GPU runtime fails here.
    model = cu.SimpleCNN()  # built on the CPU...
    images = torch.randn(8, 1, 28, 28).to(device)  # ...fed batches on the device (as cu.data gives them)
    raises("model left on the CPU", lambda: model(images), "Expected all tensors to be on the same device")
    model.to(device)
    outputs = model(images)
    labels = torch.randint(0, 10, (8,))  # on the CPU
    raises("labels on the CPU", lambda: nn.functional.cross_entropy(outputs, labels), "mixes tensors")
    raises("comparing predictions on two devices", lambda: outputs.argmax(1).cpu() == labels.to(device), "__eq__")
    raises("NumPy from the device", lambda: outputs.detach().numpy(), "call .cpu() first")
    raises("a CPU tensor indexed on the device", lambda: labels[outputs.argmax(1)], "indexes a tensor on the CPU")
    raises("stacking a CPU scalar with a device one", lambda: torch.stack([outputs.sum(), labels.sum()]), "stack")

    # What works on a GPU runtime works here: a training step, an optimizer, copies, moves, 0-dim CPU scalars.
    loss = nn.functional.cross_entropy(outputs, labels.to(device))
    loss.backward()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    optimizer.step()
    twin = copy.deepcopy(model)
    assert all(audit.on_device(p) for p in twin.parameters()), "a deep copy stays on the device"
    assert all(audit.on_device(p.grad) for p in model.parameters())
    twin(images * torch.tensor(2.0))  # a 0-dimensional CPU tensor mixes with device tensors, as in CUDA
    assert outputs[labels % 8].shape == (8, 10)  # a device tensor takes CPU indices
    host = images.cpu()
    assert audit.on_device(images) and not audit.on_device(host), ".cpu() is a new tensor; the old one stays"
    assert host.numpy().shape == (8, 1, 28, 28)
    model.cpu()
    assert not any(audit.on_device(p) for p in model.parameters())
    model(host)
    print("all good")
    """
)


def test_the_simulated_accelerator_raises_where_cuda_would_and_only_there():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(TESTS)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("caught:") == 6 and result.stdout.strip().endswith("all good"), result.stdout
