"""Decoding records: encoded image and mask bytes -> arrays, one row per record.

Every job decodes with ``decode_record_image`` and reports a failure with ``failure``: a
record whose bytes are missing or broken becomes an error row whose ``error`` names the
file (``RecordError`` messages as raised; anything unforeseen as ``cannot decode NAME:
Type: message``) and whose arrays are empty (``stage_utils.EMPTY_IMAGE``/``EMPTY_MASK``).

The bulk inpainting job's rows (``decode_record``: the one decoder of its folder, Parquet
and WebDataset input) carry ``DECODED_COLUMNS`` + ``image`` (uint8 H x W x 3) + ``mask``
(uint8 H x W in {0, 1}, 1 = hole); missing numbers travel as -1 / NaN.
"""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np

from lama_core.mask_geometry import dilate_mask
from lama_core.masks import generate_mask

from pipelines.common.task_retries import TASK_RETRIES
from pipelines.records.codecs import RecordError, decode_geometry, decode_image, decode_mask, image_size, scale_mask
from pipelines.common.error_kinds import kind_of_exception
from pipelines.records.shard_plan import done_ids
from pipelines.records.batches import EMPTY_IMAGE, EMPTY_MASK, blob, column_batch, read_many
from pipelines.common.retry import RetryPolicy


@dataclass(frozen=True)
class DecodeOptions:
    """The limits and mask rules every record of every input form is decoded with (folder,
    Parquet, WebDataset): built once from the job's config, passed whole to each decode
    stage, never re-defaulted on the way.

    ``max_input_pixels``: an image over it (read from the header, before decoding) is an
    input error, unless ``resize_over_limit`` and it is a JPEG: then it is decoded reduced
    to fit (flag ``resized``); 0 = no limit. Its mask file may hold up to 3x as many pixels
    (1 byte each). ``mask_kind``: the mask set drawn for a record without a mask (``None``:
    such a record is an error row); ``mask_seed``: its seed. ``mask_dilate``: pixels every
    given hole grows by (drawn masks do not)."""

    max_input_pixels: int
    mask_kind: str | None
    mask_seed: int
    mask_dilate: int
    resize_over_limit: bool = False

    @property
    def max_mask_pixels(self) -> int:
        return 3 * self.max_input_pixels


def failure(exc: BaseException, doing: str, name: str) -> tuple[str, str]:
    """``(error message, error kind)`` of ``exc``, raised while ``doing`` (e.g. ``"decode"``)
    the file ``name``: a ``RecordError``'s own message and kind; anything unforeseen as
    ``cannot DOING NAME: Type: message`` with ``error_kinds.kind_of_exception``."""
    if isinstance(exc, RecordError):
        return str(exc), exc.kind
    return f"cannot {doing} {name}: {type(exc).__name__}: {exc}", kind_of_exception(exc, doing)


def decode_record_image(data: Any, name: str, max_pixels: int = 0, reduce: bool = False) -> tuple[np.ndarray, bool]:
    """A record's image: encoded bytes (or None: ``RecordError`` "no image bytes for NAME")
    -> ``(uint8 H x W x 3, converted)`` via ``codecs.decode_image`` (``max_pixels`` > 0
    bounds the decoded size; ``reduce``: a JPEG over it is decoded reduced)."""
    if data is None:
        raise RecordError(f"no image bytes for {name}")
    return decode_image(bytes(data), name, max_pixels, reduce)


#: Columns of a decoded row of the bulk job and their values when unknown (``column_batch``
#: defaults; the row also carries ``image`` and ``mask``). ``width``/``height``: the input
#: image's own size (its header, EXIF rotation applied); ``processed_width``/
#: ``processed_height``: the size decoded and inpainted (smaller only when reduced).
DECODED_COLUMNS = {
    "id": "", "source": "", "mask_source": "", "status": "ok", "error": "", "error_kind": "", "width": -1, "height": -1,
    "processed_width": -1, "processed_height": -1,
    "hole_fraction": math.nan, "mask_binarized": False, "mask_clipped": False, "converted": False,
    "mask_generated": False, "mask_index": -1, "seconds": 0.0, "reduced": False,
}


def mask_index_for(record_id: str) -> int:
    """Index of the generated mask of a record: the first 4 bytes of ``sha256(id)`` as a
    big-endian integer, so a record gets the same mask in any run, order or shard layout
    (``lama_core.masks.generate_mask(kind, seed, index, h, w)`` redraws it)."""
    return int.from_bytes(hashlib.sha256(record_id.encode("utf-8")).digest()[:4], "big")


def drawn_mask_source(mask_kind: str, mask_seed: int, index: int) -> str:
    """The ``mask_source`` of a drawn mask: ``KIND:seed=S:index=I``, what
    ``lama_core.masks.generate_mask(KIND, S, I, h, w)`` needs to draw it again (the
    evaluation tables name generated masks the same way)."""
    return f"{mask_kind}:seed={mask_seed}:index={index}"


