"""Pictures of an evaluation sweep (``pipelines.evaluate.job``): metric-versus-step plots per
mask set, and side-by-side sample grids per (checkpoint, mask set).

Plain NumPy + Pillow + matplotlib (its Agg canvas: no display needed); every function
returns PNG bytes, the caller decides where they go.
"""
from __future__ import annotations

import io
import math
from typing import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw

from lama_core.checkpoint import CHECKPOINT_FILE_EXTENSIONS

#: Height in pixels of each panel of a sample strip.
SAMPLE_HEIGHT = 160
_GAP = 4  # pixels between panels and between rows, mid grey
_GREY = 128


def _resize_to_height(image: np.ndarray, height: int, resample: int) -> np.ndarray:
    h, w = image.shape[:2]
    if h == height:
        return image
    width = max(1, round(w * height / h))
    return np.asarray(Image.fromarray(image).resize((width, height), resample))


def sample_strip(image: np.ndarray, mask: np.ndarray, result: np.ndarray, height: int = SAMPLE_HEIGHT) -> np.ndarray:
    """One row of a sample grid: input with its hole painted white | output | ground truth.

    ``image``, ``result``: uint8 ``H x W x 3``; ``mask``: ``H x W`` (nonzero = hole).
    Returns uint8 ``height x (3 W' + 2 gap) x 3``, each panel scaled to ``height`` rows."""
    holed = np.array(image, copy=True)
    holed[np.asarray(mask) > 0] = 255
    panels = [_resize_to_height(p, height, Image.BILINEAR) for p in (holed, result, image)]
    gap = np.full((height, _GAP, 3), _GREY, np.uint8)
    return np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)


def sample_grid_png(strips: Sequence[np.ndarray], title: str = "") -> bytes:
    """Stack sample strips (uint8 ``h x w_i x 3``, any widths) into one PNG, padded grey on
    the right to the widest. ``title`` is drawn on a header line when given."""
    strips = [s for s in strips if s.size]
    if not strips:
        strips = [np.full((SAMPLE_HEIGHT, SAMPLE_HEIGHT, 3), _GREY, np.uint8)]
    width = max(s.shape[1] for s in strips)
    rows = []
    for strip in strips:
        pad = np.full((strip.shape[0], width - strip.shape[1], 3), _GREY, np.uint8)
        rows.extend([np.concatenate([strip, pad], axis=1), np.full((_GAP, width, 3), _GREY, np.uint8)])
    grid = np.concatenate(rows[:-1], axis=0)
    if title:
        header = Image.new("RGB", (width, 16), (255, 255, 255))
        ImageDraw.Draw(header).text((4, 2), title[: max(8, width // 6)], fill=(0, 0, 0))
        grid = np.concatenate([np.asarray(header), grid], axis=0)
    buf = io.BytesIO()
    Image.fromarray(grid).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


#: Axis labels: what each metric is measured in, and which way is better.
METRIC_UNITS = {
    "psnr": "PSNR, dB (higher is better)", "psnr_hole": "hole PSNR, dB (higher is better)",
    "ssim": "SSIM, 0-1 (higher is better)", "ssim_hole": "hole SSIM, 0-1 (higher is better)",
    "l1": "mean |error|, 0-1 (lower is better)", "l1_hole": "hole mean |error|, 0-1 (lower is better)",
    "lpips": "LPIPS (lower is better)", "fid": "FID (lower is better)",
}


def run_of(checkpoint: str) -> str:
    """The training run a checkpoint belongs to: its parent folder
    (``runs/exp1/checkpoint_000100`` -> ``runs/exp1``; a ``generator.safetensors`` file
    counts as its folder)."""
    parts = [p for p in str(checkpoint).rstrip("/").split("/")]
    if parts and parts[-1].endswith(CHECKPOINT_FILE_EXTENSIONS):
        parts = parts[:-1]
    return "/".join(parts[:-1]) or str(checkpoint)


def metrics_plot_png(points: Sequence[Mapping], metrics: Sequence[str], title: str) -> bytes:
    """One panel per metric, its value against training step, one line per training run
    (``run_of`` the checkpoint), with a legend naming the runs and axis labels with units.

    ``points``: one mapping per evaluated checkpoint with ``step`` (int or None),
    ``checkpoint`` (a URI) and a value per metric name (float, NaN or missing allowed).
    Checkpoints without a step (e.g. an official ``big-lama``) are drawn as dashed
    horizontal reference lines in the legend under their name. Returns PNG bytes."""
    # The object API with the Agg canvas: no pyplot global state, no display, thread-safe.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    metrics = list(metrics) or ["(none)"]
    cols = min(3, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig = Figure(figsize=(4.4 * cols, 3.2 * rows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    runs: dict[str, list[Mapping]] = {}
    for p in sorted((p for p in points if p.get("step") is not None), key=lambda p: p["step"]):
        runs.setdefault(run_of(p.get("checkpoint", "")), []).append(p)
    unstepped = [p for p in points if p.get("step") is None]
    for k, ax in enumerate(axes.flat):
        if k >= len(metrics):
            ax.axis("off")
            continue
        name = metrics[k]
        for run, run_points in runs.items():
            xs = [p["step"] for p in run_points if _finite(p.get(name))]
            ys = [p[name] for p in run_points if _finite(p.get(name))]
            if xs:
                ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.2, label=run[-40:])
        for p in unstepped:
            if _finite(p.get(name)):
                ax.axhline(p[name], linestyle="--", linewidth=0.8, color="grey",
                           label=str(p.get("checkpoint", "")).rstrip("/")[-40:])
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("training step", fontsize=8)
        ax.set_ylabel(METRIC_UNITS.get(name, name), fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, loc="best")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


def _finite(value) -> bool:
    return value is not None and isinstance(value, (int, float, np.floating)) and math.isfinite(value)
