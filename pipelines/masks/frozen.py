"""Freezing a generated mask set to storage (``jobs/make_masks.py``): masks ``0..n-1`` of
``(mask_kind, mask_seed)`` as ``000000_mask000.png``, ... (single-channel PNGs, 0 or 255,
255 = hole), written concurrently, and a preview grid of the first ``preview`` masks beside
the folder (``OUTPUT_preview.png``: outside the set, so the folder holds masks only)."""
from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from lama_core.mask_sets import frozen_mask_name
from lama_core.masks import MaskGenerator, hole_fraction, mask_grid_png, mask_png
from lama_core.storage import filesystem_for, join_uri, write_bytes

from pipelines.common.errors import JobError
from pipelines.masks.config import MakeMasksConfig

# Writes to object storage are latency-bound; a few threads keep the PUTs overlapping.
WRITE_THREADS = 8
PREVIEW_COLUMNS = 8


@dataclass
class FrozenMaskSet:
    """What ``write_mask_set`` wrote: ``n`` masks, their mean hole fraction, and the preview
    grid's URI (``""`` with ``preview=0``)."""

    n: int
    mean_hole_fraction: float
    preview_uri: str


def _clear_or_refuse(cfg: MakeMasksConfig) -> None:
    fs, root = filesystem_for(cfg.output, cfg.endpoint_url)
    try:
        held = sorted(fs.find(root)) if fs.isdir(root) else []
    except FileNotFoundError:
        held = []
    if not held:
        return
    if not cfg.overwrite:
        names = ", ".join(p.rsplit("/", 1)[-1] for p in held[:3]) + (", ..." if len(held) > 3 else "")
        raise JobError(f"{cfg.output} already holds {len(held)} files ({names}): a frozen mask set is not "
                       "changed in place; write to another output, or pass overwrite=true to replace it")
    for path in held:
        fs.rm_file(path)


def preview_uri(output: str) -> str:
    """Where the preview grid of the mask set at ``output`` goes: beside it."""
    return output.rstrip("/") + "_preview.png"


def write_mask_set(cfg: MakeMasksConfig) -> FrozenMaskSet:
    """Draw and write the mask set ``cfg`` names (see the module docstring), with a progress
    bar on stderr. Mask ``i`` depends only on ``(mask_kind, mask_seed, i)``: the same
    arguments write the same bytes on any machine. A folder that already holds files is
    refused (``JobError``) unless ``cfg.overwrite``: then its earlier masks are deleted first,
    so it holds exactly the new set."""
    from tqdm import tqdm

    _clear_or_refuse(cfg)
    generator = MaskGenerator(cfg.mask_kind, cfg.mask_seed)

    def write_one(index: int) -> tuple[float, np.ndarray | None]:
        """Draw and write mask ``index``; its hole fraction (and the mask, for the preview)."""
        img = generator.image(index)
        write_bytes(join_uri(cfg.output, frozen_mask_name(index)), mask_png(img), endpoint_url=cfg.endpoint_url)
        mask = (np.asarray(img) > 0).astype(np.float32)
        return hole_fraction(mask), (mask if index < cfg.preview else None)

    fractions, preview = [], []
    with ThreadPoolExecutor(WRITE_THREADS) as pool:
        # map() yields in index order, so the preview is always masks 0..preview-1.
        for fraction, mask in tqdm(pool.map(write_one, range(cfg.n)), total=cfg.n,
                                   desc=f"masks {cfg.mask_kind}", file=sys.stderr):
            fractions.append(fraction)
            if mask is not None:
                preview.append(mask)
    uri = ""
    if preview:
        uri = preview_uri(cfg.output)
        write_bytes(uri, mask_grid_png(preview, ncols=PREVIEW_COLUMNS), endpoint_url=cfg.endpoint_url)
    return FrozenMaskSet(cfg.n, float(np.mean(fractions)), uri)
