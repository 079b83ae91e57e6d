"""LaMa's random mask generators (strokes and boxes), reimplemented in NumPy + Pillow.

Follows the official ``saicinpainting/training/data/masks.py`` and
``configs/data_gen/random_*.yaml`` (advimman/lama) draw for draw, with three changes:

* Lines are drawn with Pillow instead of OpenCV, so the same seed gives the same pixels on
  every machine (no OpenCV build differences); ``_draw_thick_line`` reproduces OpenCV's
  line footprint, so hole areas match the official sets.
* Every mask has its own ``numpy.random.Generator`` seeded from ``(seed, index)``, so mask
  ``i`` does not depend on how many masks were drawn before it: a set generated in
  parallel, in any order, or resumed half-way is identical to one generated in a loop.
* Where the official evaluation script skips an image (all 5 candidates over 50% area),
  we draw again, so every index has a mask.

A mask is an ``H x W`` float32 array in {0, 1}; 1 marks the hole (pixels to inpaint).
"""
from __future__ import annotations

import dataclasses
import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw


@dataclass(frozen=True)
class StrokeParams:
    """Irregular brush strokes (official ``irregular_kwargs``); lengths and widths in pixels.

    A segment is ``min_len + U{0..max_len-1}`` long and ``min_width + U{0..max_width-1}``
    thick; ``min_len`` and ``min_width`` are constants (10, 5) in the official code.
    """

    min_times: int
    max_times: int
    max_width: int
    max_len: int
    max_angle: int = 4
    min_width: int = 5
    min_len: int = 10


@dataclass(frozen=True)
class BoxParams:
    """Axis-aligned filled boxes (official ``box_kwargs``); sizes and margin in pixels.

    ``proba`` is the weight of boxes against strokes (strokes weigh 1).
    """

    proba: float
    min_size: int
    max_size: int
    min_times: int
    max_times: int
    margin: int


@dataclass(frozen=True)
class MaskSetSpec:
    """One named mask distribution at a square image ``size``.

    Evaluation sets draw ``variants`` masks per image, drop those whose hole fraction is
    over ``max_hole_fraction`` and keep one; training sets (``max_hole_fraction=None``)
    draw a single mask and keep it.
    """

    size: int
    strokes: StrokeParams
    boxes: BoxParams | None = None
    variants: int = 1
    max_hole_fraction: float | None = None

    def scaled(self, factor: float) -> MaskSetSpec:
        """The same distribution with every pixel parameter (stroke width and length, box
        size and margin) multiplied by ``factor``; counts, angles and probabilities stay."""
        if factor == 1:
            return self
        px = lambda v: max(1, round(v * factor))  # noqa: E731
        s = self.strokes
        strokes = dataclasses.replace(s, max_width=px(s.max_width), max_len=px(s.max_len),
                                      min_width=px(s.min_width), min_len=px(s.min_len))
        boxes = self.boxes and dataclasses.replace(
            self.boxes, min_size=px(self.boxes.min_size), max_size=px(self.boxes.max_size),
            margin=round(self.boxes.margin * factor))
        return dataclasses.replace(self, size=px(self.size), strokes=strokes, boxes=boxes)


def _eval_set(size: int, strokes: StrokeParams, boxes: BoxParams | None = None) -> MaskSetSpec:
    # The official evaluation sets (configs/data_gen/random_*.yaml): 5 variants, <= 50% area.
    return MaskSetSpec(size, strokes, boxes, variants=5, max_hole_fraction=0.5)


#: The mask sets of docs/DESIGN.md, by name: the official evaluation sets and big-lama's training mix.
MASK_SETS: dict[str, MaskSetSpec] = {
    "wide_256": MaskSetSpec(256, StrokeParams(1, 5, 100, 200), BoxParams(1.0, 30, 150, 1, 4, 10)),
    "thick_256": _eval_set(256, StrokeParams(1, 5, 100, 200), BoxParams(0.3, 30, 150, 1, 3, 10)),
    "medium_256": _eval_set(256, StrokeParams(4, 5, 50, 100), BoxParams(0.3, 10, 50, 1, 5, 0)),
    "thin_256": _eval_set(256, StrokeParams(4, 50, 10, 40)),
    "thick_512": _eval_set(512, StrokeParams(1, 5, 250, 450), BoxParams(0.3, 30, 300, 1, 4, 10)),
    "medium_512": _eval_set(512, StrokeParams(4, 10, 100, 200), BoxParams(0.3, 30, 150, 1, 5, 0)),
    "thin_512": _eval_set(512, StrokeParams(4, 70, 20, 100)),
}


def _resolve(spec_or_name: MaskSetSpec | str) -> MaskSetSpec:
    if isinstance(spec_or_name, MaskSetSpec):
        return spec_or_name
    try:
        return MASK_SETS[spec_or_name]
    except KeyError:
        raise ValueError(f"unknown mask kind {spec_or_name!r}; valid kinds: {', '.join(MASK_SETS)}") from None


