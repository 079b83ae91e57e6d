"""Hole masks from geometry: boxes, COCO polygons and COCO run-length encodings.

Detectors emit boxes, segmenters polygons or COCO RLE (SA-1B ships its masks as RLE);
this module turns one record's geometry into the uint8 ``H x W`` hole mask in {0, 1}
(1 = hole) that the ``Inpainter`` takes, so nobody has to render mask PNGs first.

A record's geometry is a JSON object (``GEOMETRY_JSON_SCHEMA``); every key is optional
and the hole is the union of all shapes. Other keys are ignored, so geometry can sit in
the same JSON as other metadata (e.g. the ``url``/``caption`` that img2dataset writes)::

    {"boxes": [[x0, y0, x1, y1], ...],   # pixels: x0 <= x < x1, y0 <= y < y1
     "normalized": false,                # true: box coordinates are fractions of width/height
     "polygons": [[x1, y1, x2, y2, x3, y3, ...], ...],   # COCO ``segmentation`` polygon lists
     "rle": {"size": [H, W], "counts": "compressed string" or [n0, n1, ...]}}  # or a list of them

Everything is rasterised by ``pycocotools`` (the COCO API's own C code), so a mask is
pixel for pixel what COCO tools compute: a box is COCO's ``bbox`` ``[x0, y0, x1 - x0,
y1 - y0]`` and integer corners cover exactly the pixels above. RLE counts are checked
before pycocotools sees them, because its decoder writes ``sum(counts)`` bytes into an
``H x W`` buffer without a bounds check.

Problems raise ``GeometryError`` with the shape's index and what is wrong: a box that is
empty, inverted or wholly outside the image, a polygon with fewer than 3 points or no
area, malformed RLE counts, an RLE ``size`` other than the image's. A box or polygon
partly outside the image is clipped to it and reported (``GeometryMask.clipped``).

Geometry comes from untrusted files, so its size is bounded before any work
(``GeometryLimits``: JSON text size, nesting depth, number of shapes, polygon points and
outline length, RLE counts), RLE strings decode in linear time, and polygons are clipped
to the image before pycocotools sees them: its rasteriser walks every edge at 5x
resolution in 32-bit integers, so one vertex at 1e12 would mean an allocation of
terabytes (or an integer overflow in C).
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

#: JSON Schema (draft 2020-12) of one record's geometry; see the module docstring.
GEOMETRY_JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "lama-at-scale mask geometry",
    "description": "Holes of one image as boxes, COCO polygons and COCO RLE; the hole is their union. "
                   "Other keys are allowed and ignored.",
    "type": "object",
    "properties": {
        "boxes": {
            "description": "[x0, y0, x1, y1] per box, x0 <= x < x1 and y0 <= y < y1; pixels, or fractions of "
                           "width/height when normalized is true",
            "type": "array",
            "items": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4},
        },
        "normalized": {"description": "box coordinates are fractions of the image's width and height",
                       "type": "boolean", "default": False},
        "polygons": {
            "description": "COCO segmentation polygons: flat [x1, y1, x2, y2, ...] lists, pixels, >= 3 points",
            "type": "array",
            "items": {"type": "array", "items": {"type": "number"}, "minItems": 6},
        },
        "rle": {
            "description": "COCO run-length encoding(s), column-major, first run = background",
            "oneOf": [{"$ref": "#/$defs/rle"}, {"type": "array", "items": {"$ref": "#/$defs/rle"}}],
        },
    },
    "$defs": {
        "rle": {
            "type": "object",
            "required": ["size", "counts"],
            "properties": {
                "size": {"description": "[height, width] of the image", "type": "array",
                         "items": {"type": "integer", "minimum": 1}, "minItems": 2, "maxItems": 2},
                "counts": {"oneOf": [{"description": "COCO compressed string", "type": "string"},
                                     {"description": "uncompressed run lengths", "type": "array",
                                      "items": {"type": "integer", "minimum": 0}}]},
            },
        },
    },
}

#: Keys of the geometry object that describe shapes (a JSON without them holds no geometry).
SHAPE_KEYS = ("boxes", "polygons", "rle")


class GeometryError(ValueError):
    """The geometry of a record cannot be rasterised; the message says which shape and why."""


@dataclass(frozen=True)
class GeometryLimits:
    """Bounds on one record's geometry, checked before the work they bound.

    ``json_bytes``: JSON text size (16 MiB holds the uncompressed RLE of a complex mask of
    a 50 MP photo several times over). ``depth``: nesting of arrays/objects in that text
    (the schema needs 4; metadata beside it gets room). ``shapes``: boxes + polygons +
    RLEs. ``polygon_points``: vertices over all polygons. ``outline``: total outline length
    of the clipped polygons in pixels, what pycocotools' rasteriser allocates for (about
    120 bytes per pixel of outline: 4 M pixels stay under 500 MB). ``rle_counts``: run
    lengths per RLE (besides at most ``H * W + 1``). ``coordinate``: largest absolute
    polygon coordinate (a real image is far smaller; beyond it clipping loses precision)."""

    json_bytes: int = 16 * 2**20
    depth: int = 32
    shapes: int = 10_000
    polygon_points: int = 1_000_000
    outline: int = 4_000_000
    rle_counts: int = 4_000_000
    coordinate: float = 1e15


#: The limits every job decodes geometry with.
LIMITS = GeometryLimits()

# A COCO count fits in 13 groups of 5 bits (65 bits); more is a hostile or corrupt string
# (an unbounded count would make decoding quadratic in big-integer arithmetic).
_MAX_COUNT_GROUPS = 13
# JSON strings (with escapes), removed before counting brackets for the depth check.
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


@dataclass
class GeometryMask:
    """``mask``: uint8 ``H x W`` in {0, 1} (1 = hole). ``clipped``: some box or polygon
    reached past the image and was cut to it. ``shapes``: how many boxes, polygons and RLEs were drawn."""

    mask: np.ndarray
    clipped: bool
    shapes: int


def _json_depth(text: bytes) -> int:
    """Deepest nesting of arrays/objects in JSON ``text`` (brackets inside strings do not
    count), in linear time and without parsing."""
    bare = np.frombuffer(_JSON_STRING.sub(b'""', text), np.uint8)
    step = np.isin(bare, (ord("["), ord("{"))).astype(np.int32) - np.isin(bare, (ord("]"), ord("}")))
    return int(np.cumsum(step).max(initial=0))


def parse_geometry(data: str | bytes | dict, limits: GeometryLimits = LIMITS) -> dict[str, Any]:
    """JSON text/bytes or an already-parsed dict -> the geometry dict. Raises
    ``GeometryError`` when it is not JSON, not an object, or over ``limits.json_bytes`` /
    ``limits.depth`` (checked before parsing)."""
    if isinstance(data, dict):
        return data
    text = data.encode("utf-8", errors="surrogatepass") if isinstance(data, str) else bytes(data)
    if len(text) > limits.json_bytes:
        raise GeometryError(f"geometry JSON is {len(text)} bytes, over the limit of {limits.json_bytes}")
    depth = _json_depth(text)
    if depth > limits.depth:
        raise GeometryError(f"geometry JSON is nested {depth} levels deep, over the limit of {limits.depth}")
    try:
        obj = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise GeometryError(f"geometry is not valid JSON: {str(exc)[:200]}") from exc
    if not isinstance(obj, dict):
        raise GeometryError(f"geometry must be a JSON object, got {type(obj).__name__}")
    return obj


def has_shapes(geometry: dict[str, Any]) -> bool:
    """Whether ``geometry`` has any of the shape keys (``boxes``, ``polygons``, ``rle``)."""
    return any(geometry.get(k) is not None for k in SHAPE_KEYS)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _box_bboxes(boxes: Any, normalized: bool, height: int, width: int) -> tuple[np.ndarray, bool]:
    """Checked, clipped COCO bboxes ``N x 4`` (x, y, w, h; float64 pixels) and whether any was clipped."""
    if not isinstance(boxes, list):
        raise GeometryError(f"boxes must be a list of [x0, y0, x1, y1], got {type(boxes).__name__}")
    out, clipped = [], False
    for i, box in enumerate(boxes):
        if not isinstance(box, (list, tuple)) or len(box) != 4 or not all(_number(v) for v in box):
            raise GeometryError(f"box {i} must be 4 finite numbers [x0, y0, x1, y1], got {box!r}")
        x0, y0, x1, y1 = (float(v) for v in box)
        if normalized:
            x0, x1, y0, y1 = x0 * width, x1 * width, y0 * height, y1 * height
        if x1 <= x0 or y1 <= y0:
            raise GeometryError(f"box {i} {list(box)} is empty or inverted (needs x0 < x1 and y0 < y1)")
        cx0, cy0, cx1, cy1 = max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height))
        if cx1 <= cx0 or cy1 <= cy0:
            raise GeometryError(f"box {i} {list(box)} lies outside the {width}x{height} image")
        clipped |= (cx0, cy0, cx1, cy1) != (x0, y0, x1, y1)
        out.append((cx0, cy0, cx1 - cx0, cy1 - cy0))
    return np.array(out, np.float64).reshape(-1, 4), clipped


def _polygons(polygons: Any, limits: GeometryLimits) -> list[np.ndarray]:
    """Checked polygons as float64 ``N x 2`` vertex arrays (x, y)."""
    if not isinstance(polygons, list):
        raise GeometryError(f"polygons must be a list of [x1, y1, x2, y2, ...] lists, got {type(polygons).__name__}")
    points = sum(len(poly) // 2 for poly in polygons if isinstance(poly, list))
    if points > limits.polygon_points:
        raise GeometryError(f"polygons have {points} points in all, over the limit of {limits.polygon_points}")
    out = []
    for i, poly in enumerate(polygons):
        if not isinstance(poly, list) or not all(_number(v) for v in poly):
            raise GeometryError(f"polygon {i} must be a flat list of finite numbers [x1, y1, x2, y2, ...]")
        if len(poly) < 6 or len(poly) % 2:
            raise GeometryError(f"polygon {i} is empty or malformed: {len(poly)} coordinates (needs an even "
                                "number, at least 3 points)")
        vertices = np.array(poly, np.float64).reshape(-1, 2)
        if np.abs(vertices).max() > limits.coordinate:
            raise GeometryError(f"polygon {i} has a coordinate beyond +-{limits.coordinate:g} pixels")
        out.append(vertices)
    return out


def _clip_half_plane(vertices: np.ndarray, axis: int, bound: float, keep_below: bool) -> np.ndarray:
    """One Sutherland-Hodgman step, vectorised: the part of the closed polygon ``vertices``
    (float64 ``N x 2``) where coordinate ``axis`` is <= ``bound`` (``keep_below``) or >= it.
    Returns ``M x 2`` (M = 0 when nothing is left)."""
    if not len(vertices):
        return vertices
    prev = np.roll(vertices, 1, axis=0)
    inside = vertices[:, axis] <= bound if keep_below else vertices[:, axis] >= bound
    prev_inside = np.roll(inside, 1)
    crossing = inside != prev_inside
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (bound - prev[:, axis]) / (vertices[:, axis] - prev[:, axis])
    cut = prev + np.where(crossing, t, 0.0)[:, None] * (vertices - prev)
    cut[:, axis] = bound
    # Per edge prev -> cur: the crossing point (if it crosses), then cur (if inside).
    both = np.stack([cut, vertices], axis=1).reshape(-1, 2)
    keep = np.stack([crossing, inside], axis=1).reshape(-1)
    return both[keep]


def _clip_polygon(vertices: np.ndarray, height: int, width: int) -> np.ndarray:
    """``vertices`` (float64 ``N x 2``) clipped to the image grown by its own size on every
    side (``-width <= x <= 2 * width``, likewise y): no coordinate is left that
    pycocotools' 32-bit, 5x-upsampled rasteriser cannot take, and the cut runs far from the
    image, so only the rounding of an edge that was cut can move by a pixel in it."""
    for axis, size in ((0, float(width)), (1, float(height))):
        vertices = _clip_half_plane(vertices, axis, -size, keep_below=False)
        vertices = _clip_half_plane(vertices, axis, 2 * size, keep_below=True)
    return vertices


def _beyond(vertices: np.ndarray, height: int, width: int, margin: float) -> bool:
    """Whether a vertex lies more than ``margin`` times the image's size past its border."""
    x, y = vertices[:, 0], vertices[:, 1]
    return bool((x < -margin * width).any() or (x > (1 + margin) * width).any()
                or (y < -margin * height).any() or (y > (1 + margin) * height).any())


