"""Small synthetic datasets for the bulk inpainting job tests (seeded, 32-96 px images)."""
from __future__ import annotations

import io
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image


def rng_image(seed: int, height: int, width: int, channels: int = 3) -> np.ndarray:
    """A seeded uint8 image with structure (gradients + noise), ``H x W x C``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([(xx * 255 // max(1, width - 1)), (yy * 255 // max(1, height - 1)), (xx + yy) % 256], -1)
    noise = rng.integers(0, 40, (height, width, 3))
    img = np.clip(base + noise, 0, 255).astype(np.uint8)
    if channels == 4:
        img = np.concatenate([img, rng.integers(0, 256, (height, width, 1), dtype=np.uint8)], -1)
    return img


def box_mask(height: int, width: int, top: int = 8, left: int = 8, size: int = 16, value: int = 255) -> np.ndarray:
    """uint8 ``H x W`` mask, 0 outside a ``size`` square at (top, left), ``value`` inside."""
    mask = np.zeros((height, width), np.uint8)
    mask[top: top + size, left: left + size] = value
    return mask


def encode(array: np.ndarray, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def png16_rgb(array: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one): ``H x W x 3`` uint16 in."""
    height, width = array.shape[:2]
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def blank_png(width: int, height: int) -> bytes:
    """A black 8-bit RGB PNG of ``width x height`` compressed row by row: a 12000 x 12000
    one (432 MB of pixels) is ~0.4 MB and never held decoded here."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    packer, row = zlib.compressobj(9), b"\x00" * (1 + 3 * width)  # filter byte 0 + the row
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    """An uncompressed tar (a WebDataset shard) of ``(name, bytes)`` members, in order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def lama_folder(root: Path) -> dict[str, np.ndarray]:
    """A LaMa-convention folder: ``a.png`` with two masks, ``sub/b.png`` with one, a JPEG
    ``sub/deeper/c.jpg`` with one, and a non-image file. Returns id -> input image."""
    a, b, c = rng_image(1, 48, 64), rng_image(2, 64, 56), rng_image(3, 40, 40)
    write(root / "a.png", encode(a))
    write(root / "a_mask000.png", encode(box_mask(48, 64)))
    write(root / "a_mask001.png", encode(box_mask(48, 64, top=20, left=30, size=12)))
    write(root / "sub" / "b.png", encode(b))
    write(root / "sub" / "b_mask000.png", encode(box_mask(64, 56, top=30)))
    write(root / "sub" / "deeper" / "c.jpg", encode(c, "JPEG", quality=90))
    write(root / "sub" / "deeper" / "c_mask000.png", encode(box_mask(40, 40)))
    write(root / "README.txt", b"not an image")
    return {"a_mask000": a, "a_mask001": a, "sub/b_mask000": b, "sub/deeper/c_mask000": c}


def parquet_shards(root: Path) -> dict[str, np.ndarray]:
    """Two shards: ``with_masks.parquet`` (mask bytes, one null mask) and
    ``no_masks.parquet`` (no mask column). Returns id -> input image."""
    images = {f"img{i}": rng_image(10 + i, 48 + 8 * (i % 2), 64) for i in range(5)}
    ids = ["img0", "img1", "img2"]
    masks = [encode(box_mask(*images["img0"].shape[:2])), encode(box_mask(*images["img1"].shape[:2], top=20)), None]
    root.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": ids, "image": [encode(images[i]) for i in ids],
                             "mask": pa.array(masks, pa.binary())}), root / "with_masks.parquet")
    pq.write_table(pa.table({"id": ["img3", "img4"], "image": [encode(images["img3"]), encode(images["img4"])]}),
                   root / "no_masks.parquet")
    return images