def _draw_strokes(draw: ImageDraw.ImageDraw, p: StrokeParams, height: int, width: int,
                  rng: np.random.Generator) -> None:
    """Official ``make_random_irregular_mask`` with ``DrawMethod.LINE``."""
    # The official RandomIrregularMaskGenerator passes max_times + 1 to the drawing function,
    # which draws randint(min, max + 1): so times is uniform in {min .. max + 1}.
    times = int(rng.integers(p.min_times, p.max_times + 2))
    for i in range(times):
        x, y = int(rng.integers(width)), int(rng.integers(height))
        for _ in range(1 + int(rng.integers(5))):
            angle = 0.01 + int(rng.integers(p.max_angle))
            if i % 2 == 0:  # the official code mirrors by stroke index i, not segment index
                angle = 2 * 3.1415926 - angle
            length = p.min_len + int(rng.integers(p.max_len))
            brush_w = p.min_width + int(rng.integers(p.max_width))
            # int() truncates toward zero like the official astype(np.int32); the official
            # clip is to [0, width] (one past the edge), kept as is.
            end_x = min(max(int(x + length * math.sin(angle)), 0), width)
            end_y = min(max(int(y + length * math.cos(angle)), 0), height)
            _draw_thick_line(draw, x, y, end_x, end_y, brush_w)
            x, y = end_x, end_y


def _draw_thick_line(draw: ImageDraw.ImageDraw, x0: int, y0: int, x1: int, y1: int, thickness: int) -> None:
    """Pillow stand-in for ``cv2.line(mask, p0, p1, 1, thickness)``.

    OpenCV fills every pixel within ``k = (thickness + 1) // 2`` of the segment: a band
    ``2k + 1`` pixels wide with round caps of radius ``k`` (measured: thickness 5 paints a
    7-pixel band). Drawing a nominal ``thickness``-wide line instead paints up to 30% less
    for thin brushes and shifts thin_512's hole-area quartiles by -0.03; this matches
    OpenCV's area within ~2%.
    """
    k = (thickness + 1) // 2
    draw.line([(x0, y0), (x1, y1)], fill=255, width=2 * k + 1)
    draw.ellipse([x0 - k, y0 - k, x0 + k, y0 + k], fill=255)
    draw.ellipse([x1 - k, y1 - k, x1 + k, y1 + k], fill=255)


def _draw_boxes(draw: ImageDraw.ImageDraw, p: BoxParams, height: int, width: int,
                rng: np.random.Generator) -> None:
    """Official ``make_random_rectangle_mask``."""
    # The official RandomRectangleMaskGenerator passes max_size + 1, so sides are uniform in
    # {min_size .. max_size}, capped so a box fits inside the margins.
    hi = max(min(p.max_size + 1, height - 2 * p.margin, width - 2 * p.margin), p.min_size + 1)
    times = int(rng.integers(p.min_times, p.max_times + 1))
    for _ in range(times):
        box_w, box_h = int(rng.integers(p.min_size, hi)), int(rng.integers(p.min_size, hi))
        x0 = int(rng.integers(p.margin, max(width - p.margin - box_w + 1, p.margin + 1)))
        y0 = int(rng.integers(p.margin, max(height - p.margin - box_h + 1, p.margin + 1)))
        draw.rectangle([x0, y0, x0 + box_w - 1, y0 + box_h - 1], fill=255)


def _draw_one(spec: MaskSetSpec, height: int, width: int, rng: np.random.Generator) -> Image.Image:
    """One candidate mask as an 'L' image (0 or 255): strokes or boxes, never both."""
    img = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(img)
    # Official MixedMaskGenerator: pick one generator with probability proportional to its
    # weight (strokes 1, boxes box.proba).
    if spec.boxes is not None and rng.random() * (1 + spec.boxes.proba) >= 1:
        _draw_boxes(draw, spec.boxes, height, width, rng)
    else:
        _draw_strokes(draw, spec.strokes, height, width, rng)
    return img


def _image_hole_fraction(img: Image.Image) -> float:
    """Hole fraction of a 0/255 'L' image, in [0, 1]."""
    hist = img.histogram()  # C-side count, cheaper than a NumPy pass over the pixels
    return 1.0 - hist[0] / (img.width * img.height)


# Bounds the redraws of evaluation masks: only tiny images (where a minimum-size stroke
# already covers half the image) ever need more than a couple of rounds.
_MAX_ROUNDS = 20


