"""Decoding of the bulk jobs' inputs: EXIF orientation, and the RGB/mask contract."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pipelines.records.codecs import RecordError, decode_image, decode_mask


def _jpeg_with_orientation(pixels: np.ndarray, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


def test_exif_orientation_is_applied_like_a_viewer():
    stored = np.zeros((20, 40, 3), np.uint8)  # stored landscape: 20 rows x 40 columns
    stored[:, :20] = (255, 0, 0)  # left half red
    # Orientation 6: the viewer rotates 90° clockwise, so the picture is portrait and the
    # stored left half ends up on top.
    image, converted = decode_image(_jpeg_with_orientation(stored, 6), "photo.jpg")
    assert image.shape == (40, 20, 3) and not converted
    assert image[:15, :, 0].mean() > 200 and image[25:, :, 0].mean() < 50
    upright, _ = decode_image(_jpeg_with_orientation(stored, 1), "upright.jpg")
    assert upright.shape == (20, 40, 3)


def test_mask_from_a_rotated_jpeg_follows_the_same_rotation():
    stored = np.zeros((20, 40), np.uint8)
    stored[:, :10] = 255
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 8  # viewer rotates 90° counter-clockwise: the stored left band goes to the bottom
    Image.fromarray(stored).save(buf, "JPEG", quality=100, exif=exif.tobytes())
    hole, _ = decode_mask(buf.getvalue(), "mask.jpg")
    assert hole.shape == (40, 20)
    assert hole[-8:].mean() > 0.9 and hole[:25].mean() < 0.1


def test_corrupt_file_names_the_file():
    with pytest.raises(RecordError, match="broken.png"):
        decode_image(b"\x89PNG\r\n\x1a\n" + b"\0" * 20, "broken.png")