def _outline(vertices: np.ndarray) -> float:
    """Outline length of a closed polygon as pycocotools walks it: sum over edges of
    ``max(|dx|, |dy|)`` in pixels."""
    step = np.abs(np.roll(vertices, -1, axis=0) - vertices)
    return float(step.max(axis=1).sum()) if len(vertices) else 0.0


def _string_counts(text: str, max_counts: int) -> list[int]:
    """Run lengths of a COCO compressed RLE string (the COCO API's ``rleFrString`` format:
    each count in 5-bit groups, least significant first, as characters ``48 + group``
    with bit 0x20 meaning "more groups follow" and bit 0x10 of the last group the sign;
    from the third count on, each is stored as the difference to the count two before).
    Linear in ``len(text)``. Raises ``GeometryError`` on characters outside that alphabet,
    a truncated count, a count longer than 13 characters, or more than ``max_counts`` counts."""
    counts: list[int] = []
    pos = 0
    while pos < len(text):
        if len(counts) >= max_counts:
            raise GeometryError(f"RLE counts string holds more than {max_counts} run lengths")
        value, shift, more = 0, 0, True
        while more:
            if pos >= len(text):
                raise GeometryError("RLE counts string ends inside a run length")
            if shift >= 5 * _MAX_COUNT_GROUPS:
                raise GeometryError(f"RLE counts string has a run length longer than {_MAX_COUNT_GROUPS} characters")
            group = ord(text[pos]) - 48
            if not 0 <= group < 64:
                raise GeometryError(f"RLE counts string has a character outside COCO's alphabet: {text[pos]!r}")
            value |= (group & 0x1F) << shift
            more = bool(group & 0x20)
            pos += 1
            shift += 5
            if not more and group & 0x10:
                value |= -1 << shift
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def _rle_objects(rle: Any, height: int, width: int, limits: GeometryLimits) -> list[dict[str, Any]]:
    """Checked RLEs as uncompressed ``{"size", "counts": [int]}`` dicts for pycocotools."""
    items = rle if isinstance(rle, list) else [rle]
    max_counts = min(limits.rle_counts, height * width + 1)
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "size" not in item or "counts" not in item:
            raise GeometryError(f"rle {i} must be an object with size [height, width] and counts")
        size = item["size"]
        if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
            raise GeometryError(f"rle {i} size must be [height, width] positive integers, got {size!r}")
        if tuple(size) != (height, width):
            raise GeometryError(f"rle {i} size is {size[1]}x{size[0]} (WxH) but the image is {width}x{height}")
        counts = item["counts"]
        if isinstance(counts, bytes):
            counts = counts.decode("ascii", errors="replace")
        if isinstance(counts, str):
            try:
                counts = _string_counts(counts, max_counts)
            except GeometryError as exc:
                raise GeometryError(f"rle {i} is malformed: {exc}") from None
        elif not (isinstance(counts, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in counts)):
            raise GeometryError(f"rle {i} counts must be a COCO string or a list of integers")
        elif len(counts) > max_counts:
            raise GeometryError(f"rle {i} is malformed: {len(counts)} run lengths, over the limit of {max_counts}")
        if any(v < 0 for v in counts):
            raise GeometryError(f"rle {i} is malformed: negative run length")
        if sum(counts) != height * width:
            raise GeometryError(f"rle {i} is malformed: its runs cover {sum(counts)} pixels, the {width}x{height} "
                                f"image has {height * width}")
        out.append({"size": [height, width], "counts": counts})
    return out


