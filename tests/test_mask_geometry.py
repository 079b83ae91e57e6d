"""Masks from boxes, COCO polygons and COCO RLE (lama_core.mask_geometry), checked against
masks computed by hand and RLEs encoded here from the COCO format's definition."""
from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest

from lama_core.mask_geometry import (GEOMETRY_JSON_SCHEMA, GeometryError, GeometryLimits, dilate_mask,
                                     geometry_from_coco, has_shapes, rasterize_geometry)

H, W = 30, 40


def rect(y0: int, y1: int, x0: int, x1: int, height: int = H, width: int = W) -> np.ndarray:
    """Hand-computed mask: rows y0..y1-1, columns x0..x1-1."""
    mask = np.zeros((height, width), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def runs(mask: np.ndarray) -> list[int]:
    """COCO uncompressed RLE counts by definition: run lengths of the column-major
    (Fortran-order) pixel sequence, starting with a run of zeros (possibly empty)."""
    flat = mask.flatten(order="F")
    counts, value, run = [], 0, 0
    for pixel in flat:
        if pixel != value:
            counts.append(run)
            value, run = pixel, 0
        run += 1
    counts.append(run)
    return counts


def compress(counts: list[int]) -> str:
    """COCO's compressed string for ``counts`` (the format as the COCO API documents it:
    counts from the third on as differences to the count two before, each in 5-bit groups
    least significant first, 0x20 = more groups follow, characters offset by 48)."""
    out = []
    for i, count in enumerate(counts):
        value = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            group = value & 0x1F
            value >>= 5
            more = not ((value == 0 and not group & 0x10) or (value == -1 and group & 0x10))
            out.append(chr(48 + (group | (0x20 if more else 0))))
    return "".join(out)


def test_pixel_boxes_cover_x0_to_x1_exclusive_and_union():
    got = rasterize_geometry({"boxes": [[10, 5, 20, 12], [30, 20, 35, 30]]}, H, W)
    assert np.array_equal(got.mask, rect(5, 12, 10, 20) | rect(20, 30, 30, 35))
    assert got.mask.dtype == np.uint8 and not got.clipped and got.shapes == 2


def test_normalized_boxes_scale_by_width_and_height():
    got = rasterize_geometry(json.dumps({"boxes": [[0.25, 0.5, 0.5, 1.0]], "normalized": True}), H, W)
    assert np.array_equal(got.mask, rect(15, 30, 10, 20))


def test_box_partly_outside_is_clipped_and_flagged():
    got = rasterize_geometry({"boxes": [[-5, -3, 8, 4], [35, 25, 60, 90]]}, H, W)
    assert got.clipped
    assert np.array_equal(got.mask, rect(0, 4, 0, 8) | rect(25, 30, 35, 40))


@pytest.mark.parametrize("geometry, problem", [
    ({"boxes": [[10, 10, 20, 20], [50, 40, 60, 45]]}, "box 1 [50, 40, 60, 45] lies outside the 40x30 image"),
    ({"boxes": [[-10, 0, 0, 5]]}, "box 0 [-10, 0, 0, 5] lies outside"),
    ({"boxes": [[20, 10, 10, 20]]}, "box 0 [20, 10, 10, 20] is empty or inverted"),
    ({"boxes": [[5, 5, 5, 9]]}, "is empty or inverted"),
    ({"boxes": [[1, 2, 3]]}, "box 0 must be 4 finite numbers"),
    ({"boxes": [[1, 2, 3, float("nan")]]}, "box 0 must be 4 finite numbers"),
    ({"boxes": [[10.2, 10.2, 10.4, 10.4]]}, "covers no pixel"),
    ({"boxes": [[1, 1, 2, 2]], "normalized": "yes"}, "normalized must be true or false"),
    ({"polygons": [[]]}, "polygon 0 is empty"),
    ({"polygons": [[1, 1, 10, 10]]}, "polygon 0 is empty or malformed: 4 coordinates"),
    ({"polygons": [[1, 1, 10, 10, 5]]}, "polygon 0 is empty or malformed"),
    ({"polygons": [[1, 1, 10, 10, 20, 20]]}, "polygon 0 covers no pixel"),  # collinear: no area
    ({"polygons": [[1, 1, "a", 10, 20, 20]]}, "polygon 0 must be a flat list"),
    ({"rle": {"size": [H, W + 1], "counts": [H * (W + 1)]}}, "rle 0 size is 41x30 (WxH) but the image is 40x30"),
    ({"rle": {"size": [H, W], "counts": [5, 10]}}, "rle 0 is malformed: its runs cover 15 pixels"),
    ({"rle": {"size": [H, W], "counts": [H * W + 5, -5]}}, "negative run length"),
    ({"rle": {"size": [H, W], "counts": "5:QU1~~"}}, "rle 0 is malformed: RLE counts string has a character "
                                                      "outside COCO's alphabet: '~'"),
    ({"rle": {"size": [H, W], "counts": "5:"}}, "rle 0 is malformed: its runs cover 15 pixels"),
    ({"rle": {"size": [H, W], "counts": "5:U"}}, "rle 0 is malformed: RLE counts string ends inside a run"),
    ({"rle": {"counts": [H * W]}}, "rle 0 must be an object with size"),
    ({"rle": [{"size": [H, W], "counts": [H * W]}, {"size": [H, W], "counts": 7}]}, "rle 1 counts must be"),
])
def test_bad_geometry_names_the_shape_and_the_problem(geometry, problem):
    with pytest.raises(GeometryError) as info:
        rasterize_geometry(geometry, H, W)
    assert problem in str(info.value)


def test_not_json_or_not_an_object_is_an_error():
    with pytest.raises(GeometryError, match="not valid JSON"):
        rasterize_geometry(b"{boxes: ", H, W)
    with pytest.raises(GeometryError, match="must be a JSON object"):
        rasterize_geometry("[1, 2]", H, W)


def test_no_shapes_is_an_empty_mask_and_other_keys_are_ignored():
    got = rasterize_geometry({"boxes": [], "caption": "a photo", "url": "http://x"}, H, W)
    assert got.mask.shape == (H, W) and got.mask.sum() == 0 and got.shapes == 0
    assert not has_shapes({"caption": "a photo"}) and has_shapes({"boxes": []})


def test_polygons_rectangle_and_concave_l_shape():
    square = [10, 5, 20, 5, 20, 15, 10, 15]
    # An L: the 10x10 square at (0, 0) minus its top-right 5x5 quarter, drawn clockwise.
    ell = [0, 20, 5, 20, 5, 25, 10, 25, 10, 30, 0, 30]
    got = rasterize_geometry({"polygons": [square, ell]}, H, W)
    expected = rect(5, 15, 10, 20) | rect(20, 30, 0, 5) | rect(25, 30, 5, 10)
    assert np.array_equal(got.mask, expected)


def test_polygon_partly_outside_is_cut_at_the_border():
    got = rasterize_geometry({"polygons": [[-10, -10, 10, -10, 10, 10, -10, 10]]}, H, W)
    assert np.array_equal(got.mask, rect(0, 10, 0, 10))


def hand_mask() -> np.ndarray:
    mask = rect(3, 9, 4, 11) | rect(20, 30, 30, 40)  # touches the last pixel: ends on a run of ones
    mask[15, 0] = 1  # first column: a run in the middle of the column-major sequence
    return mask


def test_uncompressed_rle_counts_decode_to_the_hand_mask():
    mask = hand_mask()
    got = rasterize_geometry({"rle": {"size": [H, W], "counts": runs(mask)}}, H, W)
    assert np.array_equal(got.mask, mask)


def test_compressed_rle_string_decodes_to_the_hand_mask():
    mask = hand_mask()
    from pycocotools import mask as coco_mask  # the string COCO tools write for this mask

    coco_string = coco_mask.encode(np.asfortranarray(mask))["counts"].decode()
    assert compress(runs(mask)) == coco_string  # our reading of the format is COCO's
    got = rasterize_geometry({"rle": [{"size": [H, W], "counts": coco_string}]}, H, W)
    assert np.array_equal(got.mask, mask)


def test_large_counts_with_sign_groups_roundtrip():
    # Run lengths > 2^10 and deltas of both signs exercise multi-group and negative counts.
    height, width = 200, 300
    mask = np.zeros((height, width), np.uint8)
    mask[:, 40:41] = 1
    mask[50:199, 120:260] = 1
    mask[7, 290] = 1
    got = rasterize_geometry({"rle": {"size": [height, width], "counts": compress(runs(mask))}}, height, width)
    assert np.array_equal(got.mask, mask)


def test_all_shape_kinds_union():
    mask = hand_mask()
    got = rasterize_geometry({"boxes": [[0, 0, 2, 2]], "polygons": [[36, 0, 40, 0, 40, 4, 36, 4]],
                              "rle": {"size": [H, W], "counts": runs(mask)}}, H, W)
    assert np.array_equal(got.mask, mask | rect(0, 2, 0, 2) | rect(0, 4, 36, 40))
    assert got.shapes == 3


def test_dilate_grows_a_box_on_every_side_and_stops_at_the_border():
    box = rect(10, 20, 10, 20)
    assert np.array_equal(dilate_mask(box, 3), rect(7, 23, 7, 23))
    assert np.array_equal(dilate_mask(rect(0, 2, 35, 40), 4), rect(0, 6, 31, 40))
    assert np.array_equal(dilate_mask(box, 0), box)
    assert dilate_mask(box, 100).all()


def test_dilate_matches_a_brute_force_square_on_random_masks():
    rng = np.random.default_rng(0)
    for _ in range(50):
        height, width = (int(v) for v in rng.integers(1, 25, 2))
        radius = int(rng.integers(0, 30))
        mask = rng.random((height, width)) < 0.05
        expected = np.zeros((height, width), np.uint8)
        for y, x in zip(*np.nonzero(mask)):
            expected[max(0, y - radius): y + radius + 1, max(0, x - radius): x + radius + 1] = 1
        assert np.array_equal(dilate_mask(mask, radius), expected), (height, width, radius)


def test_json_schema_accepts_the_documented_forms_and_rejects_bad_ones():
    jsonschema.Draft202012Validator.check_schema(GEOMETRY_JSON_SCHEMA)
    validator = jsonschema.Draft202012Validator(GEOMETRY_JSON_SCHEMA)
    good = {"boxes": [[1, 2, 3, 4]], "normalized": False, "polygons": [[0, 0, 5, 0, 5, 5]],
            "rle": [{"size": [H, W], "counts": "PQ5"}, {"size": [H, W], "counts": [H * W]}], "caption": "x"}
    validator.validate(good)
    rasterize_geometry({k: v for k, v in good.items() if k != "rle"}, H, W)
    for bad in ({"boxes": [[1, 2, 3]]}, {"polygons": [[1, 2]]}, {"rle": {"size": [H], "counts": []}},
                {"normalized": 1}, []):
        assert not validator.is_valid(bad), bad


def coco_file() -> dict:
    return {
        "images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "sub/b.png"},
                   {"id": 3, "file_name": "c.jpg"}],
        "categories": [{"id": 1, "name": "face"}, {"id": 2, "name": "person"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 1, "bbox": [10, 5, 8, 6], "score": 0.9},
            {"id": 11, "image_id": 1, "category_id": 1, "bbox": [0, 0, 2, 2], "score": 0.2},
            {"id": 12, "image_id": 2, "category_id": 2, "bbox": [0, 0, 4, 4],
             "segmentation": [[0, 0, 4, 0, 4, 4]]},
            {"id": 13, "image_id": 2, "category_id": 1, "bbox": [1, 1, 2, 2],
             "segmentation": {"size": [H, W], "counts": [H * W]}},
        ],
    }


