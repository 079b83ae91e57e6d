"""Training crops: random (optionally rescaled) square crops with a random horizontal flip.

A small, deterministic stand-in for the geometric part of the official ``distortions``
albumentations pipeline (PadIfNeeded / RandomCrop / HorizontalFlip; the official affine scale
range 0.7–1.3 is available as ``scale_range``). Photometric jitter is not done here.
All randomness comes from the ``numpy.random.Generator`` passed in, so a seeded generator
gives the same crops on every machine.
"""
from __future__ import annotations

import numpy as np
from PIL import Image


def to_rgb(image: np.ndarray) -> np.ndarray:
    """Any uint8 image as ``H x W x 3`` uint8: grayscale (``H x W`` or ``H x W x 1``) is
    repeated over three channels, RGBA / gray+alpha lose their alpha (no compositing: holes
    are decided by the mask, not by transparency). Raises ``ValueError`` otherwise."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"expected an H x W, H x W x 1/2/3/4 image, got shape {image.shape}")
    channels = image.shape[2]
    if channels in (1, 2):
        return np.repeat(image[:, :, :1], 3, axis=2)
    return image[:, :, :3] if channels == 4 else image


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BICUBIC))


def random_crop(image: np.ndarray, size: int, rng: np.random.Generator, flip: bool = True,
                scale_range: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """A random ``size x size x 3`` uint8 crop of ``image`` (any uint8 layout ``to_rgb`` takes).

    Steps: rescale by a factor drawn uniformly from ``scale_range`` (skipped for ``(1, 1)``);
    if the shorter side is then below ``size``, upscale so it equals ``size`` (bicubic, aspect
    kept); crop at a uniformly random offset; flip left-right with probability 1/2 when
    ``flip``. The draws come from ``rng`` in that order; a fresh array is returned.
    """
    if size < 1:
        raise ValueError(f"crop size must be positive, got {size}")
    image = to_rgb(image)
    h, w = image.shape[:2]
    lo, hi = scale_range
    if (lo, hi) != (1.0, 1.0):
        factor = float(rng.uniform(lo, hi))
        h, w = max(1, round(h * factor)), max(1, round(w * factor))
        image = _resize(image, h, w)
    if min(h, w) < size:
        factor = size / min(h, w)
        # max(): rounding must never leave a side one pixel short of the crop.
        h, w = max(size, round(h * factor)), max(size, round(w * factor))
        image = _resize(image, h, w)
    y = int(rng.integers(0, h - size + 1))
    x = int(rng.integers(0, w - size + 1))
    crop = image[y:y + size, x:x + size]
    if flip and rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop)


__all__ = ["to_rgb", "random_crop"]
