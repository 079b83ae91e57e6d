"""Freeze a mask set to storage: ``python jobs/make_masks.py mask_kind=thick_512 n=30000 mask_seed=0 output=URI``.

Writes ``000000_mask000.png``, ``000001_mask000.png``, ... (single-channel PNGs, 0 or 255,
255 = hole) under ``output`` (a folder or any fsspec URI), a preview grid of the first
masks beside it (``preview=``, default ``<output>_preview.png``: outside the set, so the
folder holds masks only), then prints one summary line. Mask ``i`` depends only on
``(mask_kind, mask_seed, i)``: the same arguments write the same files.
"""
from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # let `python jobs/make_masks.py` work from a plain checkout
    sys.path.insert(0, str(REPO))

from pipelines.common.configs import MakeMasksConfig  # noqa: E402  (light: parsing never waits for numpy/Pillow)
from pipelines.common.cli import run_job  # noqa: E402

GRID_MASKS = 16
# Writes to object storage are latency-bound; a few threads keep the PUTs overlapping.
WRITE_THREADS = 8


def main(cfg: MakeMasksConfig) -> None:
    import numpy as np
    from tqdm import tqdm

    from lama_core.mask_sets import frozen_mask_name
    from lama_core.masks import MaskGenerator, hole_fraction, mask_grid_png, mask_png
    from lama_core.storage import join_uri, write_bytes

    generator = MaskGenerator(cfg.mask_kind, cfg.mask_seed)

    def write_one(index: int) -> tuple[float, np.ndarray | None]:
        """Draw and write mask ``index``; return its hole fraction (and the mask, for the preview)."""
        img = generator.image(index)
        write_bytes(join_uri(cfg.output, frozen_mask_name(index)), mask_png(img), endpoint_url=cfg.endpoint_url)
        mask = (np.asarray(img) > 0).astype(np.float32)
        return hole_fraction(mask), (mask if index < GRID_MASKS else None)

    fractions, preview = [], []
    with ThreadPoolExecutor(WRITE_THREADS) as pool:
        # map() yields in index order, so the preview is always masks 0..GRID_MASKS-1.
        for fraction, mask in tqdm(pool.map(write_one, range(cfg.n)), total=cfg.n,
                                   desc=f"masks {cfg.mask_kind}", file=sys.stderr):
            fractions.append(fraction)
            if mask is not None:
                preview.append(mask)
    preview_uri = cfg.preview or cfg.output.rstrip("/") + "_preview.png"
    write_bytes(preview_uri, mask_grid_png(preview, ncols=8), endpoint_url=cfg.endpoint_url)
    print(f"wrote {cfg.n} {cfg.mask_kind} masks (seed {cfg.mask_seed}), mean hole fraction "
          f"{np.mean(fractions):.3f}, to {cfg.output} (preview {preview_uri})")


if __name__ == "__main__":
    run_job(main, MakeMasksConfig)