def _unsafe_id(record_id: str) -> bool:
    """Ids become output paths (``images/ID.png``): refuse ones that would leave the folder."""
    return (not record_id or record_id.startswith("/") or "\\" in record_id or "\x00" in record_id
            or any(part in ("", ".", "..") for part in record_id.split("/")))


def decode_record(rid: str, source: str, image_bytes: Any, mask_bytes: Any, mask_source: str,
                  options: DecodeOptions, label: str = "", geometry: Any = None,
                  geometry_source: str = "") -> dict[str, Any]:
    """One decoded row (``DECODED_COLUMNS`` columns + ``image``, ``mask``), or an error row.

    ``source`` / ``mask_source``: URIs of the files (``mask_source`` empty when the mask is
    drawn); ``label`` (e.g. ``(id 'x')`` for rows of a Parquet shard) follows them in error
    messages. ``geometry``: JSON text of mask geometry (``lama_core.mask_geometry``), whose
    holes are added to the mask file's; ``geometry_source`` names where it came from in
    errors (default ``mask_source``, e.g. the ``.json`` of a WebDataset sample whose mask
    image is another member). With neither, the mask is drawn from
    ``options.mask_kind`` (ground truth known). ``options``: the limits (``DecodeOptions``;
    a JPEG reduced to fit has its full-size mask file scaled to match).
    """
    row: dict[str, Any] = {**DECODED_COLUMNS, "id": rid, "source": source, "mask_source": mask_source,
                           "image": EMPTY_IMAGE, "mask": EMPTY_MASK}
    image_name, mask_name = f"{source}{label}", f"{mask_source}{label}"
    start = time.perf_counter()
    try:
        if _unsafe_id(rid):
            raise RecordError(f"id {rid!r} of {source} cannot be used as an output file name")
        if image_bytes is not None:
            try:  # the input's own size, also on the error row of an image over the limit
                row["width"], row["height"] = image_size(bytes(image_bytes))
            except RecordError:
                pass  # unreadable: decoding says why, naming the file
        image, row["converted"] = decode_record_image(image_bytes, image_name, options.max_input_pixels,
                                                      options.resize_over_limit)
        row["processed_height"], row["processed_width"] = image.shape[:2]
        full_size = (row["width"], row["height"])
        row["reduced"] = full_size != (image.shape[1], image.shape[0])
        hole = None
        if mask_bytes is not None:
            # The mask file of an image decoded reduced is as large as the image's own size.
            mask_limit = max(options.max_mask_pixels, full_size[0] * full_size[1]) if row["reduced"] else \
                options.max_mask_pixels
            hole, row["mask_binarized"] = decode_mask(bytes(mask_bytes), mask_name, mask_limit)
            if row["reduced"] and hole.shape == full_size[::-1]:
                hole = scale_mask(hole, image.shape[1], image.shape[0])
            if hole.shape != image.shape[:2]:
                raise RecordError(f"size mismatch: mask {mask_name} is {hole.shape[1]}x{hole.shape[0]} but image "
                                  f"{image_name} is {image.shape[1]}x{image.shape[0]} (WxH)")
        if geometry is not None:
            drawn, row["mask_clipped"] = decode_geometry(geometry, *image.shape[:2],
                                                         f"{geometry_source or mask_source}{label}")
            if drawn is not None:
                hole = drawn if hole is None else hole | drawn
        if hole is not None and options.mask_dilate > 0:
            hole = dilate_mask(hole, options.mask_dilate)
        if hole is None:
            if options.mask_kind is None:
                raise RecordError(f"no mask for {image_name}" + (f" (no shapes in {mask_name})" if geometry else ""))
            row["mask_index"] = mask_index_for(rid)
            # Say exactly which mask was drawn (lama_core.masks.generate_mask redraws it).
            row["mask_source"] = drawn_mask_source(options.mask_kind, options.mask_seed, row["mask_index"])
            hole = generate_mask(options.mask_kind, options.mask_seed, row["mask_index"],
                                 *image.shape[:2]).astype(np.uint8)
            row["mask_generated"] = True
        row["hole_fraction"] = float(hole.mean())
        row["image"], row["mask"] = image, hole
    except Exception as exc:  # RecordError, or anything unforeseen: still one row
        message, kind = failure(exc, "decode", image_name)
        row.update(status="error", error=message, error_kind=kind, image=EMPTY_IMAGE, mask=EMPTY_MASK)
    row["seconds"] = time.perf_counter() - start
    return row


