"""This project's bulk job against IOPaint 1.6.0, end to end: same machine, same weights.

    python benchmarks/bench_peer.py [--workdir /tmp/lama-bench-peer] [--small 24] [--large 8]
        [--rounds 2] [--bf16] [--skip small|large]

What it does, in one run:
1. Creates IOPaint 1.6.0 in its own virtual environment (``--iopaint-venv``, made once and
   reused; never a dependency of this project), with the same torch release as ours.
2. Writes one seeded big-lama state dict twice: as IOPaint's TorchScript ``big-lama.pt``
   (the official export's interface: ``(image, mask)`` in [0, 1] -> the composited result),
   placed where ``iopaint run --model-dir`` finds it, and as an official Lightning
   ``best.ckpt`` that ``jobs/inpaint.py model=`` loads.
3. Builds two data sets from scikit-image's and scikit-learn's colour photos: ``small``
   (512x512 crops with 20-40 % holes from the ``thick_512`` masks) and ``large`` (photos
   scaled to 1500x1000 with 1-3 % holes: half one object-sized blob, half a caption of
   several small strokes: watermark/text/logo removal).
4. Times both tools as whole processes (start-up, model load, reading, writing included),
   alternating which goes first each round, each into a fresh output folder, and prints
   images/s and the ratio ours / IOPaint.
5. Compares the two tools' outputs in the holes (PSNR over hole pixels): with the random
   weights of the timed runs, and once more (untimed) on the small set with the trained
   ``assets/lama-small-demo`` exported the same way, whose outputs are real pictures.

The random big-lama weights make timing meaningful (speed does not depend on the values);
their outputs are near-flat, which flatters agreement, hence the trained-model check.
"""
from __future__ import annotations

import argparse
import collections
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_generator import randomized_generator  # noqa: E402
from benchmarks.machine import cpu_description, print_table  # noqa: E402
from lama_core import load_generator  # noqa: E402
from lama_core.masks import generate_mask, hole_fraction, mask_png  # noqa: E402

IOPAINT_VERSION = "1.6.0"
SMALL_SIZE = 512
LARGE_W, LARGE_H = 1500, 1000
# Colour photos only: the big sets are scaled copies, the photo content hardly matters for speed.
SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "motorcycle_left",
                  "retina", "hubble_deep_field", "cat")
SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")


# ---------------------------------------------------------------------------------------------
# IOPaint's environment and model file
# ---------------------------------------------------------------------------------------------

def ensure_iopaint(venv: Path) -> Path:
    """Create ``venv`` with IOPaint 1.6.0 and this process's torch/torchvision releases
    (once; reused when its ``iopaint`` exists). Returns the ``iopaint`` executable."""
    exe = venv / "bin" / "iopaint"
    if exe.exists():
        return exe
    import torchvision

    torch_version = torch.__version__.split("+")[0]
    vision_version = torchvision.__version__.split("+")[0]
    print(f"creating {venv} with iopaint=={IOPAINT_VERSION} (minutes, once)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["-U", "pip"], check=True)
    subprocess.run(pip + [f"iopaint=={IOPAINT_VERSION}", f"torch=={torch_version}",
                          f"torchvision=={vision_version}"], check=True)
    return exe


class OfficialJitInterface(torch.nn.Module):
    """The interface of the official TorchScript big-lama that IOPaint loads:
    ``(image (1,3,H,W) in [0,1], mask (1,1,H,W) in {0,1}) -> (1,3,H,W) in [0,1]``, the
    generator's output composited into the hole (the official ``predict_only`` module)."""

    def __init__(self, generator: torch.nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        masked = image * (1 - mask)
        predicted = self.generator(torch.cat([masked, mask], dim=1))
        return mask * predicted + (1 - mask) * image


def export_torchscript(generator: torch.nn.Module, path: Path) -> None:
    """Trace ``generator`` behind ``OfficialJitInterface`` and save it to ``path``; the
    traced module is checked against eager execution at a second, non-square size (a trace
    that froze a shape would fail there)."""
    module = OfficialJitInterface(generator.eval())
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        traced = torch.jit.trace(module, (torch.rand(1, 3, 256, 256, generator=gen),
                                          (torch.rand(1, 1, 256, 256, generator=gen) > 0.7).float()))
        image = torch.rand(1, 3, 192, 320, generator=gen)
        mask = (torch.rand(1, 1, 192, 320, generator=gen) > 0.7).float()
        diff = (traced(image, mask) - module(image, mask)).abs().max().item()
    if diff > 1e-5:
        raise RuntimeError(f"the traced model differs from eager by {diff} at 192x320")
    path.parent.mkdir(parents=True, exist_ok=True)
    traced.save(str(path))


def write_official_ckpt(generator: torch.nn.Module, path: Path) -> None:
    """``generator``'s weights as an official Lightning ``best.ckpt`` (``generator.*`` keys,
    no config: loaded with the big-lama preset, as official bare checkpoints are)."""
    state = collections.OrderedDict((f"generator.{k}", v) for k, v in generator.state_dict().items())
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 0, "global_step": 0, "pytorch-lightning_version": "1.2.9", "state_dict": state}, path)


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------

