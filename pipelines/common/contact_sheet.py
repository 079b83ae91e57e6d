"""Contact sheets: rows of side-by-side image panels as one PNG, for a person to look at
what a job did (the bulk job's ``OUTPUT/preview.png``, an evaluation's sample grids).

Plain NumPy + Pillow; every function returns arrays or PNG bytes, the caller decides where
they go.
"""
from __future__ import annotations

import io
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

#: Height in pixels of each panel of a strip.
SAMPLE_HEIGHT = 160
_GAP = 4  # pixels between panels and between rows, mid grey
_GREY = 128


def _resize_to_height(image: np.ndarray, height: int) -> np.ndarray:
    h, w = image.shape[:2]
    if h == height:
        return image
    width = max(1, round(w * height / h))
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def with_hole(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A copy of the uint8 ``H x W x 3`` ``image`` with its hole (``mask`` ``H x W``, nonzero =
    hole) painted white: how the input looks to the model."""
    holed = np.array(image, copy=True)
    holed[np.asarray(mask) > 0] = 255
    return holed


def strip(panels: Sequence[np.ndarray], height: int = SAMPLE_HEIGHT) -> np.ndarray:
    """One row of a contact sheet: the uint8 ``H x W x 3`` ``panels`` side by side, each scaled
    to ``height`` rows, a grey gap between them. Returns uint8 ``height x W' x 3``."""
    scaled = [_resize_to_height(p, height) for p in panels]
    gap = np.full((height, _GAP, 3), _GREY, np.uint8)
    parts = [part for p in scaled for part in (p, gap)][:-1]
    return np.concatenate(parts, axis=1)


def contact_sheet_png(strips: Sequence[np.ndarray], title: str = "") -> bytes:
    """Stack strips (uint8 ``h x w_i x 3``, any widths) into one PNG, padded grey on the
    right to the widest. ``title`` is drawn on a header line when given."""
    strips = [s for s in strips if s.size]
    if not strips:
        strips = [np.full((SAMPLE_HEIGHT, SAMPLE_HEIGHT, 3), _GREY, np.uint8)]
    width = max(s.shape[1] for s in strips)
    rows = []
    for row in strips:
        pad = np.full((row.shape[0], width - row.shape[1], 3), _GREY, np.uint8)
        rows.extend([np.concatenate([row, pad], axis=1), np.full((_GAP, width, 3), _GREY, np.uint8)])
    grid = np.concatenate(rows[:-1], axis=0)
    if title:
        header = Image.new("RGB", (width, 16), (255, 255, 255))
        ImageDraw.Draw(header).text((4, 2), title[: max(8, width // 6)], fill=(0, 0, 0))
        grid = np.concatenate([np.asarray(header), grid], axis=0)
    buf = io.BytesIO()
    Image.fromarray(grid).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