@dataclass(frozen=True)
class FolderDecodeStage:
    """The read + decode stage of folder records (``pipelines.records.listing`` columns), as
    CPU tasks of ``num_cpus`` over batches of ``batch_size`` records: reads the image and
    mask files (``image_fs``/``mask_fs``; transient faults retried per ``retry``) and
    decodes them with ``options``. ``apply`` maps it over a dataset of records."""

    image_fs: fsspec.AbstractFileSystem
    mask_fs: fsspec.AbstractFileSystem
    retry: RetryPolicy
    options: DecodeOptions
    batch_size: int
    num_cpus: float

    def apply(self, ds: Any) -> Any:
        return ds.map_batches(decode_folder_batch, fn_kwargs={"stage": self}, batch_size=self.batch_size,
                              num_cpus=self.num_cpus,
                              max_retries=TASK_RETRIES)


def decode_folder_batch(batch: dict[str, np.ndarray], stage: FolderDecodeStage) -> dict[str, Any]:
    """One batch of ``FolderDecodeStage``. Returns the decoded columns: ``DECODED_COLUMNS`` +
    ``image`` (uint8 H x W x 3) + ``mask`` (uint8 H x W in {0, 1}); error rows carry 0x0
    arrays. Listing errors (e.g. an image without a mask) pass through as error rows;
    images over the pixel limit are refused from their header. Records without a mask
    file (listed so when ``mask_kind`` is set) get a drawn mask; a ``.json`` mask file is
    mask geometry."""
    n = len(batch["id"])
    start = time.perf_counter()
    images = read_many(stage.image_fs, [p for p, e in zip(batch["image_path"], batch["error"]) if p and not e],
                       stage.retry)
    masks = read_many(stage.mask_fs, [p for p, e in zip(batch["mask_path"], batch["error"]) if p and not e],
                      stage.retry)
    read_share = (time.perf_counter() - start) / max(1, n)
    rows = []
    for i in range(n):
        rid, source, mask_uri, listing_error = (str(batch[k][i]) for k in ("id", "source", "mask_source", "error"))
        try:
            if listing_error:
                raise RecordError(listing_error)
            image_bytes = blob(images, batch["image_path"][i], source)
            mask_bytes = blob(masks, batch["mask_path"][i], mask_uri) if batch["mask_path"][i] else None
        except RecordError as exc:
            rows.append({**DECODED_COLUMNS, "id": rid, "source": source, "mask_source": mask_uri, "status": "error",
                         "error": str(exc), "error_kind": exc.kind, "image": EMPTY_IMAGE, "mask": EMPTY_MASK})
            continue
        geometry = None
        if mask_uri.lower().endswith(".json"):  # mask_dir holds geometry (jobs/coco_masks.py)
            geometry, mask_bytes = mask_bytes, None
        row = decode_record(rid, source, image_bytes, mask_bytes, mask_uri, stage.options, geometry=geometry)
        row["seconds"] += read_share
        rows.append(row)
    return column_batch(rows, {**DECODED_COLUMNS, "image": None, "mask": None})


@dataclass(frozen=True)
class ParquetDecodeStage:
    """The decode stage of rows read from Parquet shards (``id``, ``image`` bytes, optional
    ``mask`` bytes, optional ``geometry`` JSON text, ``path`` of the shard), as CPU tasks of
    ``num_cpus`` over batches of ``batch_size`` rows: drops ids in the shard's skip list
    (``skip_lists``: shard path -> file on ``out_fs`` of ids done by an earlier run,
    ``pipelines.records.shard_plan``) and decodes the rest with ``options``.
    ``shard_uris``: shard path -> URI, for ``source``."""

    shard_uris: dict[str, str]
    skip_lists: dict[str, str]
    out_fs: fsspec.AbstractFileSystem
    options: DecodeOptions
    batch_size: int
    num_cpus: float

    def apply(self, ds: Any) -> Any:
        return ds.map_batches(decode_parquet_batch, fn_kwargs={"stage": self}, batch_size=self.batch_size,
                              num_cpus=self.num_cpus,
                              max_retries=TASK_RETRIES)


def decode_parquet_batch(batch: dict[str, np.ndarray], stage: ParquetDecodeStage) -> dict[str, Any]:
    """One batch of ``ParquetDecodeStage``: the same columns as ``decode_folder_batch``;
    ``source`` (and ``mask_source`` when the mask comes from the shard) is the shard's URI;
    a row with neither mask nor geometry gets a drawn mask."""
    rows = []
    masks, geometries = batch.get("mask"), batch.get("geometry")
    for i in range(len(batch["id"])):
        rid = str(batch["id"][i])
        skip = stage.skip_lists.get(str(batch["path"][i]))
        if skip and rid in done_ids(stage.out_fs, skip):
            continue
        shard = stage.shard_uris.get(str(batch["path"][i]), str(batch["path"][i]))
        mask_bytes = masks[i] if masks is not None else None
        geometry = geometries[i] if geometries is not None else None
        given = mask_bytes is not None or geometry is not None
        rows.append(decode_record(rid, shard, batch["image"][i], mask_bytes, shard if given else "", stage.options,
                                  label=f" (id {rid!r})", geometry=geometry))
    return column_batch(rows, {**DECODED_COLUMNS, "image": None, "mask": None})