def colour_photos() -> list[np.ndarray]:
    """uint8 HxWx3 colour photos from scikit-image and scikit-learn."""
    import skimage.data
    from sklearn.datasets import load_sample_image

    photos = []
    for name in SKIMAGE_PHOTOS:
        loader = getattr(skimage.data, name, None)
        if loader is None:
            continue
        image = np.asarray(loader())
        if image.ndim == 3 and image.shape[2] >= 3:
            photos.append(np.ascontiguousarray(image[:, :, :3]))
    photos += [np.asarray(load_sample_image(name)) for name in SKLEARN_PHOTOS]
    return photos


def _cover(photo: np.ndarray, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """``photo`` scaled (bicubic) to cover ``width x height`` and cropped there at random."""
    h, w = photo.shape[:2]
    scale = max(width / w, height / h) * rng.uniform(1.0, 1.3)
    size = (max(width, math.ceil(w * scale)), max(height, math.ceil(h * scale)))
    big = np.asarray(Image.fromarray(photo).resize(size, Image.BICUBIC))
    y = int(rng.integers(0, big.shape[0] - height + 1))
    x = int(rng.integers(0, big.shape[1] - width + 1))
    return big[y:y + height, x:x + width]


def _small_hole(photo_index: int, seed: int) -> np.ndarray:
    """A ``thick_512`` mask with 20-40 % holes (the first such mask from ``seed``)."""
    for index in range(1000):
        mask = generate_mask("thick_512", seed, photo_index * 1000 + index, SMALL_SIZE, SMALL_SIZE)
        if 0.2 <= hole_fraction(mask) <= 0.4:
            return mask
    raise RuntimeError("no thick_512 mask with 20-40 % holes")


def _large_hole(index: int, rng: np.random.Generator) -> np.ndarray:
    """A 1-3 % hole on a 1500x1000 image: an object-sized blob (even ``index``) or a caption
    of several short strokes (odd ``index``)."""
    target = rng.uniform(0.01, 0.03) * LARGE_W * LARGE_H
    canvas = Image.new("L", (LARGE_W, LARGE_H), 0)
    draw = ImageDraw.Draw(canvas)
    if index % 2 == 0:
        # An ellipse with a few lobes: an object to remove.
        radius = math.sqrt(target / math.pi)
        cx, cy = rng.uniform(radius * 1.5, LARGE_W - radius * 1.5), rng.uniform(radius * 1.5, LARGE_H - radius * 1.5)
        for _ in range(4):
            rx, ry = radius * rng.uniform(0.5, 0.9), radius * rng.uniform(0.5, 0.9)
            ox, oy = rng.normal(0, radius * 0.3, 2)
            draw.ellipse([cx + ox - rx, cy + oy - ry, cx + ox + rx, cy + oy + ry], fill=255)
    else:
        # Caption: letters as short strokes along a line.
        letters = int(rng.integers(8, 16))
        height = math.sqrt(target / letters / 0.35)
        width = 0.55 * height
        x0 = rng.uniform(20, max(21, LARGE_W - 20 - letters * width * 1.3))
        y0 = rng.uniform(20, LARGE_H - 20 - height)
        for k in range(letters):
            x = x0 + k * width * 1.3
            stroke = max(2, int(height * 0.18))
            for _ in range(2):
                pts = [(x + rng.uniform(0, width), y0 + rng.uniform(0, height)) for _ in range(2)]
                draw.line(pts, fill=255, width=stroke)
            draw.rectangle([x, y0 + height - stroke, x + width, y0 + height], fill=255)
    return (np.asarray(canvas) > 0).astype(np.float32)


def build_set(root: Path, kind: str, count: int, seed: int = 0) -> list[str]:
    """Write ``count`` images to ``root/images/NAME.png`` and their masks (0/255) to
    ``root/masks/NAME.png``; return the names (without extension). Reuses a complete set."""
    names = [f"{kind}_{i:03d}" for i in range(count)]
    if all((root / "masks" / f"{n}.png").exists() for n in names):
        return names
    shutil.rmtree(root, ignore_errors=True)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    photos = colour_photos()
    rng = np.random.default_rng(seed)
    for i, name in enumerate(names):
        photo = photos[i % len(photos)]
        if kind == "small":
            image, mask = _cover(photo, SMALL_SIZE, SMALL_SIZE, rng), _small_hole(i, seed)
        else:
            image, mask = _cover(photo, LARGE_W, LARGE_H, rng), _large_hole(i, rng)
        Image.fromarray(image).save(root / "images" / f"{name}.png", compress_level=1)
        (root / "masks" / f"{name}.png").write_bytes(mask_png(mask))
    return names


# ---------------------------------------------------------------------------------------------
# Running the tools
# ---------------------------------------------------------------------------------------------

def run_ours(data: Path, out: Path, model: Path, precision: str) -> float:
    """Seconds of ``jobs/inpaint.py`` over ``data`` into a fresh ``out`` (whole process)."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, str(ROOT / "jobs" / "inpaint.py"), f"input={data / 'images'}",
           f"mask_dir={data / 'masks'}", f"output={out}", f"model={model}", f"precision={precision}"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"jobs/inpaint.py failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return seconds


def run_iopaint(exe: Path, data: Path, out: Path, model_dir: Path) -> float:
    """Seconds of ``iopaint run --model=lama --device=cpu`` over ``data`` into a fresh ``out``."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cmd = [str(exe), "run", "--model=lama", "--device=cpu", f"--image={data / 'images'}",
           f"--mask={data / 'masks'}", f"--output={out}", f"--model-dir={model_dir}"]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"iopaint failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return seconds


