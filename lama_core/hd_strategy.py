"""Where the generator runs on a large image: the whole frame, or windows around the holes.

LaMa's cost grows with the pixels it sees, not with the hole. On a 1500×1000 photo with
a 2 % watermark hole, running the generator over the whole frame spends ~98 % of the work
on pixels that are pasted back unchanged. The ``windows`` strategy instead finds the hole
regions (connected on a coarse grid, so holes a few pixels apart are one region), gives
each hole a band of context about its thickness, and inpaints each window at native
resolution. Each window pastes back only the hole pixels it owns; every other hole pixel
inside it is masked there too, so the generator never sees a hole as known.

- Context: ``margin`` × the region's thickness (twice its largest inscribed radius, from a
  distance transform of the coarse grid: a stroke's width at any angle, a blob's size),
  at least ``min_margin``, on each side of the hole's box. Not the bounding box: a 45 px
  stroke at 45° has a nearly square box, and 1.5× its shorter side covered most of a
  1500×1000 frame (so the plan fell back to it).
- Tiles: a region whose hole fills less than half its box (a diagonal, curved or long
  stroke) is cut by a grid of tiles ``2 × context`` on a side, tiles are merged back while
  one window costs no more than two, and the pieces replace the region's one window when
  they save at least ``split_gain`` of its pixels. Each piece owns its cells' hole pixels.
- Merge: pieces whose windows overlap merge when one window costs no more than the two
  (disjoint pairs per round, the largest saving first); otherwise both windows stay.
- Costs are the pixels of the windows grown to bucketed sizes (``bucket_side``) inside the
  image, so windows from many images share a batch; a side that cannot grow stays.
- When the windows together cost more than ``full_fraction`` of the image, one full frame
  is cheaper and better: the plan falls back to ``full``.

Images whose longer side is at most ``trigger`` always use the full frame.
``WindowOptions``' defaults were chosen by measurement: ``benchmarks/bench_windows.py``
and ``benchmarks/RESULTS.md`` ("HD strategy").
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .choices import HD_STRATEGIES  # noqa: F401 - the names, re-exported where the strategies live
#: Most regions planned one by one (merging compares every pair); more are joined on a coarser grid.
MAX_REGIONS = 256


@dataclass(frozen=True)
class WindowOptions:
    """Knobs of the ``windows`` strategy (pixels unless said otherwise).

    ``trigger``: images whose longer side is above this use windows (800, as IOPaint's
    crop strategy). ``margin``: context on each side of a hole, as a multiple of its
    region's thickness (twice its largest inscribed radius). ``min_margin``: the least
    context on each side. ``split_gain``: a region is cut into tiles (each with its own
    window) when their windows together are at least this fraction smaller than the
    region's one window (1 = never cut). ``full_fraction``: windows covering more than this
    fraction of the image run as one full frame instead.

    Measured (``benchmarks/RESULTS.md``, "HD strategy": the demo model, 24 held-out
    1500×1000 images per hole set): ``margin=1.5``, ``min_margin=128`` ran no stroke image
    as the full frame (the bounding-box rule ran 14 of 24), saw 38 % of the pixels on
    strokes (was 82 %) and 25 % on blobs (was 42 %), with mean hole PSNR within 0.1 dB of
    the bounding-box rule's and of IOPaint's fixed 128 px crops on every set; less than
    128 px around thin holes (captions, strokes) lost 0.07–0.13 dB on average against
    IOPaint. ``split_gain=0.2``: tiles save nothing at 1500×1000 with 128 px context, but
    strokes four times as long on 6000×4000 masks took 32 % of the pixels, 41 % uncut.
    """

    trigger: int = 800
    margin: float = 1.5
    min_margin: int = 128
    split_gain: float = 0.2
    full_fraction: float = 0.6

    def __post_init__(self):
        if self.trigger < 0 or self.margin < 0 or self.min_margin < 0:
            raise ValueError(f"window options must be >= 0, got {self}")
        if not 0 <= self.split_gain <= 1:
            raise ValueError(f"split_gain must be in [0, 1], got {self.split_gain}")
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
    most of the image; otherwise one window per (merged) piece of a hole region.
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
    regions = ndimage.find_objects(labels)
    margins = [max(options.min_margin, math.ceil(options.margin * _thickness(labels[s] == i + 1, cell)))
               for i, s in enumerate(regions)]
    pieces, boxes, margins = _split_regions(hole, labels, regions, margins, cell, options.split_gain, h, w)
    groups = [[i + 1] for i in range(len(boxes))]
    boxes, margins, groups = _merge(boxes, margins, groups, h, w)
    windows = _windows(boxes, margins, h, w)
    if _cost(windows, h, w).sum() > options.full_fraction * h * w:
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
    return WindowPlan("windows", tuple(result), cell, pieces)


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
    return int(_buckets(np.int64(n)))


def _buckets(n: np.ndarray) -> np.ndarray:
    """``bucket_side`` of every element of an int64 array."""
    step = np.where(n <= 512, 64, np.where(n <= 1024, 128, 256))
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


def _thickness(region: np.ndarray, cell: int) -> float:
    """Twice the largest inscribed radius, in pixels, of a region given as bool cells
    (``cell`` pixels each; a cell is in when it holds any hole pixel): ``(2 d - 1) cell`` for
    the largest distance ``d`` (in cells) from an in-cell's centre to the nearest out-cell's,
    since the hole's edge lies about half a cell before that centre. Exact within about a
    cell; the coarse grid keeps it cheap on any image size."""
    from scipy import ndimage

    depth = ndimage.distance_transform_edt(np.pad(region, 1)).max()
    return float((2 * depth - 1) * cell)


def _split_regions(hole: np.ndarray, labels: np.ndarray, regions: list, margins: list[int], cell: int,
                   split_gain: float, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut each region into pieces whose windows cost less together (``_split``).

    In: ``hole`` bool ``H x W``; ``labels`` int32 coarse region labels (1..n, 0 = no hole);
    ``regions`` their ``find_objects`` slices; ``margins`` each region's context in pixels.
    Out: ``(pieces, boxes, margins)``: int32 coarse labels of the pieces (1..m; a region
    left whole keeps its cells), int64 ``m x 4`` exact hole boxes ``[top, left, bottom,
    right]`` of the pieces (the hole pixels inside each piece's cell box) and int64 ``m``
    margins (a piece keeps its region's)."""
    pieces = np.zeros_like(labels)
    boxes, piece_margins = [], []
    budget = MAX_REGIONS - len(regions)  # at most MAX_REGIONS pieces: merging compares every pair
    for i, (rows, cols) in enumerate(regions):
        cells = np.argwhere(labels[rows, cols] == i + 1) + (rows.start, cols.start)
        parts = _split(cells, margins[i], cell, split_gain, h, w)
        if len(parts) - 1 > budget:
            parts = [cells]
        budget -= len(parts) - 1
        for part in parts:
            pieces[part[:, 0], part[:, 1]] = len(boxes) + 1
            top, left = part.min(axis=0)
            bottom, right = part.max(axis=0) + 1
            boxes.append(_exact_box(hole, (slice(top, bottom), slice(left, right)), cell))
            piece_margins.append(margins[i])
    return pieces, np.array(boxes, dtype=np.int64), np.array(piece_margins, dtype=np.int64)


