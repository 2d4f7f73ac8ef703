"""Interactive widgets: a convolution explorer for kernels, stride, padding and dilation."""

from __future__ import annotations

import base64
import io
from typing import Any

import ipywidgets as widgets
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import cbook
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from .models import conv_output_size
from .synthetic import rendered_digits

__all__ = ["KERNELS", "conv_explorer", "ConvExplorer", "explorer_figure"]


def _kernel(rows: list[list[float]], scale: float = 1.0) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32) * scale


_GAUSS_1D = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])

# Classic hand-made kernels; learners see each one's numbers next to its effect.
KERNELS: dict[str, torch.Tensor] = {
    "identity": _kernel([[0, 0, 0], [0, 1, 0], [0, 0, 0]]),
    "box blur 3x3": _kernel([[1, 1, 1], [1, 1, 1], [1, 1, 1]], 1 / 9),
    "gaussian blur 5x5": torch.outer(_GAUSS_1D, _GAUSS_1D) / 256,
    "sharpen": _kernel([[0, -1, 0], [-1, 5, -1], [0, -1, 0]]),
    "Sobel x": _kernel([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]),  # changes left to right: vertical edges
    "Sobel y": _kernel([[-1, -2, -1], [0, 0, 0], [1, 2, 1]]),  # changes top to bottom: horizontal edges
    "Laplacian": _kernel([[0, 1, 0], [1, -4, 1], [0, 1, 0]]),
    "emboss": _kernel([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]),
}


