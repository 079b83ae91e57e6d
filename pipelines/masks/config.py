"""The typed configs of the mask tools (light: no torch, no Ray)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from lama_core.choices import MASK_KINDS

from pipelines.common.config_kit import at_least_one, choices, non_negative, setting

#: What ``jobs/coco_masks.py`` takes from an annotation (``shapes=``).
COCO_SHAPES = ("auto", "bbox", "segmentation")


@dataclass
class MakeMasksConfig:
    """``jobs/make_masks.py``: freeze a generated mask set to storage."""

    mask_kind: str = setting("thick_512", "mask set: " + " | ".join(MASK_KINDS))
    n: int = setting(100, "number of masks")
    mask_seed: int = setting(0, "seed: mask i depends only on (mask_kind, mask_seed, i)")
    output: str = setting("outputs/masks/thick_512", "folder or URI for 000000_mask000.png, ...")
    preview: int = setting(16, "masks in the preview grid OUTPUT_preview.png (beside the set, so its folder holds "
                               "masks only); 0 = none")
    overwrite: bool = setting(False, "true: replace the masks of a folder that already holds some (a frozen set "
                                     "is never changed by accident: evaluations keyed by it would go stale)")
    endpoint_url: Optional[str] = setting(None, "S3-compatible endpoint; null = AWS_ENDPOINT_URL, else AWS")

    def problems(self) -> list[str]:
        """Every value out of range, one sentence each (empty: the config is good)."""
        return at_least_one(self, "n") + non_negative(self, "mask_seed", "preview") + choices(self, mask_kind=MASK_KINDS)


@dataclass
class CocoMasksConfig:
    """``jobs/coco_masks.py``: one mask geometry file per image of a COCO-style annotation or
    detection file, for ``jobs/inpaint.py mask_dir=``."""

    input: str = setting("annotations.json", "COCO-style JSON: images (id, file_name), annotations (image_id, "
                                             "bbox [x, y, w, h], segmentation?, category_id, score?), categories")
    output: str = setting("outputs/coco_masks", "folder or URI for <image file name without extension>.json")
    categories: List[str] = setting([], "category names (or ids) to keep; empty = all")
    min_score: float = setting(0.0, "drop annotations whose score is below this")
    shapes: str = setting("auto", "auto (segmentation when present, else the box) | bbox | segmentation")
    endpoint_url: Optional[str] = setting(None, "S3-compatible endpoint; null = AWS_ENDPOINT_URL, else AWS")

    def problems(self) -> list[str]:
        """Every value out of range, one sentence each (empty: the config is good)."""
        return non_negative(self, "min_score") + choices(self, shapes=COCO_SHAPES)
