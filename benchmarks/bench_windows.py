"""Window rules for large images, quality and cost together, on four kinds of holes.

    python benchmarks/bench_windows.py [--model assets/lama-small-demo] [--images 8]
        [--rules 1.5:128 2:64 ...] [--sets blobs boxes captions strokes] [--baseline 8b66444]

Photos: ``bench_hd_margin``'s held-out ones (1500×1000, never in the demo model's training
set), each with ``--masks`` seeded hole masks per set, each mask's holes a random 1–3 %:

- ``blobs``: ``bench_hd_margin``'s 256² ``thick_256`` patches (object-sized regions);
- ``boxes``: watermark-like rectangles, 100–400 × 40–160 px;
- ``captions``: long thin horizontal boxes, 400–1200 × 15–40 px;
- ``strokes``: 35–55 px wide, 320–520 px long brush strokes at random angles, in turn
  straight, a polyline of three segments, and a circular arc.

Strategies, each as the ``Inpainter`` runs it (planning included, the real ``full_fraction``
fall-back unless said): the full frame; ``box`` = the bounding-box rule of ``lama_core/hd_strategy.py``
at git revision ``--baseline`` (context = 1.5 × the region box's shorter side, at least
128 px); ``iopaint`` = that rule with a fixed 128 px margin and no fall-back (IOPaint's
crop strategy: margin 128 around each hole box); and the current module's rules
``MARGIN:MIN_MARGIN[:SPLIT_GAIN]`` (context = MARGIN × the region's thickness, at least
MIN_MARGIN px; regions cut into tiles when that saves SPLIT_GAIN of the pixels).
Columns: images that ran the full frame, generator inputs, pixels seen (fraction of the
image, mean), CPU time / the full frame's (mean; 1 torch thread), hole PSNR against the
full-frame result (over all images' hole pixels together: an image that ran the full
frame matches it exactly) and against the photo (mean over images), that minus the box
rule's and IOPaint's (mean ± standard error of the per-image differences), and the worst
image's hole PSNR vs photo minus the full frame's.

First (``--large``, plans only, no inference): the same strategies' plans for strokes
four times longer on 6000×4000 masks.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_hd_margin import HEIGHT, HELD_OUT, WIDTH, held_out_photo, hole_psnr, small_holes  # noqa: E402
from benchmarks.machine import cpu_description, print_table  # noqa: E402
from lama_core import Inpainter, WindowOptions, load_generator  # noqa: E402
from lama_core import inpainter as inpainter_module  # noqa: E402

SETS = ("blobs", "boxes", "captions", "strokes")
BOX, IOPAINT = "box rule (1.5 x shorter side, min 128)", "iopaint (fixed 128, no fall-back)"


def _paired(differences: np.ndarray) -> str:
    """``mean ± standard error`` of per-image differences (dB)."""
    return f"{differences.mean():+.2f} ± {differences.std(ddof=1) / math.sqrt(len(differences)):.2f}"


def _fill(rng: np.random.Generator, shape, size: tuple[int, int] = (HEIGHT, WIDTH)) -> np.ndarray:
    """uint8 ``size`` 0/255: shapes from ``shape(rng)`` (bool ``size``)
    added until the holes reach a random 1–3 % (a shape that would pass 3 % is skipped;
    after 20 skips in a row the holes stop where they are, above 1 %)."""
    target = rng.uniform(0.01, 0.03)
    mask = np.zeros(size, bool)
    skipped = 0
    while mask.mean() < target and (skipped < 20 or mask.mean() < 0.01):
        trial = mask | shape(rng)
        if trial.mean() <= 0.03:
            mask, skipped = trial, 0
        else:
            skipped += 1
    return mask.astype(np.uint8) * 255


def _rectangle(rng: np.random.Generator, widths: tuple[int, int], heights: tuple[int, int]) -> np.ndarray:
    """bool ``HEIGHT x WIDTH``: one axis-aligned box of a random size in the ranges, anywhere."""
    bw, bh = int(rng.integers(*widths)), int(rng.integers(*heights))
    top, left = int(rng.integers(0, HEIGHT - bh)), int(rng.integers(0, WIDTH - bw))
    out = np.zeros((HEIGHT, WIDTH), bool)
    out[top: top + bh, left: left + bw] = True
    return out


def _stroke(rng: np.random.Generator, kind: int, size: tuple[int, int] = (HEIGHT, WIDTH),
            longer: float = 1.0) -> np.ndarray:
    """bool ``size``: one round-capped brush stroke, 35–55 px wide, 320–520 px long (times
    ``longer``), at a random angle: straight (``kind`` 0), three segments turning 30–100° (1), or a
    circular arc of radius 150–400 px (2); placed at random where it fits."""
    while True:
        width, length, angle = int(rng.integers(35, 56)), rng.uniform(320, 520) * longer, rng.uniform(0, 2 * math.pi)
        if kind == 0:
            turns = [0.0]
        elif kind == 1:
            turns = [0.0] + list(rng.uniform(math.radians(30), math.radians(100), 2) * rng.choice([-1, 1], 2))
        else:
            steps, radius = 24, rng.uniform(150, 400) * rng.choice([-1, 1])
            turns = [0.0] + [length / radius / steps] * (steps - 1)
        x, y = 0.0, 0.0
        points = [(x, y)]
        for turn in turns:
            angle += turn
            step = length / len(turns)
            x, y = x + step * math.cos(angle), y + step * math.sin(angle)
            points.append((x, y))
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        room_x, room_y = size[1] - 2 * width - (max(xs) - min(xs)), size[0] - 2 * width - (max(ys) - min(ys))
        if room_x > 0 and room_y > 0:
            dx, dy = width - min(xs) + rng.uniform(0, room_x), width - min(ys) + rng.uniform(0, room_y)
            points = [(px + dx, py + dy) for px, py in points]
            break
    canvas = Image.new("L", size[::-1], 0)
    draw = ImageDraw.Draw(canvas)
    draw.line(points, fill=255, width=width, joint="curve")
    for px, py in (points[0], points[-1]):
        draw.ellipse([px - width / 2, py - width / 2, px + width / 2, py + width / 2], fill=255)
    return np.asarray(canvas) > 0


def holes(kind: str, index: int) -> np.ndarray:
    """uint8 ``HEIGHT x WIDTH`` 0/255: image ``index``'s holes of the set ``kind``."""
    if kind == "blobs":
        return small_holes(index)
    rng = np.random.default_rng(1000 * SETS.index(kind) + index)
    if kind == "boxes":
        return _fill(rng, lambda r: _rectangle(r, (100, 401), (40, 161)))
    if kind == "captions":
        return _fill(rng, lambda r: _rectangle(r, (400, 1201), (15, 41)))
    count = iter(range(10**6))
    return _fill(rng, lambda r: _stroke(r, (index + next(count)) % 3))


