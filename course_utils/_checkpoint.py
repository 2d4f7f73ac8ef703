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
    """Save the weights (optionally optimizer state, history) atomically: a crash never leaves half a file.

    Args:
        model: Whose ``state_dict`` is saved; DDP and ``torch.compile`` wrappers are looked through.
        path: Destination file (``.pt``); parent folders are created.
        optimizer: Also save its state, to resume training.
        history: A History (or dict) stored with the weights.
        **extra: More plain values to store (numbers, strings, lists, dicts of those).

    Returns:
        The path written.
    """
    path, model = Path(path), unwrap(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "model_class": type(model).__name__,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "history": history.to_dict() if hasattr(history, "to_dict") else history,
        "extra": extra,
    }
    # Written under a fresh name ("x": mode 0o666 less the umask, nothing overwritten), renamed when complete.
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
    """Load saved weights into ``model`` with ``weights_only=True``, so the file cannot run code.

    Args:
        model: A model of the same architecture (plain, DDP or ``torch.compile``d); its weights are replaced.
        path: The checkpoint file; a plain ``state_dict``, even one saved from a wrapped model, loads too.
        optimizer: Also restore its state, if the checkpoint holds one.
        map_location: Where to load the tensors before copying them into the model.

    Returns:
        The checkpoint's other contents: ``model_class``, ``history``, ``extra``.

    Raises:
        CheckpointError: The file is missing, corrupt or truncated, or was saved from another architecture.
    """
    path, model = Path(path), unwrap(model)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; check the path, or train and save the model first")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError... for damaged files
        raise CheckpointError(
            f"{path} ({path.stat().st_size:,} bytes) is not a readable checkpoint: it is corrupt, truncated "
            f"or not a PyTorch file ({type(exc).__name__}: {exc}). Save it again from the trained model."
        ) from exc
    if isinstance(payload, dict) and all(isinstance(v, torch.Tensor) for v in payload.values()):
        payload = {"format": FORMAT, "state_dict": payload, "extra": {}}  # a plain state_dict file
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} holds a {type(payload).__name__}, not model weights")
    state = payload["state_dict"]
    for prefix in ("module.", "_orig_mod."):  # torch.save(ddp_model.state_dict()) and the like
        if state and all(key.startswith(prefix) for key in state):  # a submodule named "module" stays
            consume_prefix_in_state_dict_if_present(state, prefix)
    # Compared before loading, so a failed load leaves the model untouched.
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}  # name -> shape
    saved = {k: tuple(v.shape) for k, v in state.items()}
    shapes = [f"{k}: checkpoint {s} vs model {own[k]}" for k, s in saved.items() if own.get(k, s) != s]
    diff = {
        "missing in the checkpoint": [k for k in own if k not in saved],
        "not in the model": [k for k in saved if k not in own],
        "different shapes": shapes,
    }
    problems = [f"\n  {what}: {'; '.join(ks[:5])}{' ...' * (len(ks) > 5)}" for what, ks in diff.items() if ks]
    if problems:
        origin = f" It was saved from a model of class {c}." if (c := payload.get("model_class")) else ""
        raise CheckpointError(
            f"{path} does not fit this {type(model).__name__}: it comes from another architecture.{origin}"
            f"{''.join(problems)}\nCreate the same model class (with the same arguments) before loading."
        )
    model.load_state_dict(state)
    if optimizer is not None and payload.get("optimizer") is not None:
        optimizer.load_state_dict(payload["optimizer"])
    return {k: payload.get(k) for k in ("model_class", "history", "extra")}
