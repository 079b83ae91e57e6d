"""Mask geometry files from a COCO-style annotation or detection file
(``jobs/coco_masks.py``): one ``OUTPUT/<image file name stem>.json`` per image of the file,
the layout ``jobs/inpaint.py mask_dir=OUTPUT`` reads beside a folder of images."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from lama_core.mask_geometry import GeometryError, geometry_from_coco
from lama_core.storage import join_uri, read_bytes, write_bytes

from pipelines.masks.config import CocoMasksConfig
from pipelines.common.errors import JobError

# Writes to object storage are latency-bound; a few threads keep the PUTs overlapping.
WRITE_THREADS = 8


def geometry_name(file_name: str) -> str:
    """``sub/x.jpg`` -> ``sub/x.json``: the geometry file that ``mask_dir`` matches to the image."""
    head, _, base = file_name.rpartition("/")
    stem = base.rsplit(".", 1)[0] if "." in base else base
    return f"{head}/{stem}.json" if head else f"{stem}.json"


def write_coco_masks(cfg: CocoMasksConfig) -> tuple[int, int]:
    """Write one geometry JSON per image of the COCO file. Returns ``(images, shapes)``.
    Raises ``JobError`` when the file cannot be read or is not COCO-style."""
    endpoint = cfg.endpoint_url or None
    try:
        coco = json.loads(read_bytes(cfg.input, endpoint))
    except (OSError, ValueError) as exc:
        raise JobError(f"cannot read COCO file {cfg.input}: {type(exc).__name__}: {exc}") from exc
    try:
        geometries = geometry_from_coco(coco, list(cfg.categories), cfg.min_score, cfg.shapes)
    except GeometryError as exc:
        raise JobError(f"{cfg.input}: {exc}") from exc
    names = {}
    for file_name in geometries:
        name = geometry_name(file_name)
        if name in names:
            raise JobError(f"{cfg.input}: images {names[name]!r} and {file_name!r} map to the same {name}")
        names[name] = file_name

    def write_one(item: tuple[str, str]) -> None:
        name, file_name = item
        write_bytes(join_uri(cfg.output, name), json.dumps(geometries[file_name]).encode(), endpoint)

    with ThreadPoolExecutor(WRITE_THREADS) as pool:
        list(pool.map(write_one, names.items()))
    shapes = sum(len(g.get(k, [])) for g in geometries.values() for k in ("boxes", "polygons", "rle"))
    return len(geometries), shapes