def long_strokes(index: int, size: tuple[int, int] = (4000, 6000)) -> np.ndarray:
    """bool ``size``: ``strokes``' kinds of strokes, four times longer (1280–2080 px), 1–3 %
    of a 24 MP image (plans only: what cutting regions into tiles saves on large images)."""
    rng = np.random.default_rng(5000 + index)
    count = iter(range(10**6))
    return _fill(rng, lambda r: _stroke(r, (index + next(count)) % 3, size, 4.0), size) > 0


def load_baseline(revision: str):
    """``lama_core/hd_strategy.py`` as of git ``revision``, loaded as a module of ``lama_core``."""
    source = subprocess.run(["git", "show", f"{revision}:lama_core/hd_strategy.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    spec = importlib.util.spec_from_loader("lama_core._hd_strategy_baseline", loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "lama_core"
    sys.modules[spec.name] = module  # dataclasses look their module up there
    exec(compile(source, f"{revision}:lama_core/hd_strategy.py", "exec"), module.__dict__)
    return module


@contextlib.contextmanager
def planner(module):
    """Make the ``Inpainter`` plan and paste with ``module``'s ``plan_windows``/``own_holes``."""
    saved = inpainter_module.plan_windows, inpainter_module.own_holes
    inpainter_module.plan_windows, inpainter_module.own_holes = module.plan_windows, module.own_holes
    try:
        yield
    finally:
        inpainter_module.plan_windows, inpainter_module.own_holes = saved


def parse_rule(text: str) -> WindowOptions:
    """``MARGIN:MIN_MARGIN[:SPLIT_GAIN]`` -> ``WindowOptions`` (other fields default)."""
    parts = text.split(":")
    extra = {"split_gain": float(parts[2])} if len(parts) > 2 else {}
    return WindowOptions(margin=float(parts[0]), min_margin=int(parts[1]), **extra)


def plan_large(count: int, strategies: list) -> None:
    """Print each strategy's plans for ``count`` ``long_strokes`` masks: images that would
    run the full frame, generator inputs, pixels seen (mean fraction), planning seconds."""
    masks = [long_strokes(i) for i in range(count)]
    rows = []
    for label, module, options in strategies:
        fulls, inputs, pixels, seconds = 0, 0, [], []
        for hole in masks:
            start = time.process_time()
            plan = module.plan_windows(hole, "windows", options)
            seconds.append(time.process_time() - start)
            fulls += plan.strategy == "full"
            inputs += len(plan.windows)
            pixels.append(sum(w.height * w.width for w in plan.windows) / hole.size)
        rows.append([label, fulls, inputs, f"{np.mean(pixels):.1%}", f"{np.mean(seconds):.2f}"])
    coverage = [hole.mean() for hole in masks]
    print_table(f"plans only: {count} masks 6000x4000 of 1280-2080 px strokes, holes {min(coverage):.1%}-"
                f"{max(coverage):.1%}", ["strategy", "ran full", "inputs", "pixels seen", "plan CPU s"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "assets" / "lama-small-demo"))
    parser.add_argument("--images", type=int, default=len(HELD_OUT), help="photos")
    parser.add_argument("--masks", type=int, default=3, help="hole masks per photo and set")
    parser.add_argument("--sets", nargs="*", default=list(SETS), choices=SETS)
    parser.add_argument("--rules", nargs="+", default=["1.5:128", "1.5:64", "2:64", "3:64"])
    parser.add_argument("--baseline", default="8b66444", help="git revision of the bounding-box rule")
    parser.add_argument("--large", type=int, default=24, help="24 MP stroke masks to plan (no inference)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU seconds are reported)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = load_generator(args.model)
    baseline = load_baseline(args.baseline)
    current = sys.modules["lama_core.hd_strategy"]
    full = Inpainter(generator, hd_strategy="full")
    strategies = [(BOX, baseline, baseline.WindowOptions()),
                  (IOPAINT, baseline,
                   baseline.WindowOptions(margin=0.0, min_margin=128, full_fraction=1.0))]
    strategies += [(f"thickness {o.margin:g}x, min {o.min_margin}, split {o.split_gain:g}", current, o)
                   for o in map(parse_rule, args.rules)]
    print(cpu_description(), flush=True)
    if args.large:
        plan_large(args.large, strategies)
    photos = [held_out_photo(name) for name in HELD_OUT[: args.images]]
    for kind in args.sets:
        cases = []
        for index in range(args.images * args.masks):
            image, mask = photos[index % args.images], holes(kind, index)
            start = time.process_time()
            reference = full([image], [mask])[0]
            cases.append((image, mask, reference, time.process_time() - start))
        coverage = [np.mean(c[1] > 0) for c in cases]
        full_truth = [hole_psnr(c[2], c[0], c[1] > 0) for c in cases]
        rows = [["full frame", len(cases), len(cases), "100.0%", "1.00", "inf", f"{np.mean(full_truth):.2f}",
                 "", "", "+0.00"]]
        per_case = {}
        for label, module, options in strategies:
            inpainter = Inpainter(generator, window_options=options)
            fulls, inputs, pixels, seconds, errors, vs_truth = 0, 0, [], [], [], []
            with planner(module):
                for image, mask, reference, full_seconds in cases:
                    hole = mask > 0
                    start = time.process_time()
                    result = inpainter.inpaint([image], [mask])[0]
                    seconds.append((time.process_time() - start) / full_seconds)
                    plan = module.plan_windows(hole, "windows", options)
                    fulls += plan.strategy == "full"
                    inputs += len(plan.windows)
                    pixels.append(sum(w.height * w.width for w in plan.windows) / hole.size)
                    errors.append((result.image[hole].astype(np.float64) - reference[hole]) ** 2)
                    vs_truth.append(hole_psnr(result.image, image, hole))
            worst = min(a - b for a, b in zip(vs_truth, full_truth))
            per_case[label] = np.array(vs_truth)
            paired = [_paired(per_case[label] - per_case[other]) if other in per_case else ""
                      for other in (BOX, IOPAINT)]
            mse = np.concatenate(errors).mean()
            vs_full = 10 * math.log10(255.0**2 / mse) if mse else math.inf
            rows.append([label, fulls, inputs, f"{np.mean(pixels):.1%}", f"{np.mean(seconds):.2f}",
                         f"{vs_full:.1f}", f"{np.mean(vs_truth):.2f}", *paired, f"{worst:+.2f}"])
            print(kind, rows[-1], flush=True)
        print_table(f"{kind}: {len(cases)} held-out photos {WIDTH}x{HEIGHT}, holes {min(coverage):.1%}-"
                    f"{max(coverage):.1%}, {Path(args.model).name}",
                    ["strategy", "ran full", "inputs", "pixels seen", "CPU / full", "hole PSNR vs full dB",
                     "hole PSNR vs photo dB", "- box rule's dB", "- iopaint's dB", "worst image - full frame's dB"],
                    rows)


if __name__ == "__main__":
    main()
