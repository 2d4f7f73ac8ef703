"""Checks for notebook 08 (scaling out): the effective batch size and learning rate, and matching another run."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ._feedback import NOT_YET, Verdict, failed, number, passed, unanswered


def check_scaling(
    effective_batch: Any,
    lr: Any,
    *,
    batch_per_process: int,
    processes: int,
    base_batch: int,
    base_lr: float,
    accumulation: int = 1,
) -> Verdict:
    """Check an effective batch size and the learning rate the linear scaling rule gives for it.

    Args:
        effective_batch: The learner's images per weight update.
        lr: The learner's learning rate.
        batch_per_process: Images per micro-batch in each process.
        processes: Processes training together.
        base_batch: The batch size the base learning rate was tuned for.
        base_lr: That learning rate.
        accumulation: Micro-batches accumulated per update in each process.

    Returns:
        A true Verdict when both follow from the setting (linear rule: lr grows with the batch size).
    """
    if unanswered(effective_batch) or unanswered(lr):
        return NOT_YET
    batch, rate = number(effective_batch), number(lr)
    if batch is None or rate is None:
        return failed(
            f"give two numbers, a batch size and a learning rate; you gave {effective_batch!r}, {lr!r}."
        )
    want_batch = batch_per_process * processes * accumulation
    if not math.isclose(batch, want_batch):
        if math.isclose(batch, batch_per_process):
            return failed(
                "that is one process's batch. Every process takes its own batch at every step, and the "
                "averaged gradient of all of them makes one update."
            )
        if accumulation > 1 and math.isclose(batch, batch_per_process * processes):
            return failed("the processes are counted; the accumulated micro-batches add to one update too.")
        return failed(
            "count the images behind one weight update: per process, per micro-batch, per accumulation."
        )
    want_lr = base_lr * want_batch / base_batch
    if math.isclose(rate, want_lr, rel_tol=1e-6):
        return passed(f"{batch:g} images per update, learning rate {rate:g} by the linear scaling rule.")
    if math.isclose(rate, base_lr, rel_tol=1e-6):
        return failed(
            "the batch size is right, but the linear rule changes the learning rate with the batch."
        )
    if math.isclose(rate, base_lr * math.sqrt(want_batch / base_batch), rel_tol=1e-6):
        return failed(
            "that is the square-root rule (often used with Adam); this exercise asks for the linear one."
        )
    return failed("the batch size is right. The linear rule: lr = base lr x (your batch / base batch).")


def check_same_weights(model: Any, reference: dict[str, torch.Tensor], *, atol: float, hint: str) -> Verdict:
    """Check that a trained model ended with the same weights as a reference run, within ``atol``.

    Args:
        model: The learner's trained model (a DistributedDataParallel wrapper is looked through).
        reference: The reference run's ``state_dict``.
        atol: Largest allowed difference of any weight (float sums in another order differ slightly).
        hint: What to print after "❌ Not yet:" when the weights differ more.

    Returns:
        A true Verdict when every weight is within ``atol`` of the reference.
    """
    if unanswered(model):
        return NOT_YET
    if not isinstance(model, nn.Module):
        return failed(f"pass the trained model (an nn.Module); you gave a {type(model).__name__}.")
    state = getattr(model, "module", model).state_dict()
    if not reference.keys() <= state.keys():
        return failed("this model has other layers than the reference run's; train the same model class.")
    diff = max((state[k].detach().cpu().float() - v.float()).abs().max().item() for k, v in reference.items())
    if diff <= atol:
        return passed(f"every weight matches the reference run to within {diff:.1e} (rounding only).")
    return failed(f"the weights differ from the reference run's by up to {diff:.2g}. {hint}")
