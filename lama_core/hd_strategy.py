"""Where the generator runs on a large image: the whole frame, or a window around each hole.

LaMa's cost grows with the pixels it sees, not with the hole. On a 1500×1000 photo with
a 2 % watermark hole, running the generator over the whole frame spends ~98 % of the work
on pixels that are pasted back unchanged. The ``windows`` strategy instead finds the hole
regions (connected on a coarse grid, so holes a few pixels apart are one region), gives
each a context window = the region's bounding box plus a margin proportional to the
box's shorter side (never below a minimum), clipped to the image, and inpaints each window
at native resolution. Only the region's own hole pixels are pasted back. The shorter side,
not the longer: a blob's context grows with its size, but a caption, a cable or a long
stroke needs a band of context about its thickness, not a window as wide as it is long
(with the longer side a one-line caption across a photo took the whole frame).

- Regions whose windows overlap are merged when the merged window is no larger than the
  two windows together (nearby holes share one window); otherwise both windows stay and
  each pastes only its own holes (holes of the other region inside a window are masked
  there too, so the generator never sees unknown pixels as known).
- When the windows together cover most of the image (``full_fraction``), one full frame
  is cheaper and better: the plan falls back to ``full``.
- Window sides are grown to bucketed sizes (``bucket_side``) inside the image, so windows
  from many images share a batch; a side that cannot grow (the image is smaller) stays.

Images whose longer side is at most ``trigger`` always use the full frame.
``WindowOptions``' margin defaults were chosen by measurement: ``benchmarks/bench_hd_margin.py``
and ``benchmarks/RESULTS.md`` ("HD strategy").
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .choices import HD_STRATEGIES  # noqa: F401 - the names, re-exported where the strategies live
#: Most regions planned one by one (merging compares every pair); more are joined on a coarser grid.
MAX_REGIONS = 256


@dataclass(frozen=True)
class WindowOptions:
    """Knobs of the ``windows`` strategy (pixels unless said otherwise).

    ``trigger``: images whose longer side is above this use windows (800, as IOPaint's
    crop strategy). ``margin``: context on each side of a region's box, as a multiple of the
    box's shorter side. ``min_margin``: the least context on each side. ``full_fraction``:
    windows covering more than this fraction of the image run as one full frame instead.
    """

    trigger: int = 800
    margin: float = 1.5
    min_margin: int = 128
    full_fraction: float = 0.6

    def __post_init__(self):
        if self.trigger < 0 or self.margin < 0 or self.min_margin < 0:
            raise ValueError(f"window options must be >= 0, got {self}")
        if not 0 < self.full_fraction <= 1:
            raise ValueError(f"full_fraction must be in (0, 1], got {self.full_fraction}")


@dataclass(frozen=True)
class Window:
    """One generator input: rows ``top:bottom`` and columns ``left:right`` of the image.

    ``labels``: the coarse-grid region labels whose hole pixels this window pastes back
    (None = every hole pixel inside it: no other window of the image overlaps it).
    """

    top: int
    left: int
    bottom: int
    right: int
    labels: tuple[int, ...] | None = None

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left


@dataclass(frozen=True)
class WindowPlan:
    """The plan for one image: ``strategy`` (``"full"`` or ``"windows"``), its windows
    (empty when the image has no hole), and the coarse grid (``cell`` pixels per cell,
    ``labels``: int32 region label per cell, 0 = no hole) that ``own_holes`` reads."""

    strategy: str
    windows: tuple[Window, ...]
    cell: int = 1
    labels: np.ndarray | None = None


def plan_windows(hole: np.ndarray, strategy: str, options: WindowOptions = WindowOptions()) -> WindowPlan:
    """Plan where the generator runs for one image.

    ``hole``: bool ``H x W`` (True = hole). ``strategy``: ``"full"`` or ``"windows"`` (one of
    ``HD_STRATEGIES``, as the caller checked: the ``Inpainter`` or a job's config).
    Returns a ``WindowPlan``: no window when there is no hole; one whole-image window for
    ``full``, for images not larger than ``options.trigger``, or when windows would cover
    most of the image; otherwise one window per (merged) hole region.
    """
    h, w = hole.shape
    full = WindowPlan("full", (Window(0, 0, h, w),))
    if strategy == "full" or max(h, w) <= options.trigger:
        return full if hole.any() else WindowPlan("full", ())
    from scipy import ndimage  # here, not at the top: 0.15 s of every model worker's start-up

    cell = max(8, -(-max(h, w) // 2048))  # the coarse grid stays <= ~2048² cells
    while True:
        labels, count = ndimage.label(_coarse_any(hole, cell), structure=np.ones((3, 3), bool))
        if count <= MAX_REGIONS:
            break
        cell *= 2  # many specks (noise, text): a coarser grid joins neighbours into fewer regions
    if count == 0:
        return WindowPlan("windows", ())
    boxes = np.array([_exact_box(hole, s, cell) for s in ndimage.find_objects(labels)], dtype=np.int64)
    groups = [[i + 1] for i in range(count)]
    boxes, groups = _merge(boxes, groups, options, h, w)
    windows = _windows(boxes, options, h, w)
    if _area(windows).sum() > options.full_fraction * h * w:
        return full
    # Grow to bucketed sizes first: ownership must hold for the windows actually run.
    grown = np.array([_grow(int(t), int(b), bucket_side(int(b - t)), h) + _grow(int(l), int(r), bucket_side(int(r - l)), w)
                      for t, l, b, r in windows])[:, [0, 2, 1, 3]]
    result = []
    for i, win in enumerate(grown):
        others = np.delete(grown, i, axis=0)
        overlapped = bool(len(others)) and bool(_overlaps(win, others).any())
        result.append(Window(int(win[0]), int(win[1]), int(win[2]), int(win[3]),
                             tuple(groups[i]) if overlapped else None))
    return WindowPlan("windows", tuple(result), cell, labels)


def own_holes(plan: WindowPlan, window: Window, hole: np.ndarray) -> np.ndarray:
    """The hole pixels ``window`` pastes back: bool ``window.height x window.width``
    (a view of ``hole`` when the window owns every hole pixel inside it)."""
    crop = hole[window.top:window.bottom, window.left:window.right]
    if window.labels is None:
        return crop
    c = plan.cell
    cells = plan.labels[window.top // c: (window.bottom - 1) // c + 1, window.left // c: (window.right - 1) // c + 1]
    owned = np.isin(cells, window.labels).repeat(c, axis=0).repeat(c, axis=1)
    oy, ox = window.top % c, window.left % c
    return crop & owned[oy: oy + window.height, ox: ox + window.width]


def bucket_side(n: int) -> int:
    """The bucketed length a window side of ``n`` pixels grows to: the next multiple of 64
    up to 512, of 128 up to 1024, of 256 above (so windows of similar sizes batch
    together at a cost of at most ~25 % more pixels per side)."""
    step = 64 if n <= 512 else 128 if n <= 1024 else 256
    return -(-n // step) * step


def _coarse_any(hole: np.ndarray, cell: int) -> np.ndarray:
    """bool ``ceil(H/cell) x ceil(W/cell)``: True where a cell holds any hole pixel
    (computed in row strips so no full-size temporary is made)."""
    h, w = hole.shape
    gh, gw = -(-h // cell), -(-w // cell)
    out = np.zeros((gh, gw), bool)
    rows = cell * 256
    for r in range(0, h, rows):
        strip = hole[r: r + rows]
        sh = strip.shape[0]
        padded = np.zeros((-(-sh // cell) * cell, gw * cell), bool)
        padded[:sh, :w] = strip
        out[r // cell: r // cell + padded.shape[0] // cell] = \
            padded.reshape(padded.shape[0] // cell, cell, gw, cell).any(axis=(1, 3))
    return out


def _exact_box(hole: np.ndarray, cells: tuple[slice, slice], cell: int) -> list[int]:
    """``[top, left, bottom, right]`` of the hole pixels inside a region's coarse box."""
    top, left = cells[0].start * cell, cells[1].start * cell
    sub = hole[top: cells[0].stop * cell, left: cells[1].stop * cell]
    rows, cols = np.flatnonzero(sub.any(axis=1)), np.flatnonzero(sub.any(axis=0))
    return [top + rows[0], left + cols[0], top + rows[-1] + 1, left + cols[-1] + 1]


def _windows(boxes: np.ndarray, options: WindowOptions, h: int, w: int) -> np.ndarray:
    """``[..., 4]`` hole boxes ``[top, left, bottom, right]`` -> their context windows, clipped."""
    side = np.minimum(boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1])
    m = np.maximum(options.min_margin, np.ceil(options.margin * side)).astype(np.int64)
    return np.stack([np.maximum(0, boxes[..., 0] - m), np.maximum(0, boxes[..., 1] - m),
                     np.minimum(h, boxes[..., 2] + m), np.minimum(w, boxes[..., 3] + m)], axis=-1)


