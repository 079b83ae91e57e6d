"""Decoding and encoding of images and masks for the bulk jobs, one record at a time.

One image decoder and one mask reader for every pipeline: whatever the file holds (RGB,
grayscale, palette, RGBA, 16-bit, JPEG/PNG/WebP), the pipeline sees uint8 ``H x W x 3``
images and uint8 ``H x W`` masks in {0, 1} (1 = hole), plus flags saying what had to be
repaired on the way. An EXIF Orientation tag is applied, as image viewers do. Every
failure raises ``RecordError`` whose message names the file, so a stage can turn it into
an error row instead of failing the whole job.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from lama_core.image_arrays import binarize_mask, image_to_float, mask_to_float, to_uint8
from lama_core.mask_geometry import GeometryError, has_shapes, parse_geometry, rasterize_geometry

# Pillow modes that hold more than 8 bits per sample (16-bit PNG grayscale and 32-bit int).
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")

# Pillow's own decompression-bomb check (a warning over 89 MP, an error over 179 MP) would
# refuse a 180 MP image a user allowed with max_input_pixels; ``_reduce_or_refuse`` checks
# the same header against the job's limit before any pixel is decoded instead.
Image.MAX_IMAGE_PIXELS = None


class RecordError(Exception):
    """One record cannot be processed; the message names the file and the reason.
    ``kind`` (``pipelines.common.error_kinds``): ``input`` unless the cause lies elsewhere
    (``storage``: the file could not be fetched; ``model``)."""

    def __init__(self, message: str, kind: str = "input"):
        super().__init__(message)
        self.kind = kind


def _describe(exc: Exception) -> str:
    if isinstance(exc, UnidentifiedImageError):
        return "not a recognised image format"  # Pillow's own message shows a BytesIO repr
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _native(arr: np.ndarray) -> np.ndarray:
    """Big-endian 16-bit arrays (Pillow's 'I;16B') to native byte order, which the
    ``lama_core.inpainter`` normalisers expect."""
    return arr if arr.dtype.isnative else arr.astype(arr.dtype.newbyteorder("="))


def _reduce_or_refuse(img: Image.Image, what: str, name: str, max_pixels: int, reduce: bool) -> None:
    """Check the header's size against ``max_pixels`` before any pixel is decoded: over it,
    a JPEG is set to decode at 1/2, 1/4 or 1/8 scale when ``reduce`` (libjpeg's DCT
    scaling: the full image is never held); anything else raises ``RecordError`` (kind
    ``input``)."""
    width, height = img.size
    if not max_pixels or width * height <= max_pixels:
        return
    if reduce and img.format == "JPEG":
        for scale in (2, 4, 8):
            if -(-width // scale) * -(-height // scale) <= max_pixels:
                img.draft(img.mode, (-(-width // scale), -(-height // scale)))
                return
    hint = "" if reduce or img.format != "JPEG" else ", or resize_over_limit=true to decode it reduced,"
    raise RecordError(f"{what} {name} is {width}x{height} = {width * height} pixels, over max_input_pixels="
                      f"{max_pixels} (checked from the header, before decoding; raise max_input_pixels{hint} and "
                      "rerun with retry_errors=true to process it)")


def _open(data: bytes, what: str, name: str, max_pixels: int = 0, reduce: bool = False) -> tuple[Image.Image, bool]:
    """Open and fully decode ``data``, so truncated or corrupt files fail here, not later.
    Returns the image and whether the file stores 16 bits per sample. ``max_pixels`` > 0:
    the size in the header is checked first (``_reduce_or_refuse``, with ``reduce``), so a
    small file that declares a huge image never allocates it."""
    if not data:
        raise RecordError(f"cannot decode {what} {name}: empty file")
    try:
        img = Image.open(io.BytesIO(data))
        # Pillow reads 16-bit RGB PNGs as 8-bit RGB; only the raw mode of the tile tells.
        wide = any(";16" in str(getattr(tile, "args", "")) for tile in img.tile)
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, zlib.error, ...
        raise RecordError(f"cannot decode {what} {name}: {_describe(exc)}") from exc
    _reduce_or_refuse(img, what, name, max_pixels, reduce)
    try:
        img.load()
        # Camera JPEGs store pixels unrotated plus an EXIF Orientation tag; viewers (and
        # the masks people draw on them) use the rotated picture, so do we.
        ImageOps.exif_transpose(img, in_place=True)
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, zlib.error, ...
        raise RecordError(f"cannot decode {what} {name}: {_describe(exc)}") from exc
    return img, wide


def decode_image(data: bytes, name: str, max_pixels: int = 0, reduce: bool = False) -> tuple[np.ndarray, bool]:
    """Encoded image bytes -> ``(uint8 H x W x 3 RGB array, converted)``.

    ``converted`` is True when the file was not 8-bit RGB (grayscale, palette, RGBA/LA whose
    alpha is dropped, CMYK, 16-bit). ``name`` (a URI or path) is used in error messages.
    ``max_pixels`` > 0: an image whose header declares more pixels is refused before
    decoding; with ``reduce``, a JPEG is decoded at the largest 1/2, 1/4 or 1/8 scale that
    fits instead (the array is then smaller than the file's size). Raises ``RecordError``.
    """
    img, wide = _open(data, "image", name, max_pixels, reduce)
    try:
        if img.mode == "RGB":
            return np.asarray(img), wide
        if img.mode in _WIDE_MODES:
            # The same arithmetic as the Inpainter's: value / 65535, rounded to 8 bits.
            return to_uint8(image_to_float(_native(np.asarray(img)))), True
        return np.asarray(img.convert("RGB")), True
    except Exception as exc:
        raise RecordError(f"cannot convert image {name} (mode {img.mode}) to RGB: {_describe(exc)}") from exc


def decode_mask(data: bytes, name: str, max_pixels: int = 0) -> tuple[np.ndarray, bool]:
    """Encoded mask bytes -> ``(uint8 H x W array in {0, 1}, binarized)``.

    Colour masks use their first channel, as ``lama_core.inpainter.mask_to_float`` does.
    A mask with transparency whose colour channels hold one value everywhere but whose
    alpha varies (strokes painted on a transparent layer) marks its hole in the alpha
    channel: the hole is where it is opaque (alpha > 0.5). Holes are ``mask > 0.5`` on the
    [0, 1] scale (the Inpainter's rule). ``binarized`` is True when the file had values
    other than 0 and its maximum (e.g. a JPEG mask or anti-aliased edges). ``max_pixels``
    > 0: refused from the header when larger. Raises ``RecordError``.
    """
    img, _ = _open(data, "mask", name, max_pixels)
    try:
        if img.mode == "P" and "transparency" in img.info:
            img = img.convert("RGBA")
        if img.mode in ("1", "P", "PA"):
            img = img.convert("LA" if img.mode == "PA" else "L")
        arr = _native(np.asarray(img))
        if arr.ndim == 3:
            colour = arr[:, :, 0]
            alpha = arr[:, :, -1] if img.mode in ("RGBA", "LA", "La", "RGBa") else None
            if alpha is not None and colour.min() == colour.max() and alpha.min() != alpha.max():
                colour = alpha  # the hole is drawn only in the alpha channel
            arr = colour
        if arr.dtype == np.int32:  # Pillow's 'I' mode
            arr = np.clip(arr, 0, 65535).astype(np.uint16)
        peak = arr.max(initial=0)
        binarized = bool(np.any((arr != 0) & (arr != peak)))
        hole = binarize_mask(mask_to_float(arr)).astype(np.uint8)
    except Exception as exc:
        raise RecordError(f"cannot read mask {name} (mode {img.mode}): {_describe(exc)}") from exc
    return hole, binarized


def decode_geometry(data: str | bytes, height: int, width: int, name: str) -> tuple[np.ndarray | None, bool]:
    """A record's mask geometry (JSON text: boxes, COCO polygons, COCO RLE; see
    ``lama_core.mask_geometry``) -> ``(uint8 H x W hole mask in {0, 1}, clipped)`` on an
    ``height x width`` image; ``(None, False)`` when the JSON holds no shape keys (e.g. only
    img2dataset's url/caption). ``clipped``: a box reached past the image and was cut to
    it. Raises ``RecordError`` naming ``name`` and the bad shape."""
    try:
        geometry = parse_geometry(data)
        if not has_shapes(geometry):
            return None, False
        got = rasterize_geometry(geometry, height, width)
    except GeometryError as exc:
        raise RecordError(f"bad mask geometry in {name}: {exc}") from exc
    return got.mask, got.clipped


def encode_image(image: np.ndarray, fmt: str = "png", png_compress_level: int = 1, jpeg_quality: int = 95) -> bytes:
    """uint8 ``H x W x 3`` -> PNG or JPEG bytes.

    PNG defaults to zlib level 1: about 3x faster than Pillow's default level 6 for ~10%
    larger files, and encoding is the most expensive CPU step of a GPU job. JPEG uses
    ``jpeg_quality`` with 4:4:4 chroma at quality >= 90 (inpainted edges are fine detail).
    """
    buf = io.BytesIO()
    pil = Image.fromarray(np.ascontiguousarray(image), mode="RGB")
    if fmt == "png":
        pil.save(buf, format="PNG", compress_level=png_compress_level)
    elif fmt in ("jpg", "jpeg"):
        pil.save(buf, format="JPEG", quality=jpeg_quality, subsampling=0 if jpeg_quality >= 90 else 2)
    else:
        raise ValueError(f"output format must be png or jpg, got {fmt!r}")
    return buf.getvalue()


def output_extension(fmt: str) -> str:
    """File extension (with the dot) written for ``fmt`` (``png`` or ``jpg``)."""
    return ".jpg" if fmt in ("jpg", "jpeg") else ".png"


def image_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` from the file's header (nothing decoded; EXIF rotation applied
    as ``decode_image`` does). Raises ``RecordError`` when unreadable."""
    try:
        img = Image.open(io.BytesIO(data))
        width, height = img.size
        orientation = img.getexif().get(0x0112, 1)
    except Exception as exc:
        raise RecordError(f"cannot decode image: {_describe(exc)}") from exc
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def scale_mask(hole: np.ndarray, width: int, height: int) -> np.ndarray:
    """uint8 ``H x W`` hole mask in {0, 1} -> ``height x width`` by nearest neighbour (for an
    image that was decoded reduced)."""
    return np.asarray(Image.fromarray(hole * 255).resize((width, height), Image.NEAREST)) // 255
