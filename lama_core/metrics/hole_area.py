"""LaMa's hole-area bins: 10 equal bins of hole area over 0-100% (lower edge inclusive,
100% in the last bin). Plain Python, so the jobs' record writers label rows without
loading torch.
"""
from __future__ import annotations

import math

NUM_BINS = 10
HOLE_AREA_BINS: tuple[str, ...] = tuple(f"{100 * k // NUM_BINS}-{100 * (k + 1) // NUM_BINS}%" for k in range(NUM_BINS))

# Fractions are often float32 means (0.7 -> 0.69999999); this slack puts such values on the
# edge they mean. It is below the resolution of a 10-megapixel mask, so no real area moves.
_EDGE_SLACK = 1e-7


def hole_area_bin(fraction: float) -> str:
    """Label of the hole-area bin of ``fraction`` in [0, 1]: ``"0-10%"`` ... ``"90-100%"``,
    lower edge inclusive (0.1 -> ``"10-20%"``), 1.0 in ``"90-100%"``. Raises ``ValueError``
    outside [0, 1] or for NaN."""
    fraction = float(fraction)
    if math.isnan(fraction) or not -_EDGE_SLACK <= fraction <= 1 + _EDGE_SLACK:
        raise ValueError(f"hole fraction must be in [0, 1], got {fraction}")
    index = math.floor((fraction + _EDGE_SLACK) * NUM_BINS)
    return HOLE_AREA_BINS[min(max(index, 0), NUM_BINS - 1)]