def test_coco_file_to_geometry_per_image():
    faces = geometry_from_coco(coco_file(), categories=["face"], min_score=0.5)
    # bbox [x, y, w, h] -> [x0, y0, x1, y1]; image 3 has no detection: an empty hole.
    assert faces == {"a.jpg": {"boxes": [[10, 5, 18, 11]]}, "sub/b.png": {"boxes": [],
                     "rle": [{"size": [H, W], "counts": [H * W]}]}, "c.jpg": {"boxes": []}}
    boxes = geometry_from_coco(coco_file(), shapes="bbox")
    assert boxes["sub/b.png"] == {"boxes": [[0, 0, 4, 4], [1, 1, 3, 3]]}
    assert geometry_from_coco(coco_file(), categories=["2"])["sub/b.png"] == {"boxes": [],
                                                                             "polygons": [[0, 0, 4, 0, 4, 4]]}
    assert np.array_equal(rasterize_geometry(faces["a.jpg"], H, W).mask, rect(5, 11, 10, 18))
    with pytest.raises(GeometryError, match=r"categories \['cat'\] are not in the file"):
        geometry_from_coco(coco_file(), categories=["cat"])
    bad = coco_file()
    bad["annotations"].append({"id": 14, "image_id": 9, "bbox": [0, 0, 1, 1]})
    with pytest.raises(GeometryError, match=r"annotation 4 \(id 14\) refers to no image"):
        geometry_from_coco(bad)