def draw_mask_image(spec: MaskSetSpec, seed: int, index: int, height: int | None = None,
                    width: int | None = None) -> Image.Image:
    """Mask ``index`` of the set ``(spec, seed)`` as a Pillow 'L' image, pixels 0 or 255
    (255 = hole), ``width x height`` (default: ``spec.size`` square).

    Evaluation specs follow the official selection: draw ``spec.variants`` candidates, drop
    those over ``max_hole_fraction``, keep one at random. Where the official script would
    give up on the image (all candidates rejected), we draw another round instead, so every
    index has a mask; after ``_MAX_ROUNDS`` rounds (only on tiny images, where every stroke
    is large) the smallest candidate is kept.
    """
    height = spec.size if height is None else height
    width = spec.size if width is None else width
    rng = np.random.default_rng([seed, index])
    if spec.max_hole_fraction is None:
        return _draw_one(spec, height, width, rng)
    smallest, smallest_fraction = None, 2.0
    for _ in range(_MAX_ROUNDS):
        candidates = [_draw_one(spec, height, width, rng) for _ in range(spec.variants)]
        fractions = [_image_hole_fraction(m) for m in candidates]
        kept = [m for m, f in zip(candidates, fractions) if f <= spec.max_hole_fraction]
        if kept:
            return kept[int(rng.integers(len(kept)))]
        if min(fractions) < smallest_fraction:
            smallest_fraction, smallest = min(fractions), candidates[fractions.index(min(fractions))]
    return smallest


class MaskGenerator:
    """Deterministic masks of one named set: ``MaskGenerator("thick_512", seed=0)(i)``.

    ``__call__(index)`` returns an ``(H, W)`` float32 array in {0, 1} (1 = hole), with
    ``H = W = spec.size``. The same ``(spec, seed, index)`` always gives the same mask.
    """

    def __init__(self, spec_or_name: MaskSetSpec | str, seed: int = 0):
        self.spec = _resolve(spec_or_name)
        self.seed = int(seed)

    def image(self, index: int) -> Image.Image:
        """Mask ``index`` as a Pillow 'L' image, 0 or 255 (what mask files store)."""
        return draw_mask_image(self.spec, self.seed, index)

    def __call__(self, index: int) -> np.ndarray:
        """Mask ``index``: ``(size, size)`` float32 in {0, 1}, 1 = hole."""
        return (np.asarray(self.image(index)) > 0).astype(np.float32)


def generate_mask(kind: str, seed: int, index: int, height: int, width: int) -> np.ndarray:
    """Mask ``index`` of set ``kind`` for an image of ``height x width`` pixels.

    Masks for images that are not the set's size: the spec's pixel parameters (stroke width
    and length, box size and margin) are scaled by ``min(height, width) / spec.size``, so a
    mask covers about the same fraction of any image as it does at the set's own size.
    Returns an ``(height, width)`` float32 array in {0, 1} (1 = hole).
    """
    spec = _resolve(kind)
    spec = spec.scaled(min(height, width) / spec.size)
    img = draw_mask_image(spec, seed, index, height, width)
    return (np.asarray(img) > 0).astype(np.float32)


def hole_fraction(mask: np.ndarray) -> float:
    """Fraction of hole pixels (value > 0.5) of an ``(H, W)`` mask, in [0, 1]."""
    return float(np.count_nonzero(np.asarray(mask) > 0.5)) / max(1, np.asarray(mask).size)


def mask_png(mask: np.ndarray | Image.Image) -> bytes:
    """Encode a mask ((H, W) array in {0, 1}, or an 'L' image) as a single-channel 0/255 PNG.

    Fixed encoder settings: the same mask gives the same bytes with the same Pillow/zlib.
    """
    if not isinstance(mask, Image.Image):
        mask = Image.fromarray(np.where(np.asarray(mask) > 0.5, 255, 0).astype(np.uint8), mode="L")
    buf = io.BytesIO()
    mask.save(buf, format="PNG", compress_level=9, optimize=False)
    return buf.getvalue()


def mask_grid_png(masks: list[np.ndarray], ncols: int = 8, pad: int = 2, tile: int = 256) -> bytes:
    """Render masks (each ``(H, W)``, values in [0, 1], all the same shape) as one PNG grid,
    ``ncols`` wide, holes white on black, tiles separated by ``pad`` grey pixels. Masks
    larger than ``tile`` pixels are subsampled by an integer step to keep the preview small."""
    if not masks:
        raise ValueError("no masks to draw")
    step = -(-max(np.asarray(masks[0]).shape) // tile)
    masks = [np.asarray(m)[::step, ::step] for m in masks]
    h, w = masks[0].shape
    ncols = max(1, min(ncols, len(masks)))
    nrows = -(-len(masks) // ncols)
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad), 128, np.uint8)
    for k, m in enumerate(masks):
        r, c = divmod(k, ncols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y:y + h, x:x + w] = np.clip(np.asarray(m) * 255, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(grid, mode="L").save(buf, format="PNG")
    return buf.getvalue()
