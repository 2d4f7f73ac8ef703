"""A simulated accelerator: finds, on a CPU-only machine, the code that would mix devices on a GPU runtime.

On Colab's GPU runtime ``cu.get_device()`` is ``cuda``: a model left on the CPU and fed batches that
``cu.data`` put on the GPU fails with "Expected all tensors to be on the same device". On a CPU-only machine
every tensor is on the CPU, so such a cell passes unnoticed. Here ``cu.get_device()`` returns ``cpu:0`` instead
(still the CPU, so everything computes as usual), and a torch function mode keeps, for every tensor, whether it
is *on the device* (moved there with ``.to(device)``, made there with ``device=device``, computed from tensors
there) or *on the host* (everything else, as on a real GPU runtime). An operation that mixes the two, other than
with a 0-dimensional host tensor (CUDA accepts those), raises :class:`DeviceMismatch`, as CUDA would; so does
turning a device tensor into a NumPy array (CUDA's "can't convert cuda:0 device type tensor to numpy").

Used by the tests only: ``install()`` in a notebook kernel before the notebook runs (see ``kernel_startup``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

# "The accelerator": a CPU device that compares unequal to torch.device("cpu").
DEVICE = torch.device("cpu", 0)
_TAG = "_course_on_device"

Tensor = torch.Tensor
# Operations that move data between devices or only look at it: never a mismatch.
_MOVES = {
    Tensor.to,
    Tensor.cpu,
    Tensor.cuda,
    Tensor.copy_,
    Tensor.__deepcopy__,
    torch._has_compatible_shallow_copy_type,
}
# Indexing: a device tensor takes CPU indices; a CPU tensor takes no device index or value.
_INDEXING = {Tensor.__getitem__, Tensor.__setitem__}
# Operations that take no 0-dimensional CPU tensor beside device tensors (elementwise ones do, as in CUDA).
_SAME_DEVICE_ONLY = {torch.cat, torch.stack, torch.concat, torch.hstack, torch.vstack}
_LIKE_SELF = {Tensor.__deepcopy__}  # the result is where the tensor itself is (deepcopy's memo holds others)
_TO_NUMPY = {Tensor.numpy, Tensor.__array__}
# Attributes (torch hands the mode their getters and setters): a gradient or .data lives where its tensor does.
_SAME_PLACE = {Tensor.grad, Tensor.data}


def _attribute(func: object) -> tuple[object, str] | tuple[None, None]:
    """(descriptor, "__get__" or "__set__") for an attribute access such as ``tensor.grad``."""
    name = getattr(func, "__name__", "")
    return (getattr(func, "__self__", None), name) if name in ("__get__", "__set__") else (None, None)


class DeviceMismatch(Exception):
    """The code would mix the GPU and the CPU on a GPU runtime.

    Not a RuntimeError (CUDA's error is one): a cell that catches a RuntimeError on purpose, to show it, must not
    hide a device mix-up as well.
    """


def on_device(tensor: torch.Tensor) -> bool:
    return getattr(tensor, _TAG, False)


def _mark(value: object, on: bool) -> None:
    for leaf in tree_flatten(value)[0]:
        if isinstance(leaf, torch.Tensor):
            setattr(leaf, _TAG, on)


def _target(func: object, args: tuple, kwargs: dict) -> bool | None:
    """Where the result goes: True (the device), False (the host), None (where the inputs are)."""
    if func is Tensor.cpu:
        return False
    if func is Tensor.cuda:
        return True
    if func is Tensor.to:
        if len(args) > 1 and isinstance(args[1], torch.Tensor):
            return on_device(args[1])
        device = torch._C._nn._parse_to(*args[1:], **{k: v for k, v in kwargs.items() if k != "copy"})[0]
        return None if device is None else device == DEVICE
    device = kwargs.get("device")
    # A factory: torch.zeros(..., device=...), torch.tensor(..., device=...).
    if device is not None and func not in _MOVES:
        return torch.device(device) == DEVICE
    return None


class SimulatedAccelerator(TorchFunctionMode):
    """Tracks which tensors are on the simulated device and refuses what CUDA would refuse."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 (torch's protocol)
        kwargs = kwargs or {}
        attribute, access = _attribute(func)
        if attribute is not None:
            return self._attribute(func, attribute, access, args, kwargs)
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        there = [t for t in tensors if on_device(t)]
        if func in _TO_NUMPY and there:
            raise DeviceMismatch(
                "can't convert a tensor on the GPU to a NumPy array (a plot or .numpy() of a device tensor): "
                "call .cpu() first"
            )
        if func in _INDEXING:  # a CPU tensor indexed with, or assigned, tensors on the device
            if not on_device(args[0]) and there:
                raise DeviceMismatch(
                    f"{func.__name__} indexes a tensor on the CPU ({_shape(args[0])}) with tensors on the GPU: on a "
                    "GPU runtime this fails ('indices should be either on cpu or on the same device as the indexed "
                    "tensor'). Move them to one device (.to(device))."
                )
        elif there and func not in _MOVES:
            here = [t for t in tensors if not on_device(t) and (t.dim() > 0 or func in _SAME_DEVICE_ONLY)]
            if here:
                name = getattr(func, "__name__", str(func))
                raise DeviceMismatch(
                    f"{name} mixes tensors on the GPU ({', '.join(_shape(t) for t in there[:3])}) and on the CPU "
                    f"({', '.join(_shape(t) for t in here[:3])}): on a GPU runtime this fails with 'Expected all "
                    "tensors to be on the same device'. Move the model and the data to one device (.to(device))."
                )
        result = func(*args, **kwargs)
        target = on_device(args[0]) if func in _LIKE_SELF else _target(func, args, kwargs)
        if target is not None and result is args[0] and on_device(result) != target:
            result = result.view_as(result)  # x.cpu() of a device tensor is new: x stays where it was
        _mark(result, bool(there) if target is None else target)
        return result

    @staticmethod
    def _attribute(func, attribute, access, args, kwargs):  # noqa: ANN001, ANN205
        owner = args[0]
        if attribute is Tensor.device and access == "__get__":
            return DEVICE if on_device(owner) else func(*args, **kwargs)
        result = func(*args, **kwargs)
        if attribute in _SAME_PLACE:
            if access == "__get__" and isinstance(result, torch.Tensor):
                _mark(result, on_device(owner))
            elif access == "__set__" and isinstance(args[1], torch.Tensor):
                _mark(owner, on_device(args[1]))  # param.data = moved: the parameter is where its data is
        return result


def _shape(tensor: torch.Tensor) -> str:
    return f"a {tuple(tensor.shape)} tensor"


_MODE: SimulatedAccelerator | None = None


def install() -> None:
    """From now on in this process: ``get_device()`` is the simulated accelerator, and mixing devices raises."""
    global _MODE
    import course_utils._setup as setup

    original = setup.get_device

    def get_device(prefer: str | None = None, *, verbose: bool = True) -> torch.device:
        if prefer is not None:
            return original(prefer, verbose=verbose)
        if verbose:
            print(
                f"Using device: {DEVICE} (the tests' simulated accelerator: device mix-ups raise as on a GPU)"
            )
        return DEVICE

    setup.get_device = get_device
    if _MODE is None:
        # nn.Parameter(data) is made without a torch function (deepcopy makes each copy so): it is where its data is.
        make = torch.nn.Parameter.__new__

        def parameter(cls, data=None, requires_grad=True):  # noqa: ANN001, ANN202 (nn.Parameter's signature)
            made = make(cls, data, requires_grad)
            if isinstance(data, torch.Tensor):
                setattr(made, _TAG, on_device(data))
            return made

        torch.nn.Parameter.__new__ = staticmethod(parameter)
        _MODE = SimulatedAccelerator()
        _MODE.__enter__()


def kernel_startup(folder: Path) -> dict[str, str]:
    """Environment variables that make every IPython kernel started with them install the audit first.

    Writes an IPython profile into ``folder`` whose start-up file calls :func:`install`.
    """
    startup = folder / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    support = Path(__file__).resolve().parent.parent
    (startup / "00-device-audit.py").write_text(  # leaves no name in the notebook's namespace
        "def _course_device_audit():\n"
        "    import sys\n"
        f"    sys.path.insert(0, {str(support)!r})\n"
        "    try:\n"
        "        from support import device_audit\n"
        "\n"
        "        device_audit.install()\n"
        "    finally:\n"
        f"        sys.path.remove({str(support)!r})\n"
        "\n"
        "\n"
        "_course_device_audit()\n"
        "del _course_device_audit\n"
    )
    return {"IPYTHONDIR": str(folder), "COURSE_DEVICE_AUDIT": "1"}