def _area(boxes: np.ndarray) -> np.ndarray:
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def _overlaps(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    return ((others[:, 0] < box[2]) & (box[0] < others[:, 2]) & (others[:, 1] < box[3]) & (box[1] < others[:, 3]))


def _merge(boxes: np.ndarray, groups: list[list[int]], options: WindowOptions, h: int, w: int):
    """Merge regions whose windows overlap while the merged window is no larger than the
    two windows together; repeat until nothing merges. Returns (boxes, label groups)."""
    while len(boxes) > 1:
        windows = _windows(boxes, options, h, w)
        union_boxes = np.concatenate([np.minimum(boxes[:, None, :2], boxes[None, :, :2]),
                                      np.maximum(boxes[:, None, 2:], boxes[None, :, 2:])], axis=2)
        union_windows = _windows(union_boxes, options, h, w)
        overlap = ((windows[:, None, 0] < windows[None, :, 2]) & (windows[None, :, 0] < windows[:, None, 2])
                   & (windows[:, None, 1] < windows[None, :, 3]) & (windows[None, :, 1] < windows[:, None, 3]))
        area = _area(windows)
        cheaper = _area(union_windows) <= area[:, None] + area[None, :]
        pairs = np.argwhere(np.triu(overlap & cheaper, k=1))
        if len(pairs) == 0:
            break
        parent = list(range(len(boxes)))

        def root(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for a, b in pairs:
            parent[root(int(b))] = root(int(a))
        merged: dict[int, int] = {}
        new_boxes, new_groups = [], []
        for i in range(len(boxes)):
            r = root(i)
            if r not in merged:
                merged[r] = len(new_boxes)
                new_boxes.append(boxes[i].copy())
                new_groups.append([])
            j = merged[r]
            new_boxes[j][:2] = np.minimum(new_boxes[j][:2], boxes[i][:2])
            new_boxes[j][2:] = np.maximum(new_boxes[j][2:], boxes[i][2:])
            new_groups[j].extend(groups[i])
        boxes, groups = np.array(new_boxes), new_groups
    return boxes, groups


def _grow(start: int, stop: int, target: int, limit: int) -> tuple[int, int]:
    """Grow ``[start, stop)`` to ``target`` long, centred, shifted to stay in ``[0, limit)``;
    if the image is shorter than ``target`` the whole ``[0, limit)``."""
    if target >= limit:
        return 0, limit
    extra = target - (stop - start)
    start = max(0, start - extra // 2)
    start = min(start, limit - target)
    return start, start + target
