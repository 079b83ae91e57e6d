"""Peak memory of the whole bulk inpainting job on large photos, at native resolution.

    python benchmarks/bench_native_resolution.py [--repo PATH] [--sizes 20 50] [--work DIR]
        [--job-arg key=value ...]

For each photo size (megapixels, 3:2 JPEG q90, gradients + noise) and each hole (``small``:
one 256 x 256 box; ``half``: the left half of the frame), runs ``jobs/inpaint.py`` of
``--repo`` (default: this checkout; point it at an older tree to measure "before") on a
one-record LaMa folder with a local Ray of its own, so every process of the job is in its
process tree, and samples the tree's memory every 0.2 s: the sum of proportional set sizes
(``Pss`` of ``/proc/PID/smaps_rollup``; shared library pages count once over the tree).
Prints the peak, the wall time and what the record says (size, processed size, resized).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import print_table  # noqa: E402

HOLES = ("small", "half")


def tree_memory_bytes(root: int) -> int:
    """Sum of ``Pss`` over process ``root`` and its descendants, in bytes."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            rollup = ""
        total += next((int(line.split()[1]) * 1024 for line in rollup.splitlines() if line.startswith("Pss:")), 0)
        todo += children.get(pid, [])
    return total


def photo(megapixels: int, seed: int = 0) -> np.ndarray:
    """uint8 ``H x W x 3``, 3:2, about ``megapixels`` MP: gradients plus noise (JPEG-like detail)."""
    height = int(round((megapixels * 1e6 / 1.5) ** 0.5 / 8)) * 8
    width = int(round(height * 1.5 / 8)) * 8
    rng = np.random.default_rng(seed)
    out = np.empty((height, width, 3), np.uint8)
    xx = np.arange(width, dtype=np.uint32)
    for y0 in range(0, height, 512):  # in bands: never a float copy of the whole frame
        yy = np.arange(y0, min(y0 + 512, height), dtype=np.uint32)[:, None]
        band = np.stack([xx[None] * 255 // width + 0 * yy, yy * 255 // height + 0 * xx[None], (xx[None] + yy) % 256],
                        -1)
        out[y0:y0 + len(yy)] = np.clip(band + rng.integers(0, 40, band.shape, dtype=np.uint32), 0, 255)
    return out


def make_record(folder: Path, image: np.ndarray, hole: str) -> None:
    from PIL import Image

    height, width = image.shape[:2]
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(folder / "photo.jpg", quality=90)
    mask = np.zeros((height, width), np.uint8)
    if hole == "small":
        mask[height // 2: height // 2 + 256, width // 3: width // 3 + 256] = 255
    else:
        mask[:, : width // 2] = 255
    Image.fromarray(mask).save(folder / "photo_mask000.png")


def run_job(repo: Path, folder: Path, out: Path, job_args: list[str]) -> tuple[int, float, float, str]:
    """``(exit code, peak tree memory MiB, seconds, stderr tail)`` of one job run."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "PYTHONPATH")}
    cmd = [sys.executable, "jobs/inpaint.py", f"input={folder}", f"output={out}", "num_workers=1", "batch_size=1",
           "codec_batch_size=1", *job_args]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_memory_bytes(proc.pid))
        time.sleep(0.2)
    _, stderr = proc.communicate()
    return proc.returncode, peak / 2**20, time.monotonic() - start, stderr[-400:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--job-arg", action="append", default=[])
    parser.add_argument("--title", default="Bulk job peak memory on large photos")
    args = parser.parse_args()
    import pyarrow.parquet as pq

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-native-"))
    rows = []
    for megapixels in args.sizes:
        image = photo(megapixels)
        for hole in HOLES:
            folder, out = work / f"{megapixels}mp-{hole}", work / f"{megapixels}mp-{hole}-out"
            make_record(folder, image, hole)
            code, peak, seconds, tail = run_job(args.repo.resolve(), folder, out, args.job_arg)
            record = pq.read_table(out / "records").to_pylist()[0] if code == 0 else {}
            size = f"{image.shape[1]}x{image.shape[0]}"
            processed = (f"{record.get('processed_width')}x{record.get('processed_height')}"
                         if "processed_width" in record else "(not recorded)")
            status = record.get("status", f"exit {code}: {tail.strip().splitlines()[-1] if tail.strip() else ''}")
            error = (record.get("error") or "")[:60]
            rows.append([f"{megapixels} MP ({size})", hole, status + (f" ({error})" if error else ""),
                         f"{record.get('width')}x{record.get('height')}", processed, record.get("resized"),
                         round(peak), round(seconds, 1)])
            print(rows[-1], flush=True)
    print_table(args.title + (f" ({' '.join(args.job_arg)})" if args.job_arg else ""),
                ["photo", "hole", "status", "recorded size", "processed size", "resized", "peak MiB (PSS, job tree)",
                 "seconds"], rows)


if __name__ == "__main__":
    main()