def _sample_images(image: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Grey images ``(H, W)`` in 0-1, built only when an explorer is created (nothing at import)."""
    images: dict[str, torch.Tensor] = {}
    if image is not None:
        x = torch.as_tensor(image).detach().cpu()
        if x.dim() == 3 and x.shape[0] == 1:
            x = x[0]  # (H, W)
        if x.dim() != 2:
            raise ValueError(f"image must be a grey image (H, W) or (1, H, W), got shape {tuple(x.shape)}")
        images["your image"] = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    try:
        with cbook.get_sample_data("grace_hopper.jpg") as f:
            photo = Image.open(f).convert("L").reduce(4)  # 512x600 -> 128x150: small enough to stay snappy
        images["Grace Hopper"] = torch.from_numpy(np.asarray(photo, dtype=np.float32)) / 255  # (150, 128)
    except (OSError, ValueError):  # some slim matplotlib builds ship without sample data
        pass
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    images["checkerboard"] = ((yy // 8 + xx // 8) % 2).float()  # 8-pixel squares
    digits, _ = rendered_digits(1, seed=3)
    images["digit"] = digits[0].float() / 255  # (28, 28)
    return images


def _as_fraction(kernel: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The kernel as integers times 1/d when it can be (box blur = ones x 1/9), for legible cells."""
    for d in range(1, 257):
        scaled = kernel * d
        if torch.allclose(scaled, scaled.round(), atol=1e-4):
            return scaled.round(), d
    return kernel, 1


def explorer_figure(
    image: torch.Tensor, kernel_name: str, stride: int, padding: int, dilation: int
) -> Figure:
    """Draw input (with padding), kernel (with its numbers) and output side by side.

    Args:
        image: Grey image ``(H, W)``.
        kernel_name: A key of :data:`KERNELS`.
        stride: Convolution stride.
        padding: Zero padding on each side.
        dilation: Spacing between kernel taps.

    Returns:
        A matplotlib Figure (not registered with pyplot, so it never pops up or leaks by itself).
    """
    kernel = KERNELS[kernel_name]
    h, w = image.shape
    k = kernel.shape[-1]
    fig = Figure(figsize=(12, 4.2), layout="constrained")
    ax_in, ax_k, ax_out = fig.subplots(1, 3, width_ratios=[1.0, 0.8, 1.0])
    padded = F.pad(image, (padding, padding, padding, padding))  # (H + 2p, W + 2p)
    ax_in.imshow(padded.numpy(), cmap="gray")
    if padding:  # outline the real image inside the zero padding
        ax_in.add_patch(Rectangle((padding - 0.5, padding - 0.5), w, h, fill=False, edgecolor="red", lw=1.5))
    ax_in.set_title(f"input {h}×{w}" + (f"\n+ padding {padding} (red box = image)" if padding else ""))
    # Dilation spreads the taps apart; the gaps (NaN) show as empty cells.
    span = dilation * (k - 1) + 1
    spread = torch.full((span, span), float("nan"))
    spread[::dilation, ::dilation] = kernel
    shown, denominator = _as_fraction(kernel)
    # Limits wider than the largest weight keep every cell light enough for black numbers on top.
    limit = 1.6 * (float(kernel.abs().max()) or 1.0)
    ax_k.imshow(spread.numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit)
    for i in range(k):
        for j in range(k):
            value = float(shown[i, j])
            text = f"{value:g}" if denominator > 1 or value == round(value) else f"{value:.2f}"
            ax_k.text(
                j * dilation, i * dilation, text, ha="center", va="center", fontsize=12 if span <= 5 else 9
            )
    notes = [f"numbers × 1/{denominator}"] if denominator > 1 else []
    notes += [f"dilation {dilation}: covers {span}×{span}"] if dilation > 1 else []
    ax_k.set_title(f"kernel '{kernel_name}' ({k}×{k})" + ("\n" + ", ".join(notes) if notes else ""))
    ax_k.set_xticks([])
    ax_k.set_yticks([])
    out_h, out_w = (conv_output_size(n, k, stride, padding, dilation) for n in (h, w))
    if out_h > 0 and out_w > 0:
        out = F.conv2d(
            image[None, None], kernel[None, None], stride=stride, padding=padding, dilation=dilation
        )  # (1, 1, out_h, out_w)
        ax_out.imshow(out[0, 0].numpy(), cmap="gray")  # (out_h, out_w)
        ax_out.set_title(f"output {out_h}×{out_w} (stride {stride})")
    else:
        ax_out.text(0.5, 0.5, "kernel larger than the\npadded image: no output", ha="center", va="center")
        ax_out.set_title("output: none")
    for ax in (ax_in, ax_out):
        ax.set_xlabel("x (pixels)")
        ax.set_ylabel("y (pixels)")
    return fig


def _shape_html(h: int, w: int, k: int, stride: int, padding: int, dilation: int) -> tuple[str, int, int]:
    lines, sizes = [], []
    for axis, size in (("H", h), ("W", w)):
        out = conv_output_size(size, k, stride, padding, dilation)
        sizes.append(out)
        lines.append(
            f"{axis}_out = floor(({size} + 2*{padding} - {dilation}*({k}-1) - 1) / {stride}) + 1 = {out}"
        )
    out_h, out_w = sizes
    head = (
        f"<b>output shape: ({out_h}, {out_w})</b>"
        if out_h > 0 and out_w > 0
        else "<b>output shape: none (the kernel does not fit)</b>"
    )
    formula = "out = floor((H + 2*padding - dilation*(k-1) - 1) / stride) + 1"
    return f"{head} &nbsp; from {formula}<br><code>{'<br>'.join(lines)}</code>", out_h, out_w


class ConvExplorer(widgets.VBox):
    """The widget returned by :func:`conv_explorer`; its controls are attributes for tests and notebooks."""

    def __init__(self, image: torch.Tensor | None = None) -> None:
        self.images = _sample_images(image)
        self.image_dropdown = widgets.Dropdown(options=list(self.images), description="image")
        self.kernel_dropdown = widgets.Dropdown(options=list(KERNELS), value="Sobel x", description="kernel")
        # Redraw on release, not at every step of a drag: each redraw takes a few tenths of a second.
        slider = {"continuous_update": False}
        self.stride = widgets.IntSlider(value=1, min=1, max=4, description="stride", **slider)
        self.padding = widgets.IntSlider(value=0, min=0, max=4, description="padding", **slider)
        self.dilation = widgets.IntSlider(value=1, min=1, max=3, description="dilation", **slider)
        self.shape_label = widgets.HTML()
        self.output = widgets.Output()
        self.figure: Figure | None = None  # the latest drawing, kept for tests and for saving
        self.result: torch.Tensor | None = None  # the latest conv2d output (1, 1, H_out, W_out)
        for control, css in (
            (self.image_dropdown, "image"),
            (self.kernel_dropdown, "kernel"),
            (self.stride, "stride"),
            (self.padding, "padding"),
            (self.dilation, "dilation"),
            (self.shape_label, "shape"),
            (self.output, "output"),
        ):
            control.add_class(f"cu-conv-{css}")
        for control in (self.image_dropdown, self.kernel_dropdown, self.stride, self.padding, self.dilation):
            control.observe(self._update, names="value")
        super().__init__(
            [
                widgets.HBox([self.image_dropdown, self.kernel_dropdown]),
                widgets.HBox([self.stride, self.padding, self.dilation]),
                self.shape_label,
                self.output,
            ]
        )
        self.add_class("cu-conv-explorer")
        self._update()

    def __repr__(self) -> str:
        # Shown as text where widgets cannot render (a static view of the notebook, a terminal).
        return "Convolution explorer: run this cell in Jupyter to pick an image, a kernel, stride, padding and dilation."

    def _update(self, change: dict[str, Any] | None = None) -> None:
        image = self.images[self.image_dropdown.value]
        kernel = KERNELS[self.kernel_dropdown.value]
        stride, padding, dilation = self.stride.value, self.padding.value, self.dilation.value
        html, out_h, out_w = _shape_html(*image.shape, kernel.shape[-1], stride, padding, dilation)
        self.shape_label.value = html
        if out_h > 0 and out_w > 0:
            self.result = F.conv2d(
                image[None, None], kernel[None, None], stride=stride, padding=padding, dilation=dilation
            )  # (1, 1, H_out, W_out)
            # The formula shown to learners must be the one PyTorch follows.
            assert tuple(self.result.shape[-2:]) == (out_h, out_w), (tuple(self.result.shape), out_h, out_w)
        else:
            self.result = None
        self.figure = explorer_figure(image, self.kernel_dropdown.value, stride, padding, dilation)
        # A PNG works in every frontend whatever matplotlib backend the kernel uses; setting `outputs` in one
        # step replaces the old picture without flicker and works without a running kernel (tests).
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=80)
        png = base64.b64encode(buffer.getvalue()).decode("ascii")
        text = f"convolution explorer: {self.kernel_dropdown.value} on {self.image_dropdown.value}"
        self.output.outputs = (
            {"output_type": "display_data", "data": {"image/png": png, "text/plain": text}, "metadata": {}},
        )


def conv_explorer(image: torch.Tensor | None = None) -> widgets.VBox:
    """An interactive explorer: pick an image and a kernel, move stride/padding/dilation, see the result.

    Args:
        image: Optional grey image ``(H, W)`` or ``(1, H, W)`` (float 0-1 or uint8), offered as "your image".

    Returns:
        A ``VBox`` (a :class:`ConvExplorer`) whose controls are attributes: ``image_dropdown``,
        ``kernel_dropdown``, ``stride``, ``padding``, ``dilation``, ``shape_label`` and ``output``.
    """
    return ConvExplorer(image)
