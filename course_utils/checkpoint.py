"""Checkpoints written atomically and loaded safely (``weights_only=True``), with clear errors."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from .distributed import unwrap

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint"]

FORMAT = "course_utils.checkpoint/1"


class CheckpointError(RuntimeError):
    """A checkpoint could not be loaded: missing, corrupt, truncated or from another architecture."""


def save_checkpoint(
    model: nn.Module,
    path: str | Path,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    history: Any = None,
    **extra: Any,
) -> Path:
    """Save the model's weights (and optionally optimizer state and history) atomically.

    The file is written under a temporary name in the same folder and renamed over ``path`` only when
    complete, so a crash or Ctrl-C mid-write never leaves a truncated checkpoint in its place.

    Args:
        model: The model whose ``state_dict`` is saved; a ``DistributedDataParallel`` or ``torch.compile``
            wrapper is looked through, so the file loads into the plain model.
        path: Destination file (``.pt``); parent folders are created.
        optimizer: Also save its state, to resume training.
        history: A History (or dict) stored with the weights.
        **extra: More plain values to store (numbers, strings, lists, dicts of those).

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = unwrap(model)
    payload = {
        "format": FORMAT,
        "model_class": type(model).__name__,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "history": history.to_dict() if hasattr(history, "to_dict") else history,
        "extra": extra,
    }
    # A fresh temporary name beside the target, created with a normal file's mode (0o666 less the umask, as
    # any new file), then renamed over the target: a crash mid-write never leaves half a checkpoint.
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    try:
        with open(tmp, "xb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_checkpoint(
    model: nn.Module,
    path: str | Path,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    map_location: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Load weights saved by :func:`save_checkpoint` (or a plain ``state_dict`` file) into ``model``.

    Loads with ``weights_only=True``: a checkpoint cannot run code on your machine.

    Args:
        model: A model of the same architecture, plain or wrapped (DDP, ``torch.compile``); its weights are
            replaced.
        path: The checkpoint file. A plain ``state_dict`` saved from a wrapped model (keys starting with
            ``module.`` or ``_orig_mod.``) loads too.
        optimizer: Also restore its state, if the checkpoint holds one.
        map_location: Where to load the tensors before copying them into the model.

    Returns:
        The checkpoint's other contents: ``model_class``, ``history``, ``extra``.

    Raises:
        CheckpointError: The file is missing, corrupt or truncated, or was saved from another architecture.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; check the path, or train and save the model first")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError... for damaged files
        raise CheckpointError(
            f"{path} ({path.stat().st_size:,} bytes) is not a readable checkpoint: it is corrupt, truncated "
            f"or not a PyTorch file ({type(exc).__name__}: {exc}). Save it again from the trained model."
        ) from exc
    if isinstance(payload, dict) and payload.get("format") == FORMAT:
        state = payload["state_dict"]
    elif isinstance(payload, dict) and all(isinstance(v, torch.Tensor) for v in payload.values()):
        state, payload = payload, {"model_class": None, "history": None, "extra": {}}
    else:
        raise CheckpointError(f"{path} holds a {type(payload).__name__}, not model weights")

    model = unwrap(model)
    for prefix in ("module.", "_orig_mod."):  # torch.save(ddp_model.state_dict()) and the like
        if state and all(key.startswith(prefix) for key in state):  # a submodule named "module" stays
            consume_prefix_in_state_dict_if_present(state, prefix)
    saved_from = payload.get("model_class")
    problems = _mismatches(model, state)
    if problems:  # checked before loading, so a failed load leaves the model untouched
        origin = f" It was saved from a model of class {saved_from}." if saved_from else ""
        raise CheckpointError(
            f"{path} does not fit this {type(model).__name__}: it comes from another architecture.{origin}\n  "
            + "\n  ".join(problems)
            + "\nCreate the same model class (with the same arguments) before loading."
        )
    model.load_state_dict(state)
    if optimizer is not None and payload.get("optimizer") is not None:
        optimizer.load_state_dict(payload["optimizer"])
    return {k: payload.get(k) for k in ("model_class", "history", "extra")}


def _mismatches(model: nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """What differs between the model's parameters and the checkpoint's, in words (empty if they fit)."""
    own = model.state_dict()

    def listed(keys: list[str]) -> str:
        return ", ".join(keys[:5]) + (" ..." if len(keys) > 5 else "")

    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and own[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing in the checkpoint: {listed(missing)}")
    if unexpected:
        problems.append(f"not in the model: {listed(unexpected)}")
    if shapes:
        problems.append("different shapes: " + "; ".join(shapes[:5]))
    return problems
