"""Hole-area bins and per-bin summaries, as LaMa's evaluator reports them.

LaMa splits a test set into 10 equal bins of hole area over 0-100% (lower edge
inclusive, 100% in the last bin) and reports every metric per bin and over the whole set
(``all``); FID per bin compares the inpainted and ground-truth images of that bin.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from .hole_area import HOLE_AREA_BINS, hole_area_bin
from .registry import METRICS

ALL = "all"


def hole_fraction(mask: torch.Tensor) -> torch.Tensor:
    """Fraction of hole pixels per image: ``mask`` ``N x 1 x H x W`` (1 = hole, > 0.5 counts)
    -> ``(N,)`` float64 in [0, 1]."""
    if mask.ndim != 4 or mask.shape[1] != 1:
        raise ValueError(f"mask must be N x 1 x H x W, got {tuple(mask.shape)}")
    return (mask > 0.5).double().mean(dim=(1, 2, 3))


def _columns(table) -> Mapping[str, Sequence]:
    """Columns of a table given as a mapping of columns (dict, pandas DataFrame) or a list of row dicts."""
    if isinstance(table, Mapping) or hasattr(table, "columns"):
        return table
    rows = list(table)
    return {key: [row[key] for row in rows] for key in (rows[0] if rows else {})}


def summarize_by_hole_area(table, metrics: Sequence[str], hole_fraction_column: str = "hole_fraction") -> list[dict]:
    """Summary rows per hole-area bin and over all images.

    ``table``: per-image rows, as a mapping of columns (dict of lists/arrays, a pandas
    DataFrame) or a list of row dicts, holding ``hole_fraction_column`` and the columns that
    the metrics ``metrics`` produce (see ``compute_metrics``). Returns one dict per non-empty
    bin in bin order, then ``all``: ``{"hole_area_bin": label, "n": count, <summary values>}``, where
    per-image metrics give their mean (NaN ignored) and fid the FID of that subset (NaN for
    fewer than 2 images).
    """
    columns = _columns(table)
    fractions = np.asarray(columns[hole_fraction_column], np.float64) if len(columns) else np.zeros(0)
    labels = np.array([hole_area_bin(f) for f in fractions], dtype=object)
    selections = [(label, labels == label) for label in HOLE_AREA_BINS]
    selections.append((ALL, np.ones(len(labels), dtype=bool)))
    summary = []
    for label, selected in selections:
        n = int(selected.sum())
        if n == 0:
            if label == ALL:
                summary.append({"hole_area_bin": ALL, "n": 0})  # an empty table: nothing to summarise
            continue
        row: dict = {"hole_area_bin": label, "n": n}
        for name in metrics:
            metric = METRICS[name]
            subset = {c: _take(columns[c], selected) for c in metric.columns}
            row.update(metric.summarize(subset))
        summary.append(row)
    return summary


def _take(column, selected: np.ndarray):
    """Rows of one column where ``selected``; feature columns may be lists of 1-D arrays."""
    array = np.asarray(column) if not isinstance(column, list) else None
    if array is not None and array.dtype != object:
        return array[selected]
    return [row for row, keep in zip(column, selected) if keep]
