"""Turn a COCO-style annotation or detection file into mask geometry for ``jobs/inpaint.py``:
``python jobs/coco_masks.py input=faces.json output=URI categories=[face] min_score=0.5``.

Writes ``OUTPUT/<image stem>.json`` (``{"boxes": [[x0, y0, x1, y1], ...]}``, plus COCO
polygons/RLE when the annotations have a segmentation) for every image of the file, then
``jobs/inpaint.py input=PHOTOS mask_dir=OUTPUT`` inpaints those holes; images without
detections get no hole. ``--help`` prints every key.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a plain checkout

from pipelines.masks.config import CocoMasksConfig  # noqa: E402  (light: parsing never waits for torch)
from pipelines.common.cli import run_job  # noqa: E402


def main(cfg: CocoMasksConfig) -> None:
    from pipelines.masks.coco import write_coco_masks

    images, shapes = write_coco_masks(cfg)
    print(f"coco_masks: {shapes} shapes on {images} images from {cfg.input} -> {cfg.output}/*.json")


if __name__ == "__main__":
    run_job(main, CocoMasksConfig)
