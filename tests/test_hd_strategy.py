"""Hole windows on large images (``hd_strategy``), strip-wise resizing, and tiny images."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from lama_core import Inpainter, WindowOptions, build_generator, resample
from lama_core.hd_strategy import Window, bucket_side, own_holes, plan_windows
from lama_core.image_arrays import binarize_mask, mask_to_float
from lama_core.inpainter import mask_to_hole
from lama_core.resample import area_downscale, bicubic_strips


@pytest.fixture(scope="module")
def generator():
    torch.manual_seed(0)
    return build_generator("small")


# Small images and margins keep these tests fast; the defaults are tested on plans alone.
SMALL = WindowOptions(trigger=256, margin=1.0, min_margin=32)


@pytest.fixture(scope="module")
def windowed(generator):
    return Inpainter(generator, batch_size=4, window_options=SMALL)


@pytest.fixture(scope="module")
def full(generator):
    return Inpainter(generator, batch_size=4, hd_strategy="full")


def photo_like(seed: int, h: int, w: int) -> np.ndarray:
    """Smooth random colour field plus noise: uint8 ``h x w x 3``."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.random((1, 3, h // 32 + 2, w // 32 + 2), dtype=np.float32))
    smooth = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()
    return np.clip(smooth * 230 + rng.integers(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)


def box_mask(h: int, w: int, *boxes: tuple[int, int, int, int]) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    for top, left, bottom, right in boxes:
        mask[top:bottom, left:right] = 255
    return mask


def stroke_mask(h: int, w: int, *strokes: list[tuple[float, float]], width: int = 45) -> np.ndarray:
    """uint8 ``h x w`` 0/255: brush strokes (polylines through the given (x, y) points)."""
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    for points in strokes:
        draw.line(points, fill=255, width=width, joint="curve")
    return np.asarray(canvas).copy()


def owners(plan, hole: np.ndarray) -> np.ndarray:
    """int ``H x W``: how many windows of ``plan`` paste each pixel."""
    count = np.zeros(hole.shape, int)
    for window in plan.windows:
        count[window.top:window.bottom, window.left:window.right] += own_holes(plan, window, hole)
    return count


def check_windows_match_crops(result, image, mask, plan, full):
    """Each window's own hole pixels = the full-frame inpainting of the window's crop (whose
    mask holds every hole in it); every known pixel = the input's."""
    hole = mask > 127
    assert np.array_equal(result.image[~hole], image[~hole])
    pasted = np.zeros(hole.shape, bool)
    for window in plan.windows:
        rows, cols = slice(window.top, window.bottom), slice(window.left, window.right)
        expected = full([image[rows, cols]], [mask[rows, cols]])[0]
        own = own_holes(plan, window, hole)
        diff = np.abs(result.image[rows, cols][own].astype(int) - expected[own].astype(int))
        assert diff.max(initial=0) <= 1
        assert not (pasted[rows, cols] & own).any(), "a hole pixel pasted by two windows"
        pasted[rows, cols] |= own
    assert np.array_equal(pasted, hole), "every hole pixel pasted exactly once"


def test_small_holes_get_native_windows_and_known_pixels_stay_exact(generator, full):
    image = photo_like(0, 1000, 1200)  # default options: above the 800 px trigger
    mask = box_mask(1000, 1200, (100, 100, 150, 180), (700, 900, 760, 1000))
    result = Inpainter(generator).inpaint([image], [mask])[0]
    plan = plan_windows(mask > 127, "windows")
    assert (result.strategy, result.windows, result.resized) == ("windows", 2, False)
    assert all(w.height * w.width < 400 * 400 for w in plan.windows)
    assert not np.array_equal(result.image[mask > 0], image[mask > 0])
    check_windows_match_crops(result, image, mask, plan, full)


def test_window_covering_the_whole_image_equals_full_frame(generator, full):
    image = photo_like(1, 300, 340)
    mask = box_mask(300, 340, (140, 150, 170, 200))
    whole = Inpainter(generator, window_options=WindowOptions(trigger=256, min_margin=400, full_fraction=1.0))
    plan = plan_windows(mask > 127, "windows", whole.window_options)
    assert plan.strategy == "windows" and plan.windows == (Window(0, 0, 300, 340),)
    result = whole.inpaint([image], [mask])[0]
    assert result.strategy == "windows" and result.windows == 1
    assert np.array_equal(result.image, full([image], [mask])[0])


def test_holes_touching_borders_and_corners(windowed, full):
    h, w = 450, 560
    image = photo_like(2, h, w)
    mask = box_mask(h, w, (0, 0, 20, 30), (430, 530, 450, 560), (200, 0, 235, 15), (0, 250, 12, 280))
    result = windowed.inpaint([image], [mask])[0]
    plan = plan_windows(mask > 127, "windows", windowed.window_options)
    assert result.strategy == "windows" and result.windows == len(plan.windows) >= 3
    for window in plan.windows:
        assert 0 <= window.top < window.bottom <= h and 0 <= window.left < window.right <= w
    check_windows_match_crops(result, image, mask, plan, full)


def test_overlapping_windows_paste_only_their_own_holes(generator, full):
    # Two holes diagonal to each other: their windows overlap, but one window around both
    # would be larger than the two together, so they stay apart and each pastes its own.
    h, w = 400, 400
    options = WindowOptions(trigger=256, margin=0.5, min_margin=48, full_fraction=1.0)
    mask = box_mask(h, w, (120, 120, 140, 140), (190, 190, 210, 210))
    plan = plan_windows(mask > 127, "windows", options)
    assert len(plan.windows) == 2 and all(win.labels is not None for win in plan.windows)
    a, b = plan.windows
    assert a.top < b.bottom and b.top < a.bottom and a.left < b.right and b.left < a.right  # they overlap
    image = photo_like(3, h, w)
    inpainter = Inpainter(generator, window_options=options)
    result = inpainter.inpaint([image], [mask])[0]
    assert result.windows == 2
    check_windows_match_crops(result, image, mask, plan, full)


def test_nearby_holes_merge_into_one_window():
    mask = box_mask(1000, 1200, (400, 400, 440, 440), (400, 460, 440, 500), (445, 400, 470, 500))
    plan = plan_windows(mask > 127, "windows", WindowOptions())
    assert plan.strategy == "windows" and len(plan.windows) == 1 and plan.windows[0].labels is None


def test_large_holes_and_small_images_fall_back_to_full_frame():
    big_hole = box_mask(1000, 1200, (100, 100, 900, 1100))
    assert plan_windows(big_hole > 127, "windows").strategy == "full"
    small = box_mask(800, 600, (10, 10, 20, 20))  # longer side not above the 800 px trigger
    assert plan_windows(small > 127, "windows").windows == (Window(0, 0, 800, 600),)
    assert plan_windows(np.zeros((1000, 1200), bool), "windows").windows == ()
    # The strategy's name is checked once, where it enters the library: the Inpainter.
    with pytest.raises(ValueError, match="hd_strategy must be windows or full, got 'tiles'"):
        Inpainter(build_generator("small"), hd_strategy="tiles")


def test_windows_of_many_images_batch_like_one_by_one(windowed):
    cases = [(photo_like(10 + i, 300, 400), box_mask(300, 400, (100 + 30 * i, 150, 130 + 30 * i, 175)))
             for i in range(3)]
    sizes = {(w.height, w.width) for _, m in cases for w in plan_windows(m > 127, "windows", SMALL).windows}
    assert len(sizes) == 1, "equal-sized holes land in one bucket"
    together = windowed.inpaint([c[0] for c in cases], [c[1] for c in cases])
    for (image, mask), result in zip(cases, together):
        alone = windowed.inpaint([image], [mask])[0]
        assert result.windows == alone.windows == 1
        assert np.abs(result.image.astype(int) - alone.image.astype(int)).max() <= 1


def test_window_above_the_pixel_budget_is_downscaled(generator):
    image = photo_like(4, 300, 400)
    mask = box_mask(300, 400, (100, 100, 160, 175))
    inpainter = Inpainter(generator, max_pixels=100 * 100, window_options=SMALL)
    result = inpainter.inpaint([image], [mask])[0]
    assert result.resized and result.strategy == "windows"
    hole = mask > 0
    assert np.array_equal(result.image[~hole], image[~hole])
    assert not np.array_equal(result.image[hole], image[hole])


@pytest.mark.parametrize("h, w", [(1, 1), (5, 7), (1, 40), (3, 2), (8, 8), (15, 9)])
def test_tiny_images(windowed, h, w):
    rng = np.random.default_rng(h * 100 + w)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[h // 2, w // 2] = 255
    result = windowed.inpaint([image], [mask])[0]
    assert result.image.shape == (h, w, 3) and result.strategy == "full" and result.windows == 1
    assert np.array_equal(result.image[mask == 0], image[mask == 0])
    everything = windowed.inpaint([image], [np.full((h, w), 255, np.uint8)])[0]
    assert everything.image.shape == (h, w, 3)


def test_no_hole_returns_the_input_without_running_the_generator(windowed):
    image = photo_like(5, 64, 900)
    result = windowed.inpaint([image], [np.zeros((64, 900), np.uint8)])[0]
    assert result.windows == 0 and np.array_equal(result.image, image)


def test_strip_resizing_matches_interpolate(monkeypatch):
    monkeypatch.setattr(resample, "_STRIP_BYTES", 4 * 3 * 517 * 7)  # 7-row strips for both passes
    rng = np.random.default_rng(6)
    pixels = rng.integers(0, 256, (301, 517, 3), dtype=np.uint8)
    reference = F.interpolate(torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255, size=(97, 133),
                              mode="area")[0]
    assert torch.allclose(area_downscale(pixels, (97, 133)), reference, atol=1e-6)
    small = torch.rand(3, 37, 53, generator=torch.Generator().manual_seed(0))
    strips = list(bicubic_strips(small, (301, 517)))
    assert len(strips) > 10 and strips[0][0] == 0 and strips[-1][1] == 301
    up = torch.cat([rows for _, _, rows in strips], dim=1)
    reference = F.interpolate(small[None], size=(301, 517), mode="bicubic", align_corners=False)[0]
    assert torch.allclose(up, reference, atol=1e-5)


def test_mask_to_hole_matches_binarize():
    rng = np.random.default_rng(7)
    for mask in [rng.integers(0, 256, (50, 60), dtype=np.uint8), rng.integers(0, 2, (50, 60), dtype=np.uint8),
                 rng.random((50, 60)).astype(np.float32), rng.random((50, 60)) > 0.5]:
        for threshold in (0.5, 0.2):
            assert np.array_equal(mask_to_hole(mask, threshold), binarize_mask(mask_to_float(mask), threshold) > 0)


def test_many_specks_are_joined_into_few_regions():
    rng = np.random.default_rng(8)
    hole = np.zeros((2000, 3000), bool)
    hole[rng.integers(0, 2000, 3000), rng.integers(0, 3000, 3000)] = True  # 3000 isolated pixels
    plan = plan_windows(hole, "windows", WindowOptions(min_margin=0, margin=0.0, full_fraction=1.0))
    assert plan.strategy == "windows" and 0 < len(plan.windows) <= 256
    owned = np.zeros(hole.shape, bool)
    for window in plan.windows:
        owned[window.top:window.bottom, window.left:window.right] |= own_holes(plan, window, hole)
    assert np.array_equal(owned, hole)


def test_bucket_sides():
    assert [bucket_side(n) for n in (1, 64, 65, 512, 513, 1025)] == [64, 64, 128, 512, 640, 1280]


def test_margin_follows_the_holes_thickness_not_its_length():
    # A 700 x 40 caption and a 200 x 200 blob on 1500 x 1000 photos: the caption's context is a
    # band about its thickness (the minimum margin here), the blob's about its size.
    options = WindowOptions(margin=1.0, min_margin=64, full_fraction=1.0)
    caption = plan_windows(box_mask(1000, 1500, (800, 300, 840, 1000)) > 127, "windows", options)
    (win,) = caption.windows
    assert win.height <= bucket_side(40 + 2 * 64) and win.width <= bucket_side(700 + 2 * 64)
    blob = plan_windows(box_mask(1000, 1500, (300, 300, 500, 500)) > 127, "windows", options)
    (win,) = blob.windows
    assert win.height >= 200 + 2 * 200 and win.width >= 200 + 2 * 200  # margin = 1 x its 200 px side


def test_diagonal_stroke_gets_a_band_of_context_not_the_full_frame():
    # A 45 px wide, ~500 px long stroke at 45 degrees: its bounding box is nearly square,
    # so a context of 1.5x the box's shorter side took most of the frame (the plan fell
    # back to it); context by thickness gives a band about the stroke's width around it.
    h, w = 1000, 1500
    hole = stroke_mask(h, w, [(400, 200), (750, 550)]) > 127
    plan = plan_windows(hole, "windows")
    assert plan.strategy == "windows"
    assert sum(win.height * win.width for win in plan.windows) < 0.3 * h * w
    assert np.array_equal(owners(plan, hole), hole.astype(int)), "every hole pixel pasted exactly once"


def test_long_diagonal_stroke_is_cut_into_windows_along_it():
    h, w = 2000, 3000
    hole = stroke_mask(h, w, [(700, 300), (1900, 1500)]) > 127
    tiled = plan_windows(hole, "windows")
    whole = plan_windows(hole, "windows", WindowOptions(split_gain=1.0))  # never cut
    assert len(whole.windows) == 1 and len(tiled.windows) >= 3
    seen = sum(win.height * win.width for win in tiled.windows)
    assert seen < 0.8 * whole.windows[0].height * whole.windows[0].width
    assert np.array_equal(owners(tiled, hole), hole.astype(int))
    for win in tiled.windows:  # the pieces overlap: each pastes only its own hole pixels
        assert win.labels is not None and own_holes(tiled, win, hole).any()


@pytest.mark.parametrize("seed", range(3))
def test_strokes_at_any_angle_are_owned_once(seed):
    rng = np.random.default_rng(seed)
    h, w = 1000, 1500
    strokes = []
    for _ in range(3):
        x, y, angle = rng.uniform(300, 1200), rng.uniform(250, 750), rng.uniform(0, 2 * np.pi)
        points = [(x, y)]
        for turn in (0.0, rng.uniform(-1.5, 1.5), rng.uniform(-1.5, 1.5)):
            angle += turn
            x, y = x + 150 * np.cos(angle), y + 150 * np.sin(angle)
            points.append((x, y))
        strokes.append(points)
    hole = stroke_mask(h, w, *strokes, width=int(rng.integers(35, 56))) > 127
    plan = plan_windows(hole, "windows", WindowOptions(full_fraction=1.0))
    assert plan.strategy == "windows"
    assert np.array_equal(owners(plan, hole), hole.astype(int))


def test_stroke_windows_match_their_crops_and_keep_known_pixels(generator, full):
    # Each window pastes only its own piece of the stroke; the rest of the stroke inside it
    # is a hole there too (never shown to the generator as known pixels).
    h, w = 1000, 1500
    image = photo_like(20, h, w)
    mask = stroke_mask(h, w, [(400, 200), (750, 550)], [(900, 800), (1100, 600), (1350, 850)])
    options = WindowOptions(min_margin=64)  # small context: the diagonal is cut in two here
    plan = plan_windows(mask > 127, "windows", options)
    assert plan.strategy == "windows" and len(plan.windows) >= 3
    assert sum(win.labels is not None for win in plan.windows) >= 2
    result = Inpainter(generator, batch_size=4, window_options=options).inpaint([image], [mask])[0]
    assert (result.strategy, result.windows, result.resized) == ("windows", len(plan.windows), False)
    check_windows_match_crops(result, image, mask, plan, full)


def test_planning_a_49_megapixel_mask_stays_fast():
    h = w = 7000
    strokes = [[(500 + 900 * k, 300), (900 * k + 2500, 3800), (1000 + 700 * k, 6500)] for k in range(4)]
    hole = stroke_mask(h, w, *strokes, width=60) > 127
    plan_windows(np.zeros((1000, 1000), bool), "windows")  # scipy's import is not the plan's time
    start = time.perf_counter()
    plan = plan_windows(hole, "windows")
    seconds = time.perf_counter() - start
    assert plan.strategy == "windows" and seconds < 5.0, seconds  # ~0.3 s measured: catches pathologies only
    assert len(plan.windows) >= 8  # the strokes are cut into pieces along them