# ----------------------------------------------------------------------------- hostile geometry

def test_polygon_far_outside_is_clipped_before_pycocotools_and_drawn_as_its_part_inside():
    # The triangle (0, 0), (X, 0), (X, X) covers the pixels on and above the diagonal for any
    # X past the image; at X = 1e12 pycocotools alone would walk a 5e12-pixel outline.
    near = rasterize_geometry({"polygons": [[0, 0, 1e3, 0, 1e3, 1e3]]}, H, W)
    far = rasterize_geometry({"polygons": [[0, 0, 1e12, 0, 1e12, 1e12]]}, H, W)
    assert far.clipped and near.clipped
    assert np.array_equal(far.mask, near.mask) and far.mask.sum() > H * W // 3
    inside = rasterize_geometry({"polygons": [[2, 2, 10, 2, 10, 8]]}, H, W)
    assert not inside.clipped
    with pytest.raises(GeometryError, match="polygon 0 lies outside the 40x30 image"):
        rasterize_geometry({"polygons": [[1e12, 1e12, 2e12, 1e12, 2e12, 2e12]]}, H, W)
    with pytest.raises(GeometryError, match=r"polygon 0 has a coordinate beyond \+-1e\+15"):
        rasterize_geometry({"polygons": [[0, 0, 1e300, 0, 1e300, 1e300]]}, H, W)


