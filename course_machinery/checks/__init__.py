"""Friendly checks for the notebook exercises: each prints one ✅ line or one ❌ hint and returns a Verdict.

A check never raises for a wrong answer and never prints the expected value; a ``Verdict`` is true when the
answer is right and shows nothing in a notebook, so a check cell shows its one line of feedback and nothing
else. One module per group of lessons; a notebook imports them with ``from course_machinery import checks``.
"""

from ._feedback import Verdict
from .blocks import check_residual_block, check_time_to_accuracy
from .conv import (
    check_conv2d_manual,
    check_conv_output_size,
    check_conv_params,
    check_flatten_features,
    check_kernel,
    check_output_shape,
)
from .debugging import check_fixed_run
from .distributed import check_same_weights, check_scaling
from .training import check_equal, check_trainable

__all__ = [
    "Verdict",
    "check_conv_output_size",
    "check_output_shape",
    "check_conv_params",
    "check_flatten_features",
    "check_conv2d_manual",
    "check_kernel",
    "check_trainable",
    "check_equal",
    "check_residual_block",
    "check_time_to_accuracy",
    "check_scaling",
    "check_same_weights",
    "check_fixed_run",
]