def hole_agreement(data: Path, names: list[str], ours: Path, peer: Path) -> tuple[float, float, float]:
    """(mean, worst) PSNR in dB between the two tools' outputs over each image's hole
    pixels, and the largest difference (0-255) in known pixels between either and the input."""
    psnrs, known_diff = [], 0
    for name in names:
        image = np.asarray(Image.open(data / "images" / f"{name}.png").convert("RGB")).astype(np.int16)
        hole = np.asarray(Image.open(data / "masks" / f"{name}.png")) > 127
        a = np.asarray(Image.open(ours / "images" / f"{name}.png").convert("RGB")).astype(np.int16)
        b = np.asarray(Image.open(peer / f"{name}.png").convert("RGB")).astype(np.int16)
        known_diff = max(known_diff, int(np.abs(a - image)[~hole].max()), int(np.abs(b - image)[~hole].max()))
        mse = float(np.mean((a[hole].astype(np.float64) - b[hole]) ** 2))
        psnrs.append(99.0 if mse == 0 else 10 * math.log10(255 ** 2 / mse))
    return statistics.fmean(psnrs), min(psnrs), known_diff


def time_set(label: str, data: Path, names: list[str], work: Path, exe: Path, model_dir: Path, ckpt: Path,
             precisions: list[str], rounds: int) -> list[list]:
    """Alternating timed runs of IOPaint and ours (each precision) on one set; table rows."""
    tools = ["iopaint"] + [f"ours {p}" for p in precisions]
    seconds: dict[str, list[float]] = {t: [] for t in tools}
    for r in range(rounds):
        order = tools if r % 2 == 0 else tools[::-1]
        for tool in order:
            out = work / "out" / label / tool.replace(" ", "_")
            if tool == "iopaint":
                s = run_iopaint(exe, data, out, model_dir)
            else:
                s = run_ours(data, out, ckpt, tool.split()[1])
            seconds[tool].append(s)
            print(f"  {label} round {r + 1}: {tool:10s} {s:7.1f} s ({len(names) / s:.3f} img/s)", flush=True)
    peer_rate = len(names) / statistics.median(seconds["iopaint"])
    rows = []
    for tool in tools:
        rate = len(names) / statistics.median(seconds[tool])
        agree = ""
        if tool != "iopaint":
            mean, worst, known = hole_agreement(data, names, work / "out" / label / tool.replace(" ", "_"),
                                                work / "out" / label / "iopaint")
            agree = f"{mean:.1f} / {worst:.1f} (known px max diff {known})"
        rows.append([label, tool, len(names), " ".join(f"{s:.1f}" for s in seconds[tool]), rate,
                     rate / peer_rate, agree])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/lama-bench-peer"))
    parser.add_argument("--iopaint-venv", type=Path, default=Path.home() / ".cache" / "lama-bench" / "iopaint-1.6.0")
    parser.add_argument("--small", type=int, default=24, help="images in the 512x512 set")
    parser.add_argument("--large", type=int, default=8, help="images in the 1500x1000 set")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--bf16", action="store_true", help="also time ours with precision=bf16")
    parser.add_argument("--skip", choices=["small", "large", "agreement"], action="append", default=[])
    args = parser.parse_args()

    work = args.workdir
    exe = ensure_iopaint(args.iopaint_venv)
    model_dir, ckpt = work / "iopaint-models", work / "big-lama-ckpt" / "models" / "best.ckpt"
    jit_path = model_dir / "torch" / "hub" / "checkpoints" / "big-lama.pt"
    if not (jit_path.exists() and ckpt.exists()):
        generator = randomized_generator("big-lama")  # seed 0, perturbed BatchNorm statistics
        export_torchscript(generator, jit_path)
        write_official_ckpt(generator, ckpt)
    precisions = ["fp32"] + (["bf16"] if args.bf16 else [])
    rows = []
    for label, count in (("small", args.small), ("large", args.large)):
        if label in args.skip:
            continue
        data = work / f"data-{label}"
        names = build_set(data, label, count)
        rows += time_set(label, data, names, work, exe, model_dir, ckpt, precisions, args.rounds)
    print_table(f"Ours vs IOPaint {IOPAINT_VERSION}, whole processes, same seeded big-lama weights",
                ["set", "tool", "images", "seconds per run", "images/s (median)", "ratio vs IOPaint",
                 "hole PSNR vs IOPaint dB mean / worst"], rows)

    if "agreement" not in args.skip and "small" not in args.skip:
        # The trained demo model through both tools: agreement on real fills, untimed.
        trained = load_generator(str(ROOT / "assets" / "lama-small-demo"))
        demo_dir = work / "iopaint-models-demo"
        export_torchscript(trained, demo_dir / "torch" / "hub" / "checkpoints" / "big-lama.pt")
        data = work / "data-small"
        names = build_set(data, "small", args.small)
        run_iopaint(exe, data, work / "out" / "demo" / "iopaint", demo_dir)
        run_ours(data, work / "out" / "demo" / "ours", ROOT / "assets" / "lama-small-demo", "fp32")
        mean, worst, known = hole_agreement(data, names, work / "out" / "demo" / "ours",
                                            work / "out" / "demo" / "iopaint")
        print(f"\ntrained lama-small-demo, small set, fp32 full frame: hole PSNR ours vs IOPaint "
              f"{mean:.1f} dB mean, {worst:.1f} dB worst; known pixels max diff {known}")
    print(cpu_description())


if __name__ == "__main__":
    main()
