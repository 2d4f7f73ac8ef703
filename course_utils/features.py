"""Looking inside a CNN: the filters of a conv layer, and the feature maps a layer outputs for one image."""

from __future__ import annotations

from typing import Any

import torch
from matplotlib.figure import Figure
from torch import nn

from .plotting import _grid
from .utils import eval_mode

__all__ = ["show_filters", "show_feature_maps"]


def show_filters(
    weights_or_layer: nn.Module | torch.Tensor,
    *,
    ncols: int = 8,
    max_filters: int = 64,
    title: str | None = None,
) -> Figure:
    """Show the filters of a conv layer, each scaled to its own range.

    Args:
        weights_or_layer: An ``nn.Conv2d`` or a weight tensor ``(out, in, kH, kW)``.
        ncols: Filters per row.
        max_filters: Show at most this many output filters.
        title: Figure title.

    Returns:
        The matplotlib Figure: RGB filters when in == 3, else each filter's first input channel in a
        red (positive) / blue (negative) colour map centred on 0.
    """
    weight = weights_or_layer.weight if isinstance(weights_or_layer, nn.Module) else weights_or_layer
    w = torch.as_tensor(weight).detach().cpu().float()
    if w.dim() != 4:
        raise ValueError(f"expected conv weights (out, in, kH, kW), got shape {tuple(w.shape)}")
    shown = w[:max_filters]
    n, rgb = len(shown), w.shape[1] == 3
    note = "RGB, each filter scaled to its own range" if rgb else "input channel 0: red > 0, blue < 0"
    count = "" if n == len(w) else f", first {n}"
    fig, axes = _grid(n, ncols, 1.2, f"{title or 'Conv filters'}: weight {tuple(w.shape)}{count}\n({note})")
    for i, ax in enumerate(axes):
        if rgb:
            f = shown[i].permute(1, 2, 0)  # (kH, kW, 3)
            lo, hi = f.min(), f.max()
            # Own range per filter, so filters with small weights are still visible.
            scaled = (f - lo) / (hi - lo) if hi > lo else torch.full_like(f, 0.5)
            ax.imshow(scaled.numpy(), interpolation="nearest")
        else:
            limit = float(shown[i, 0].abs().max()) or 1.0  # symmetric limits keep 0 white
            ax.imshow(shown[i, 0].numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        ax.set_title(f"filter {i}", fontsize=8)
    return fig


def show_feature_maps(
    model: nn.Module,
    layer: nn.Module,
    image: torch.Tensor,
    *,
    ncols: int = 8,
    max_maps: int = 32,
    title: str | None = None,
) -> Figure:
    """Run one image through ``model`` and show the channels that ``layer`` outputs.

    Args:
        model: The network (it is run in eval mode; its train/eval modes are restored afterwards).
        layer: A module inside ``model`` whose output to show, e.g. ``model.conv1``.
        image: One image ``(C, H, W)`` or a batch of one ``(1, C, H, W)``, preprocessed like training data.
        ncols: Maps per row.
        max_maps: Show at most this many channels.
        title: Figure title; the output shape is appended.

    Returns:
        The matplotlib Figure.
    """
    layer_name = next((name for name, m in model.named_modules() if m is layer), None)
    if layer_name is None:
        raise ValueError("layer is not part of model: pass a submodule such as model.conv1")
    x = torch.as_tensor(image)
    if x.dim() == 3:
        x = x.unsqueeze(0)  # (1, C, H, W)
    if x.dim() != 4 or x.shape[0] != 1 or not x.is_floating_point():
        raise ValueError(
            f"image must be one float image (C, H, W) or (1, C, H, W), got {tuple(x.shape)} {x.dtype}"
        )
    param = next(model.parameters(), None)
    if param is not None:
        x = x.to(device=param.device, dtype=param.dtype if param.is_floating_point() else x.dtype)
    captured: list[torch.Tensor] = []

    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        captured.append(output[0] if isinstance(output, (tuple, list)) else output)

    handle = layer.register_forward_hook(hook)
    try:
        with eval_mode(model), torch.no_grad():  # every submodule's own mode comes back afterwards
            model(x)
    finally:
        handle.remove()
    if not captured:
        raise RuntimeError(f"layer {layer_name or type(layer).__name__} was not used in model's forward pass")
    out = captured[0].detach().float().cpu()  # the first call, if the layer is used more than once
    if out.dim() != 4:
        raise ValueError(f"layer output has shape {tuple(out.shape)}, not feature maps (1, C, H, W)")
    maps = out[0, :max_maps]  # (n, H, W)
    heading = title or f"Feature maps of layer '{layer_name or 'model'}' ({type(layer).__name__})"
    detail = f"output shape {tuple(out.shape)}, showing {len(maps)} of {out.shape[1]} channels"
    heading = f"{heading}\n{detail}\n(each map on its own scale, bright = high)"
    fig, axes = _grid(len(maps), ncols, 1.5, heading)
    for i, ax in enumerate(axes):
        ax.imshow(maps[i].numpy(), cmap="viridis")
        ax.set_title(f"channel {i}", fontsize=8)
    return fig