def _shape_count(geometry: dict[str, Any]) -> int:
    count = 0
    for key in SHAPE_KEYS:
        value = geometry.get(key)
        count += len(value) if isinstance(value, list) else value is not None
    return count


def rasterize_geometry(geometry: str | bytes | dict, height: int, width: int,
                       limits: GeometryLimits = LIMITS) -> GeometryMask:
    """One record's geometry (JSON or dict, ``GEOMETRY_JSON_SCHEMA``) -> its hole mask on an
    ``height x width`` image: uint8 ``H x W`` in {0, 1}, the union of every shape, as
    pycocotools rasterises it. Geometry with no shapes (``{"boxes": []}``: nothing was
    detected) gives an all-zero mask. ``limits`` bound the work before it is done. Raises
    ``GeometryError`` (see the module docstring)."""
    from pycocotools import mask as coco_mask  # the COCO API's C rasteriser and RLE codec

    geometry = parse_geometry(geometry, limits)
    normalized = geometry.get("normalized", False)
    if not isinstance(normalized, bool):
        raise GeometryError(f"normalized must be true or false, got {normalized!r}")
    shapes = _shape_count(geometry)
    if shapes > limits.shapes:
        raise GeometryError(f"geometry holds {shapes} shapes, over the limit of {limits.shapes}")
    rles: list[Any] = []
    named: list[str] = []  # which shape each RLE came from, for "covers no pixel" errors
    clipped = False
    if geometry.get("boxes") is not None:
        bboxes, clipped = _box_bboxes(geometry["boxes"], normalized, height, width)
        if len(bboxes):
            rles += coco_mask.frPyObjects(bboxes, height, width)
            named += [f"box {i} {geometry['boxes'][i]}" for i in range(len(bboxes))]
    if geometry.get("polygons") is not None:
        polygons, outline = [], 0.0
        for i, vertices in enumerate(_polygons(geometry["polygons"], limits)):
            clipped |= _beyond(vertices, height, width, 0.0)
            if _beyond(vertices, height, width, 1.0):  # a polygon near the image is drawn as given
                vertices = _clip_polygon(vertices, height, width)
            if len(vertices) < 3:
                raise GeometryError(f"polygon {i} lies outside the {width}x{height} image")
            outline += _outline(vertices)
            polygons.append(vertices.ravel().tolist())
        if outline > limits.outline:
            raise GeometryError(f"polygons have an outline of {outline:.0f} pixels inside the image, over the limit "
                                f"of {limits.outline}")
        if polygons:
            rles += coco_mask.frPyObjects(polygons, height, width)
            named += [f"polygon {i}" for i in range(len(polygons))]
    if geometry.get("rle") is not None:
        for i, obj in enumerate(_rle_objects(geometry["rle"], height, width, limits)):
            rles.append(coco_mask.frPyObjects(obj, height, width))
            named.append(f"rle {i}")
    if not rles:
        return GeometryMask(np.zeros((height, width), np.uint8), clipped, 0)
    for name, area in zip(named, coco_mask.area(rles)):
        # A hole of nothing would silently leave the object in place (a face not blurred).
        if area == 0 and not name.startswith("rle"):
            raise GeometryError(f"{name} covers no pixel of the {width}x{height} image (empty shape)")
    mask = coco_mask.decode(coco_mask.merge(rles, intersect=False))
    return GeometryMask(np.ascontiguousarray(mask, dtype=np.uint8), clipped, len(rles))


