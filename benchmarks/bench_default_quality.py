"""Inpainting quality of the default model against OpenCV on images it never trained on.

    python benchmarks/bench_default_quality.py [--model assets/lama-small-demo] [--size 256]
        [--masks-per-kind 2] [--out outputs/bench_default_quality]

Held-out images (none is in the training set, ``pipelines.common.samples.TRAINING_PHOTOS``, nor in
its validation photos): scikit-image's grayscale images (camera, coins, moon, brick, grass,
gravel, text, page, clock) and scikit-learn's two colour photos (china, flower; CC BY 2.0,
``sklearn.datasets.load_sample_images``). Each is centre-cropped to ``--size``² (upscaled
first when smaller). Masks are frozen: ``lama_core.masks.generate_mask(kind, seed=2024,
index)`` for the thick, medium and thin evaluation kinds (``*_256`` scaled to the size),
``--masks-per-kind`` of them per image, the same pixels on every machine.

Methods: the model (``lama_core.Inpainter``, fp32, CPU, default ``keep_grey``: grey images
get grey fills; on grey images the raw generator, ``keep_grey=False``, is also reported), OpenCV's ``cv2.inpaint`` with
``INPAINT_TELEA`` and ``INPAINT_NS`` (radius 3), and the image's mean known colour pasted
into the hole (a floor any method should beat). Per case, over the hole pixels only:
PSNR (dB, [0, 1] scale), and the colour error = Euclidean distance between the mean RGB
of the filled hole and of the true hole (0-255 units). On grey images the grey cast is the
mean ``|R - G| + |G - B|`` of the filled hole (0 = no tint). Reports the means, the share
of cases where the model's hole PSNR beats Telea's, and the targets it was trained to
(PSNR >= Telea's, better on >= half the cases, colour error <= 2x Telea's). Writes one
PNG per image (rows: mask kinds; columns: input, model, Telea, NS, truth) under ``--out``.
Needs ``opencv-python-headless`` and ``scikit-learn`` (the ``test`` extra).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.machine import print_table  # noqa: E402
from lama_core import Inpainter, load_generator  # noqa: E402
from lama_core.masks import generate_mask  # noqa: E402

GREY_IMAGES = ("camera", "coins", "moon", "brick", "grass", "gravel", "text", "page", "clock")
MASK_KINDS = ("thick_256", "medium_256", "thin_256")
MASK_SEED = 2024
# The README picture: (image, mask kind, which of its masks) rows, all held out.
FIGURE_CASES = ("china:thick_256:0", "flower:medium_256:0", "camera:thick_256:1", "brick:medium_256:1",
                "moon:thin_256:0")


def held_out_images(size: int) -> dict[str, tuple[np.ndarray, bool]]:
    """``{name: (uint8 size x size x 3, is_grey)}``: the held-out set, centre crops."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    sources = {name: (getattr(skimage.data, name)(), True) for name in GREY_IMAGES}
    samples = load_sample_images()
    for path, image in zip(samples.filenames, samples.images):
        sources[Path(path).stem] = (image, False)
    out = {}
    for name, (image, grey) in sources.items():
        image = np.asarray(image)
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        image = np.ascontiguousarray(image[:, :, :3].astype(np.uint8))
        h, w = image.shape[:2]
        if min(h, w) < size:
            factor = size / min(h, w)
            h, w = max(size, round(h * factor)), max(size, round(w * factor))
            image = np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BICUBIC))
        y, x = (h - size) // 2, (w - size) // 2
        out[name] = (np.ascontiguousarray(image[y:y + size, x:x + size]), grey)
    return out


def hole_psnr(output: np.ndarray, truth: np.ndarray, hole: np.ndarray) -> float:
    """PSNR (dB) over the hole pixels (all channels) of uint8 images, [0, 1] scale."""
    diff = (output[hole].astype(np.float64) - truth[hole].astype(np.float64)) / 255.0
    mse = float(np.mean(diff ** 2))
    return 100.0 if mse == 0 else 10 * math.log10(1.0 / mse)


def colour_error(output: np.ndarray, truth: np.ndarray, hole: np.ndarray) -> float:
    """Distance between the mean RGB of the filled hole and of the true hole, 0-255 units."""
    return float(np.linalg.norm(output[hole].astype(np.float64).mean(0) - truth[hole].astype(np.float64).mean(0)))


def grey_cast(output: np.ndarray, hole: np.ndarray) -> float:
    """Mean ``|R - G| + |G - B|`` over the hole: 0 for a fill without any tint."""
    pixels = output[hole].astype(np.float64)
    return float(np.mean(np.abs(pixels[:, 0] - pixels[:, 1]) + np.abs(pixels[:, 1] - pixels[:, 2])))


