"""Resizing for the pixel budget in strips, so a huge image never exists as one float array.

``area_downscale`` equals ``F.interpolate(x, size, mode="area")`` and ``bicubic_strips``
equals ``F.interpolate(x, size, mode="bicubic", align_corners=False)`` up to float rounding
(both are separable; each pass is done where its memory is small): a 12000² uint8 image
needs ~1.7 GB as one float32 ``3 x H x W`` tensor, while these peak at a few bytes per
input pixel (the area pass keeps one ``C x H x w`` horizontal-pass buffer) and a strip of
output rows.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

_STRIP_BYTES = 64 * 2**20  # float32 bytes per strip of rows


def to_float_chw(pixels: np.ndarray) -> torch.Tensor:
    """uint8 (/255), bool (0/1) or float ``H x W x C`` array -> float32 ``C x H x W`` tensor."""
    x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    return x.float()


def area_downscale(pixels: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """Area-average ``H x W x C`` (uint8, bool or float32) down to float32 ``C x h x w``.

    The horizontal pass runs over strips of rows converted to float one strip at a time;
    the vertical pass over the (``W / w`` times smaller) result.
    """
    h_in, w_in, c = pixels.shape
    h, w = size
    rows = max(1, _STRIP_BYTES // (4 * c * w_in))
    across = torch.empty(c, h_in, w, dtype=torch.float32)
    for r in range(0, h_in, rows):
        strip = to_float_chw(pixels[r: r + rows])
        # Output height = input height makes the vertical bins single rows: a horizontal pass.
        across[:, r: r + rows] = F.adaptive_avg_pool2d(strip, (strip.shape[1], w))
    return F.adaptive_avg_pool2d(across, (h, w))


def bicubic_strips(x: torch.Tensor, size: tuple[int, int]) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Bicubic upscale of float ``C x h x w`` to ``C x H x W`` in strips of output rows.

    Yields ``(r0, r1, rows)`` with ``rows`` = output rows ``r0:r1``, float32 ``C x (r1-r0) x W``.
    Same sampling as PyTorch's (``align_corners=False``, A = -0.75, edge indices clamped).
    """
    c, h_in, w_in = x.shape
    h, w = size
    index, weight = _cubic_taps(h_in, h)
    rows = max(1, _STRIP_BYTES // (4 * c * w * 2))
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        lo, hi = int(index[r0:r1].min()), int(index[r0:r1].max()) + 1
        # Horizontal pass on the input rows these output rows read (height kept: identity
        # vertically, since the cubic weights at offset 0 are exactly (0, 1, 0, 0)).
        across = F.interpolate(x[None, :, lo:hi], size=(hi - lo, w), mode="bicubic", align_corners=False)[0]
        taps = index[r0:r1] - lo
        out = across[:, taps[:, 0]] * weight[r0:r1, 0, None]
        for k in range(1, 4):
            out += across[:, taps[:, k]] * weight[r0:r1, k, None]
        yield r0, r1, out


def _cubic_taps(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For each output position: the 4 input indices (clamped) and their cubic weights,
    PyTorch's ``upsample_bicubic2d`` convention (source = (dst + 0.5) * in / out - 0.5)."""
    a = -0.75
    src = (torch.arange(n_out, dtype=torch.float32) + 0.5) * (n_in / n_out) - 0.5
    base = torch.floor(src)
    t = src - base

    def near(d):  # |d| <= 1
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d):  # 1 < |d| < 2
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    weight = torch.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], dim=1)
    index = (base.long()[:, None] + torch.arange(-1, 3)[None]).clamp(0, n_in - 1)
    return index, weight