def test_concave_polygon_reaching_far_out_keeps_its_notch():
    # A U whose arms reach 1e9 pixels down: inside the image, the notch between the arms
    # stays unfilled after clipping.
    u = [0, 0, 40, 0, 40, 1e9, 30, 1e9, 30, 10, 10, 10, 10, 1e9, 0, 1e9]
    got = rasterize_geometry({"polygons": [u]}, H, W)
    expected = rect(0, 10, 0, 40) | rect(0, 30, 0, 10) | rect(0, 30, 30, 40)
    assert np.array_equal(got.mask, expected)


@pytest.mark.parametrize("text, problem", [
    ("x" * 2000, "geometry JSON is 2000 bytes, over the limit of 1000"),
    ('{"boxes": ' + "[" * 40 + "]" * 40 + "}", "nested 41 levels deep, over the limit of 32"),
    ('{"caption": "' + "[" * 200 + '", "boxes": [[0, 0, 2, 2]]}', None),  # brackets in a string do not nest
    (json.dumps({"boxes": [[0, 0, 2, 2]] * 11}), "geometry holds 11 shapes, over the limit of 10"),
    (json.dumps({"polygons": [[0, 0, 5, 0, 5, 5] * 4]}), "polygons have 12 points in all, over the limit of 10"),
    (json.dumps({"polygons": [[0, 0, 39, 0, 0, 29, 39, 29] * 2]}), "over the limit of 200"),
    (json.dumps({"rle": {"size": [H, W], "counts": [1] * 21}}), "21 run lengths, over the limit of 20"),
    (json.dumps({"rle": {"size": [H, W], "counts": "1" * 21}}), "more than 20 run lengths"),
])
def test_limits_are_checked_before_the_work(text, problem):
    limits = GeometryLimits(json_bytes=1000, shapes=10, polygon_points=10, outline=200, rle_counts=20)
    if problem is None:
        assert rasterize_geometry(text, H, W, limits).mask.sum() == 4
        return
    with pytest.raises(GeometryError) as info:
        rasterize_geometry(text, H, W, limits)
    assert problem in str(info.value)


def test_megabyte_rle_strings_fail_in_linear_time():
    # One endless count (every character says "more follows"): big-integer arithmetic made
    # this quadratic; now it stops at the 14th character.
    with pytest.raises(GeometryError, match="run length longer than 13 characters"):
        rasterize_geometry({"rle": {"size": [H, W], "counts": "o" * 2**20}}, H, W)
    # A million 1-pixel runs on a 40x30 image: more counts than pixels, refused at 1201.
    with pytest.raises(GeometryError, match="more than 1201 run lengths"):
        rasterize_geometry({"rle": {"size": [H, W], "counts": "1" * 2**20}}, H, W)
    with pytest.raises(GeometryError, match="not valid JSON"):
        rasterize_geometry("[" * 10_000 + "]" * 10_000, H, W, GeometryLimits(depth=100_000))
