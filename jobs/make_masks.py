"""Freeze a mask set to storage: ``python jobs/make_masks.py mask_kind=thick_512 n=30000 mask_seed=0 output=URI``.

Writes ``000000_mask000.png``, ``000001_mask000.png``, ... (single-channel PNGs, 0 or 255,
255 = hole) under ``output`` (a folder or any fsspec URI), a preview grid of the first
``preview`` masks beside it (``<output>_preview.png``), then prints one summary line. Mask
``i`` depends only on ``(mask_kind, mask_seed, i)``: the same arguments write the same
files (``pipelines/masks/frozen.py``). ``--help`` lists every key.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a plain checkout

from pipelines.common.cli import run_job  # noqa: E402
from pipelines.masks.config import MakeMasksConfig  # noqa: E402  (light: parsing never waits for numpy/Pillow)


def main(cfg: MakeMasksConfig) -> None:
    from pipelines.masks.frozen import write_mask_set

    written = write_mask_set(cfg)
    preview = f" (preview {written.preview_uri})" if written.preview_uri else ""
    print(f"wrote {written.n} {cfg.mask_kind} masks (seed {cfg.mask_seed}), mean hole fraction "
          f"{written.mean_hole_fraction:.3f}, to {cfg.output}{preview}")


if __name__ == "__main__":
    run_job(main, MakeMasksConfig)
