"""The sample photos scikit-image ships: the zero-config data of every job.

They are public-domain or freely licensed test images bundled inside the scikit-image
wheel, so jobs run on a laptop with no data and no network.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

# Photographs of varied content and size in ``skimage.data``.
SAMPLE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "motorcycle_left",
                 "motorcycle_right", "retina", "colorwheel", "logo", "hubble_deep_field", "cat", "camera")


# The bulk inpainting job's default input: a few of them, quick to inpaint on a laptop; camera
# stays grayscale (written as shipped) so the default run shows the ``converted`` flag too.
INPAINT_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "camera")
# The default training set of jobs/train.py: scikit-image's colour photographs, minus the
# validation photos below. Not its grayscale images (camera, coins, moon, brick, grass, gravel,
# text, page, clock, ...): those stay held out for judging the model (benchmarks/
# bench_default_quality.py). motorcycle_right is left out: a near-copy of motorcycle_left.
TRAINING_PHOTOS = ("astronaut", "chelsea", "rocket", "immunohistochemistry", "motorcycle_left",
                   "hubble_deep_field", "colorwheel", "logo")
# Held out from the default training set; the validation batch during training.
VALIDATION_PHOTOS = ("coffee", "retina")
# The evaluation job's default data: photos the default model never trained on, no two alike
# (``cat`` is ``chelsea``'s pixels, ``motorcycle_right`` a near-copy of a training photo): the
# two validation photos and scikit-image's grayscale photographs (held out on purpose).
EVALUATION_PHOTOS = VALIDATION_PHOTOS + ("camera", "coins", "moon", "brick", "grass", "gravel", "page", "clock",
                                         "text")


def sample_photos(names: tuple[str, ...] | list[str] = SAMPLE_PHOTOS, rgb: bool = True) -> dict[str, np.ndarray]:
    """``{name: uint8 H x W x 3}`` for the named ``skimage.data`` photos (default: the demo
    set ``SAMPLE_PHOTOS``; grayscale ones replicated to RGB, RGBA ones without alpha; with
    ``rgb=False`` as shipped: ``H x W`` or ``H x W x C``). Names missing from the installed
    scikit-image, or whose data needs a download, are skipped."""
    import skimage.data

    photos = {}
    for name in names:
        loader = getattr(skimage.data, name, None)
        if loader is None:
            continue
        try:
            image = np.asarray(loader())
        except Exception:  # noqa: BLE001 - some datasets need an optional download (pooch); skip them
            continue
        if image.dtype != np.uint8:
            continue
        if not rgb:
            photos[name] = image
            continue
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        photos[name] = np.ascontiguousarray(image[:, :, :3])
    return photos


def png_bytes(image: np.ndarray) -> bytes:
    """uint8 ``H x W x 3`` (or ``H x W``) -> PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def write_sample_shard(uri: str, file_name: str, names: tuple[str, ...] | list[str] = SAMPLE_PHOTOS,
                       rgb: bool = True, endpoint_url: str | None = None) -> str:
    """Write the named sample photos (``sample_photos(names, rgb)``) as the Parquet shard
    ``URI/FILE_NAME`` (columns ``id``: photo name, ``image``: PNG bytes; no masks) unless it
    exists; atomically (``lama_core.storage.write_atomic``). Returns the shard's URI."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lama_core.storage import filesystem_for, join_uri, write_atomic

    target = join_uri(uri, file_name)
    fs, path = filesystem_for(target, endpoint_url)
    if not fs.exists(path):
        photos = sample_photos(names, rgb)
        table = pa.table({"id": list(photos), "image": pa.array([png_bytes(p) for p in photos.values()], pa.binary())})
        buf = io.BytesIO()
        pq.write_table(table, buf)
        write_atomic(fs, path, buf.getvalue())
    return target