def mean_fill(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    out = image.copy()
    out[hole] = np.round(image[~hole].reshape(-1, 3).mean(0)).astype(np.uint8)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "assets" / "lama-small-demo"))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--masks-per-kind", type=int, default=2)
    parser.add_argument("--radius", type=int, default=3, help="cv2.inpaint's inpaintRadius")
    parser.add_argument("--out", default=str(REPO / "outputs" / "bench_default_quality"))
    parser.add_argument("--figure", default="", help="also write the README's before/after picture here "
                        f"(rows: {', '.join(FIGURE_CASES)}; columns: input, model, Telea, truth)")
    args = parser.parse_args()
    import cv2
    import torch

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    generator = load_generator(args.model)
    inpainter = Inpainter(generator, device="cpu", batch_size=4)  # keeps grey images grey (the default)
    raw_inpainter = Inpainter(generator, device="cpu", batch_size=4, keep_grey=False)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    methods = ("model", "telea", "ns", "mean")
    cases = []  # dicts: image, kind, grey, and per-method psnr / colour / cast
    figure_rows = {}
    for image_index, (name, (image, grey)) in enumerate(held_out_images(args.size).items()):
        masks = [(kind, generate_mask(kind, MASK_SEED, image_index * args.masks_per_kind + j, args.size, args.size))
                 for kind in MASK_KINDS for j in range(args.masks_per_kind)]
        hole_images = [(m > 0.5).astype(np.uint8) * 255 for _, m in masks]
        model_outputs = inpainter([image] * len(masks), hole_images)
        raw_outputs = raw_inpainter([image] * len(masks), hole_images) if grey else model_outputs
        rows = []
        for case_index, ((kind, mask), model_out, raw_out) in enumerate(zip(masks, model_outputs, raw_outputs)):
            hole = mask > 0.5
            hole_u8 = hole.astype(np.uint8) * 255
            bgr = np.ascontiguousarray(image[:, :, ::-1])
            outputs = {"model": model_out,
                       "telea": cv2.inpaint(bgr, hole_u8, args.radius, cv2.INPAINT_TELEA)[:, :, ::-1],
                       "ns": cv2.inpaint(bgr, hole_u8, args.radius, cv2.INPAINT_NS)[:, :, ::-1],
                       "mean": mean_fill(image, hole), "raw": raw_out}
            case = {"image": name, "kind": kind, "grey": grey}
            for method in methods + ("raw",):
                case[f"{method}_psnr"] = hole_psnr(outputs[method], image, hole)
                case[f"{method}_colour"] = colour_error(outputs[method], image, hole)
                case[f"{method}_cast"] = grey_cast(outputs[method], hole)
            cases.append(case)
            shown = image.copy()
            shown[hole] = 255
            rows.append(np.concatenate([shown, outputs["model"], outputs["telea"], outputs["ns"], image], axis=1))
            key = f"{name}:{kind}:{case_index % args.masks_per_kind}"
            if key in FIGURE_CASES:
                figure_rows[key] = np.concatenate([shown, outputs["model"], outputs["telea"], image], axis=1)
        Image.fromarray(np.concatenate(rows, axis=0)).save(out_dir / f"{name}.png")

    def summary(label: str, selected: list[dict]) -> list:
        mean = lambda key: float(np.mean([c[key] for c in selected]))  # noqa: E731
        wins = float(np.mean([c["model_psnr"] > c["telea_psnr"] for c in selected]))
        return [label, len(selected), mean("model_psnr"), mean("telea_psnr"), mean("ns_psnr"), mean("mean_psnr"),
                f"{100 * wins:.0f}%", mean("model_colour"), mean("telea_colour"), mean("ns_colour"),
                mean("mean_colour")]

    header = ["cases", "n", "PSNR model", "PSNR Telea", "PSNR NS", "PSNR mean-fill", "model > Telea",
              "colour err model", "colour err Telea", "colour err NS", "colour err mean-fill"]
    table = [summary(kind, [c for c in cases if c["kind"] == kind]) for kind in MASK_KINDS]
    table.append(summary("grey images", [c for c in cases if c["grey"]]))
    table.append(summary("colour photos", [c for c in cases if not c["grey"]]))
    table.append(summary("all", cases))
    print_table(f"Default model vs OpenCV on held-out images ({args.size}², hole pixels only; "
                f"model {Path(args.model).name})", header, table)
    per_image = []
    for name in dict.fromkeys(c["image"] for c in cases):
        sel = [c for c in cases if c["image"] == name]
        per_image.append([name, float(np.mean([c["model_psnr"] for c in sel])),
                          float(np.mean([c["telea_psnr"] for c in sel])),
                          f"{sum(c['model_psnr'] > c['telea_psnr'] for c in sel)}/{len(sel)}",
                          float(np.mean([c["raw_psnr"] for c in sel])) if sel[0]["grey"] else "-",
                          float(np.mean([c["raw_cast"] for c in sel])) if sel[0]["grey"] else "-"])
    print_table("Per image (raw model = keep_grey=False: the generator's own colours)",
                ["image", "PSNR model", "PSNR Telea", "model > Telea", "PSNR raw model", "grey cast raw model"],
                per_image)
    everything = table[-1]
    grey_casts = [c["model_cast"] for c in cases if c["grey"]]
    raw = [c for c in cases if c["grey"]]
    raw_mean = {key: float(np.mean([c[f"raw_{key}"] for c in raw])) for key in ("psnr", "colour", "cast")}
    print(f"\nraw model on grey images (keep_grey=False): PSNR {raw_mean['psnr']:.2f}, "
          f"colour error {raw_mean['colour']:.2f}, grey cast {raw_mean['cast']:.2f}")
    checks = [("mean hole PSNR >= Telea's", everything[2] >= everything[3]),
              ("model beats Telea on >= half of the cases", float(everything[6][:-1]) >= 50),
              ("mean hole colour error <= 2x Telea's", everything[7] <= 2 * everything[8]),
              (f"grey images: mean cast {np.mean(grey_casts):.2f} (max {np.max(grey_casts):.2f}) < 2 levels",
               float(np.mean(grey_casts)) < 2.0)]
    print()
    for label, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}: {label}")
    if args.figure:
        gap = lambda: np.full((6, figure_rows[FIGURE_CASES[0]].shape[1], 3), 255, np.uint8)  # noqa: E731
        parts = [part for key in FIGURE_CASES for part in (figure_rows[key], gap())][:-1]
        Image.fromarray(np.concatenate(parts, axis=0)).save(args.figure, optimize=True)
        print(f"figure: {args.figure}")
    print(f"\nimages: {out_dir}/*.png (rows: masks; columns: input with holes white | model | Telea | NS | truth)")


if __name__ == "__main__":
    main()
