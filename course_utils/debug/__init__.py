"""Tools for the debugging routine: loss at init, overfitting one batch, an LR range test, layer statistics.

Lesson 07 uses them in this order; each leaves the model it inspects as it found it.
"""

from .layers import LayerStats, layer_stats
from .routine import LRRangeResult, OverfitResult, loss_at_init, lr_range_test, overfit_one_batch

__all__ = [
    "loss_at_init",
    "overfit_one_batch",
    "OverfitResult",
    "lr_range_test",
    "LRRangeResult",
    "LayerStats",
    "layer_stats",
]
