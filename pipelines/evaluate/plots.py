"""Pictures of an evaluation sweep (``pipelines.evaluate.job``): metric-versus-step plots per
mask set, and the strips of the sample grids per (checkpoint, mask set) (the grids
themselves: ``pipelines.common.contact_sheet``).

Plain NumPy + Pillow + matplotlib (its Agg canvas: no display needed); every function
returns PNG bytes, the caller decides where they go.
"""
from __future__ import annotations

import io
import math
from typing import Mapping, Sequence

import numpy as np

from lama_core.checkpoint import CHECKPOINT_FILE_EXTENSIONS

from pipelines.common.contact_sheet import SAMPLE_HEIGHT, strip, with_hole

def sample_strip(image: np.ndarray, mask: np.ndarray, result: np.ndarray, height: int = SAMPLE_HEIGHT) -> np.ndarray:
    """One row of a sample grid: input with its hole painted white | output | ground truth.

    ``image``, ``result``: uint8 ``H x W x 3``; ``mask``: ``H x W`` (nonzero = hole).
    Returns uint8 ``height x (3 W' + 2 gap) x 3``, each panel scaled to ``height`` rows."""
    return strip([with_hole(image, mask), result, image], height)


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