def dilate_mask(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Grow the holes of a uint8/bool ``H x W`` mask by ``pixels`` in every direction (a
    ``2 * pixels + 1`` square: a box grows by ``pixels`` on each side), clipped at the
    image border. Returns uint8 ``H x W`` in {0, 1}; ``pixels=0`` returns a copy.

    Detector boxes and segmenter masks hug the object; growing them removes the halo
    of object colour that the model would otherwise continue into the hole."""
    if pixels < 0:
        raise ValueError(f"pixels must be >= 0, got {pixels}")
    out = np.asarray(mask).astype(bool)
    for axis in (0, 1):
        out = _max_window(out, pixels, axis)
    return out.astype(np.uint8)


def _max_window(mask: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """Max over ``[i - radius, i + radius]`` along ``axis`` in O(log radius) passes:
    doubling windows, then one pass for the remainder."""
    if radius == 0:
        return mask.copy()
    length = mask.shape[axis]
    # Forward window [i, i + 2r] built by doubling, then shifted back by r.
    window, out = 1, mask.copy()
    target = 2 * radius + 1
    while window < target:
        step = min(window, target - window)
        shifted = np.zeros_like(out)
        if step < length:
            src = [slice(None)] * 2
            dst = [slice(None)] * 2
            src[axis], dst[axis] = slice(step, None), slice(None, length - step)
            shifted[tuple(dst)] = out[tuple(src)]
        out |= shifted
        window += step
    # out[i] = any(mask[i .. i + 2r]); the centred window is out[i - r].
    centred = np.zeros_like(out)
    src = [slice(None)] * 2
    dst = [slice(None)] * 2
    if radius < length:
        src[axis], dst[axis] = slice(None, length - radius), slice(radius, None)
        centred[tuple(dst)] = out[tuple(src)]
    # Near the start the window [i - r, i + r] is cut by the border: cover it from out[0].
    head = [slice(None)] * 2
    head[axis] = slice(0, min(radius, length))
    # any(mask[0 .. i + r]) for i < r is a running OR over the first 2r pixels only.
    first = [slice(None)] * 2
    first[axis] = slice(0, min(2 * radius, length))
    prefix = np.logical_or.accumulate(mask[tuple(first)], axis=axis)
    idx = np.minimum(np.arange(min(radius, length)) + radius, prefix.shape[axis] - 1)
    centred[tuple(head)] = np.take(prefix, idx, axis=axis)
    return centred


def geometry_from_coco(coco: dict[str, Any], categories: list[str] | None = None, min_score: float = 0.0,
                       shapes: str = "auto") -> dict[str, dict[str, Any]]:
    """A COCO-style annotation or detection file (``images`` with ``id`` and ``file_name``;
    ``annotations`` with ``image_id``, ``bbox`` ``[x, y, w, h]``, optional ``segmentation``,
    ``category_id``, ``score``; ``categories`` with ``id`` and ``name``) -> the geometry of
    every image, by ``file_name``: ``{"boxes": [[x0, y0, x1, y1], ...], "polygons": [...],
    "rle": [...]}``. Images without (kept) annotations get ``{"boxes": []}`` (nothing to
    inpaint), so each image of the file still yields one record.

    ``categories``: names (or ids as strings) to keep; empty/None keeps all. Annotations with
    a ``score`` below ``min_score`` are dropped. ``shapes``: ``bbox`` (boxes only),
    ``segmentation`` (polygons/RLE only; annotations without one are skipped) or ``auto``
    (the segmentation when present, else the box). Raises ``GeometryError`` naming the
    annotation for unknown image ids, categories or malformed entries."""
    if shapes not in ("auto", "bbox", "segmentation"):
        raise GeometryError(f"shapes must be auto, bbox or segmentation, got {shapes!r}")
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list):
        raise GeometryError("a COCO file must be an object with an 'images' list (and 'annotations')")
    names = {c.get("id"): str(c.get("name")) for c in coco.get("categories", []) if isinstance(c, dict)}
    wanted = set(categories or [])
    unknown = wanted - set(names.values()) - {str(i) for i in names}
    if unknown:
        raise GeometryError(f"categories {sorted(unknown)} are not in the file (it has {sorted(names.values())})")
    by_id: dict[Any, dict[str, Any]] = {}
    out: dict[str, dict[str, Any]] = {}
    for image in coco["images"]:
        if not isinstance(image, dict) or "id" not in image or "file_name" not in image:
            raise GeometryError(f"COCO image entry without id and file_name: {image!r}")
        if image["file_name"] in out:
            raise GeometryError(f"COCO file lists {image['file_name']!r} twice")
        by_id[image["id"]] = out[image["file_name"]] = {"boxes": []}
    for n, ann in enumerate(coco.get("annotations", [])):
        label = f"annotation {n} (id {ann.get('id')!r})" if isinstance(ann, dict) else f"annotation {n}"
        if not isinstance(ann, dict) or ann.get("image_id") not in by_id:
            raise GeometryError(f"{label} refers to no image of the file")
        category = ann.get("category_id")
        if wanted and names.get(category) not in wanted and str(category) not in wanted:
            continue
        if ann.get("score", 1.0) < min_score:
            continue
        geometry = by_id[ann["image_id"]]
        segmentation = ann.get("segmentation")
        if shapes != "bbox" and segmentation:
            if isinstance(segmentation, dict):  # RLE (COCO's iscrowd annotations, SA-1B)
                geometry.setdefault("rle", []).append(segmentation)
            elif isinstance(segmentation, list):
                geometry.setdefault("polygons", []).extend(segmentation)
            else:
                raise GeometryError(f"{label} has a segmentation that is neither polygons nor RLE")
        elif shapes != "segmentation":
            bbox = ann.get("bbox")
            if not (isinstance(bbox, list) and len(bbox) == 4 and all(_number(v) for v in bbox)):
                raise GeometryError(f"{label} has no bbox [x, y, width, height]: {bbox!r}")
            x, y, w, h = bbox
            geometry["boxes"].append([x, y, x + w, y + h])
    return out