def _split(cells: np.ndarray, margin: int, cell: int, split_gain: float, h: int, w: int) -> list[np.ndarray]:
    """Cut a region's cells (int ``k x 2`` coarse ``[row, col]``) into pieces whose windows
    (cell box + ``margin``, clipped to ``h x w``, bucketed) cost fewer pixels together.

    The cells are cut by a grid of tiles ``2 x margin`` on a side, then the tiles are
    merged back wherever one window costs no more than two (``_merge``): along a straight
    caption everything merges again, along a diagonal or curved stroke pieces of about
    ``2 x margin`` stay (for a 45° stroke a tile's best extent is about its margin twice
    plus the stroke's width: longer tiles' boxes hold more empty corner, shorter ones
    more overlapping context). The pieces replace the whole region when their windows
    cost at least ``split_gain`` less than its one window. A region mostly hole (a blob)
    or no longer than a tile stays whole. Returns the pieces' cell arrays."""
    origin = cells.min(axis=0)
    extent = cells.max(axis=0) - origin + 1
    step = max(1, round(2 * margin / cell))
    if extent.max() <= step or len(cells) >= 0.5 * extent.prod():
        return [cells]
    while True:
        tiles = (cells - origin) // step
        if len(np.unique(tiles[:, 0] * (extent[1] // step + 1) + tiles[:, 1])) <= MAX_REGIONS:
            break
        step *= 2  # merging compares every pair of tiles: keep them few (a huge sparse region)
    order = np.lexsort((tiles[:, 1], tiles[:, 0]))
    cells, tiles = cells[order], tiles[order]
    starts = np.flatnonzero(np.r_[True, (np.diff(tiles, axis=0) != 0).any(axis=1)])
    parts = np.split(cells, starts[1:])
    boxes = np.array([np.concatenate([part.min(axis=0), part.max(axis=0) + 1]) * cell for part in parts])
    margins = np.full(len(parts), margin, dtype=np.int64)
    boxes, margins, groups = _merge(boxes, margins, [[j] for j in range(len(parts))], h, w)
    whole = _cost(_windows(np.concatenate([origin, origin + extent]) * cell, margin, h, w), h, w)
    if len(groups) == 1 or _cost(_windows(boxes, margins, h, w), h, w).sum() >= (1 - split_gain) * whole:
        return [cells]
    return [np.concatenate([parts[j] for j in group]) for group in groups]


def _windows(boxes: np.ndarray, margins: np.ndarray, h: int, w: int) -> np.ndarray:
    """``[..., 4]`` hole boxes ``[top, left, bottom, right]`` and their ``[...]`` margins ->
    their context windows, clipped to the image."""
    return np.stack([np.maximum(0, boxes[..., 0] - margins), np.maximum(0, boxes[..., 1] - margins),
                     np.minimum(h, boxes[..., 2] + margins), np.minimum(w, boxes[..., 3] + margins)], axis=-1)


def _cost(windows: np.ndarray, h: int, w: int) -> np.ndarray:
    """int64 ``[...]``: the pixels the generator sees for ``[..., 4]`` windows once their
    sides are grown to ``bucket_side`` (within the ``h x w`` image), what plans compare."""
    return (np.minimum(_buckets(windows[..., 2] - windows[..., 0]), h)
            * np.minimum(_buckets(windows[..., 3] - windows[..., 1]), w))


def _overlaps(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    return ((others[:, 0] < box[2]) & (box[0] < others[:, 2]) & (others[:, 1] < box[3]) & (box[1] < others[:, 3]))


def _merge(boxes: np.ndarray, margins: np.ndarray, groups: list[list[int]], h: int, w: int):
    """Merge pieces whose windows overlap while the merged window (the union box with the
    larger margin) costs no more than the two windows together. Each round merges disjoint
    pairs, the largest saving first, then rounds repeat until nothing merges: merging
    chains of pairs at once (A with B, B with C) could join a whole stroke's tiles into one
    window far larger than they are together. Returns (boxes, margins, label groups)."""
    while len(boxes) > 1:
        windows = _windows(boxes, margins, h, w)
        union_boxes = np.concatenate([np.minimum(boxes[:, None, :2], boxes[None, :, :2]),
                                      np.maximum(boxes[:, None, 2:], boxes[None, :, 2:])], axis=2)
        union_margins = np.maximum(margins[:, None], margins[None, :])
        overlap = ((windows[:, None, 0] < windows[None, :, 2]) & (windows[None, :, 0] < windows[:, None, 2])
                   & (windows[:, None, 1] < windows[None, :, 3]) & (windows[None, :, 1] < windows[:, None, 3]))
        cost = _cost(windows, h, w)
        saving = cost[:, None] + cost[None, :] - _cost(_windows(union_boxes, union_margins, h, w), h, w)
        pairs = np.argwhere(np.triu(overlap & (saving >= 0), k=1))
        if len(pairs) == 0:
            break
        used, absorbed = np.zeros(len(boxes), bool), np.zeros(len(boxes), bool)
        boxes, margins, groups = boxes.copy(), margins.copy(), list(groups)
        for a, b in pairs[np.argsort(-saving[pairs[:, 0], pairs[:, 1]], kind="stable")]:
            if used[a] or used[b]:
                continue
            used[a] = used[b] = absorbed[b] = True
            boxes[a], margins[a], groups[a] = union_boxes[a, b], union_margins[a, b], groups[a] + groups[b]
        boxes, margins = boxes[~absorbed], margins[~absorbed]
        groups = [g for g, gone in zip(groups, absorbed) if not gone]
    return boxes, margins, groups


def _grow(start: int, stop: int, target: int, limit: int) -> tuple[int, int]:
    """Grow ``[start, stop)`` to ``target`` long, centred, shifted to stay in ``[0, limit)``;
    if the image is shorter than ``target`` the whole ``[0, limit)``."""
    if target >= limit:
        return 0, limit
    extra = target - (stop - start)
    start = max(0, start - extra // 2)
    start = min(start, limit - target)
    return start, start + target
