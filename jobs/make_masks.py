"""Freeze a mask set to storage: ``python jobs/make_masks.py kind=thick_512 n=30000 seed=0 output=URI``.

Writes ``000000_mask000.png``, ``000001_mask000.png``, ... (single-channel PNGs, 0 or 255,
255 = hole) under ``output`` (a folder or any fsspec URI), a preview grid of the first
masks beside it (``preview=``, default ``<output>_preview.png``: outside the set, so the
folder holds masks only), then prints one summary line. Mask ``i`` depends only on
``(kind, seed, i)``: the same arguments write the same files.
"""
from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # let `python jobs/make_masks.py` work from a plain checkout
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from lama_core.masks import MASK_SETS, MaskGenerator, hole_fraction, mask_grid_png, mask_png  # noqa: E402
from lama_core.storage import join_uri, write_bytes  # noqa: E402
from pipelines.job_config import JobError, run_job  # noqa: E402

GRID_MASKS = 16
# Writes to object storage are latency-bound; a few threads keep the PUTs overlapping.
WRITE_THREADS = 8


@dataclass
class MakeMasksConfig:
    kind: str = "thick_512"
    n: int = 100
    seed: int = 0
    output: str = "outputs/masks/thick_512"
    preview: str = ""  # PNG grid of the first masks; "" = <output>_preview.png


def mask_name(index: int) -> str:
    """File name of mask ``index`` in LaMa's convention (``000042_mask000.png``)."""
    return f"{index:06d}_mask000.png"


def main(cfg: MakeMasksConfig) -> None:
    if cfg.kind not in MASK_SETS:
        raise JobError(f"unknown mask kind {cfg.kind!r}; valid kinds: {', '.join(MASK_SETS)}")
    if cfg.n < 1:
        raise JobError(f"n must be at least 1, got {cfg.n}")
    if cfg.seed < 0:
        raise JobError(f"seed must be non-negative, got {cfg.seed}")
    generator = MaskGenerator(cfg.kind, cfg.seed)

    def write_one(index: int) -> tuple[float, np.ndarray | None]:
        """Draw and write mask ``index``; return its hole fraction (and the mask, for the preview)."""
        img = generator.image(index)
        write_bytes(join_uri(cfg.output, mask_name(index)), mask_png(img))
        mask = (np.asarray(img) > 0).astype(np.float32)
        return hole_fraction(mask), (mask if index < GRID_MASKS else None)

    fractions, preview = [], []
    with ThreadPoolExecutor(WRITE_THREADS) as pool:
        # map() yields in index order, so the preview is always masks 0..GRID_MASKS-1.
        for fraction, mask in tqdm(pool.map(write_one, range(cfg.n)), total=cfg.n,
                                   desc=f"masks {cfg.kind}", file=sys.stderr):
            fractions.append(fraction)
            if mask is not None:
                preview.append(mask)
    preview_uri = cfg.preview or cfg.output.rstrip("/") + "_preview.png"
    write_bytes(preview_uri, mask_grid_png(preview, ncols=8))
    print(f"wrote {cfg.n} {cfg.kind} masks (seed {cfg.seed}), mean hole fraction "
          f"{np.mean(fractions):.3f}, to {cfg.output} (preview {preview_uri})")


if __name__ == "__main__":
    run_job(main, MakeMasksConfig, defaults_yaml=REPO / "jobs" / "configs" / "make_masks.yaml")
