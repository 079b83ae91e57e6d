"""How much context a hole window needs: window vs full-frame inpainting on large photos.

    python benchmarks/bench_hd_margin.py [--model assets/lama-small-demo] [--images 8]
        [--margins 0.5 1 1.5 2] [--min-margins 64 128]

Held-out photos (not in the demo model's training set, ``pipelines.common.samples.SAMPLE_PHOTOS``):
matplotlib's ``grace_hopper.jpg`` and scikit-image's photos ``brick``, ``grass``,
``gravel``, ``moon``, ``coins``, ``page``, ``clock`` (grayscale ones replicated to RGB),
each scaled (bicubic) so its short side is 1000 px and mirror-extended to 1500×1000.
Holes: seeded 256² patches of ``thick_256`` masks (object-sized regions) at seeded places,
1–3 % of the image. For every (margin, min_margin) the ``windows`` strategy (forced:
``full_fraction=1``) is compared with the full frame at native resolution (no pixel
budget): hole PSNR of window vs full frame, hole PSNR of each against the photo, and the
pixels the generator saw as a fraction of the image, CPU time relative to the full frame,
and the worst image's change in hole PSNR against the photo (window minus full frame). Fixed 128 px context (IOPaint's
``crop_margin``) is the ``margin=0, min=128`` row. The margin is a multiple of the region's
thickness since ``bench_windows.py`` (of its box's shorter side in the first table of
``RESULTS.md``'s "HD strategy").
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import cpu_description, print_table  # noqa: E402
from lama_core import Inpainter, WindowOptions, load_generator  # noqa: E402
from lama_core.hd_strategy import plan_windows  # noqa: E402
from lama_core.masks import generate_mask  # noqa: E402

HELD_OUT = ("grace_hopper", "brick", "grass", "gravel", "moon", "coins", "page", "clock")
WIDTH, HEIGHT = 1500, 1000


def held_out_photo(name: str) -> np.ndarray:
    """uint8 ``HEIGHT x WIDTH x 3``: the photo scaled to a 1000 px short side, mirror-extended."""
    if name == "grace_hopper":
        import matplotlib.cbook

        photo = np.asarray(Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"))
    else:
        import skimage.data

        photo = np.asarray(getattr(skimage.data, name)())
        photo = np.repeat(photo[:, :, None], 3, axis=2) if photo.ndim == 2 else photo[:, :, :3]
    h, w = photo.shape[:2]
    scale = HEIGHT / min(h, w)
    image = np.asarray(Image.fromarray(photo).resize((round(w * scale), round(h * scale)), Image.Resampling.BICUBIC))
    if image.shape[0] > image.shape[1]:
        image = image.transpose(1, 0, 2)
    image = np.pad(image, ((0, max(0, HEIGHT - image.shape[0])), (0, max(0, WIDTH - image.shape[1])), (0, 0)),
                   mode="symmetric")
    return np.ascontiguousarray(image[:HEIGHT, :WIDTH])


def small_holes(index: int) -> np.ndarray:
    """uint8 ``HEIGHT x WIDTH`` 0/255: seeded 256² ``thick_256`` patches at seeded places,
    added until the holes cover at least 1 % (a patch that would pass 3 % is skipped)."""
    rng = np.random.default_rng(index)
    mask = np.zeros((HEIGHT, WIDTH), bool)
    k = 0
    while mask.mean() < 0.01:
        patch = generate_mask("thick_256", index, k, 256, 256) > 0
        top, left = int(rng.integers(0, HEIGHT - 256)), int(rng.integers(0, WIDTH - 256))
        k += 1
        trial = mask.copy()
        trial[top: top + 256, left: left + 256] |= patch
        if trial.mean() <= 0.03:
            mask = trial
    return mask.astype(np.uint8) * 255


def hole_psnr(a: np.ndarray, b: np.ndarray, hole: np.ndarray) -> float:
    """PSNR in dB over the hole pixels of two uint8 images."""
    mse = np.mean((a[hole].astype(np.float64) - b[hole].astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(Path(__file__).resolve().parents[1] / "assets" / "lama-small-demo"))
    parser.add_argument("--images", type=int, default=len(HELD_OUT))
    parser.add_argument("--margins", type=float, nargs="+", default=[0.5, 1.0, 1.5, 2.0])
    parser.add_argument("--min-margins", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU seconds are reported)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = load_generator(args.model)
    full = Inpainter(generator, hd_strategy="full")
    cases = []
    for index, name in enumerate(HELD_OUT[: args.images]):
        image, mask = held_out_photo(name), small_holes(index)
        start = time.process_time()
        reference = full([image], [mask])[0]
        cases.append((name, image, mask, reference, time.process_time() - start))
        print(f"{name}: hole {np.mean(mask > 0):.1%}, full frame {cases[-1][4]:.1f} CPU s", flush=True)
    settings = [(0.0, 128)] + [(m, mm) for m in args.margins for mm in args.min_margins]
    rows = []
    for margin, min_margin in settings:
        options = WindowOptions(margin=margin, min_margin=min_margin, full_fraction=1.0)
        windowed = Inpainter(generator, window_options=options)
        vs_full, vs_truth, full_truth, pixels, seconds, count = [], [], [], [], [], 0
        for name, image, mask, reference, full_seconds in cases:
            hole = mask > 0
            start = time.process_time()
            result = windowed.inpaint([image], [mask])[0]
            seconds.append((time.process_time() - start) / full_seconds)
            plan = plan_windows(hole, "windows", options)
            count += len(plan.windows)
            pixels.append(sum(w.height * w.width for w in plan.windows) / hole.size)
            vs_full.append(hole_psnr(result.image, reference, hole))
            vs_truth.append(hole_psnr(result.image, image, hole))
            full_truth.append(hole_psnr(reference, image, hole))
        worst_gain = min(a - b for a, b in zip(vs_truth, full_truth))
        rows.append([f"{margin:g}", min_margin, count, f"{np.mean(pixels):.1%}", f"{np.mean(seconds):.2f}",
                     f"{np.mean(vs_full):.1f}", f"{min(vs_full):.1f}", f"{np.mean(vs_truth):.2f}",
                     f"{np.mean(full_truth):.2f}", f"{worst_gain:+.2f}"])
        print(rows[-1], flush=True)
    print_table(f"Window vs full frame, {Path(args.model).name}, {len(cases)} held-out photos {WIDTH}x{HEIGHT}, "
                f"{cpu_description()}",
                ["margin (x thickness)", "min margin px", "windows", "pixels seen", "CPU time / full",
                 "hole PSNR vs full dB (mean)", "(worst)", "hole PSNR vs photo dB", "full frame vs photo dB",
                 "worst image: window - full vs photo dB"], rows)


if __name__ == "__main__":
    main()
