"""Training crops: ``random_crop`` (a random, optionally rescaled, square crop with a random
horizontal flip) and ``distorted_crop``, our NumPy/Pillow version of the official training
augmentation ``distortions`` (advimman/lama ``saicinpainting/training/data/datasets.py``,
``get_transforms``: an albumentations pipeline), step for step:

====================================================  ================================================
official (albumentations / imgaug, p = 0.5 unless said)  here (``Distortions`` defaults)
====================================================  ================================================
``IAAPerspective2(scale=(0.0, 0.06))``                corners moved by N(0, s * crop), s ~ U(0, 0.06)
``IAAAffine2(scale=(0.7, 1.3), rotate=(-40, 40),      the same ranges (shear in degrees, as imgaug),
shear=(-0.1, 0.1))``, reflect border                  one perspective warp with the corners above,
                                                      reflected border
``PadIfNeeded`` + ``RandomCrop`` (p = 1)              the warp samples a crop at a random place;
                                                      images smaller than the crop are upscaled
``OpticalDistortion()``                               not done (a mild barrel distortion, +-5 %)
``HorizontalFlip()``                                  the same
``CLAHE()`` (clip 1-4, 8 x 8 tiles)                   scikit-image CLAHE on the value channel, the
                                                      same clip (x 1/256: its normalisation), 8 x 8
``RandomBrightnessContrast(0.2, 0.2)``                the same (brightness by the maximum, 255)
``HueSaturationValue(5, 30, 5)``                      the same shifts (OpenCV units: hue of 180)
====================================================  ================================================

``grayscale_probability`` (0 = official) turns a crop grey: our addition, so that a model
trained on colour photos also sees grey ones and does not tint grey images.

All randomness comes from the ``numpy.random.Generator`` passed in, so a seeded generator
gives the same crops on every machine.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

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


@dataclass(frozen=True)
class Distortions:
    """Parameters of ``distorted_crop``; the defaults are the official ``distortions``.
    Probabilities are per crop; ranges are ``(low, high)`` of uniform draws."""

    perspective_probability: float = 0.5
    perspective_scale: tuple[float, float] = (0.0, 0.06)
    affine_probability: float = 0.5
    scale: tuple[float, float] = (0.7, 1.3)
    rotate_degrees: tuple[float, float] = (-40.0, 40.0)
    shear_degrees: tuple[float, float] = (-0.1, 0.1)
    flip_probability: float = 0.5
    clahe_probability: float = 0.5
    clahe_clip: tuple[float, float] = (1.0, 4.0)
    brightness_contrast_probability: float = 0.5
    brightness_limit: float = 0.2
    contrast_limit: float = 0.2
    hsv_probability: float = 0.5
    hue_shift: float = 5.0  # OpenCV hue units (a full turn is 180)
    saturation_shift: float = 30.0  # of 255
    value_shift: float = 5.0  # of 255
    grayscale_probability: float = 0.0  # not official (module docstring)


def _reflect_indices(indices: np.ndarray, n: int) -> np.ndarray:
    """Indices mirrored into ``[0, n)`` without repeating the edge (OpenCV's BORDER_REFLECT_101,
    albumentations' and imgaug's default border)."""
    if n == 1:
        return np.zeros_like(indices)
    period = 2 * (n - 1)
    indices = np.mod(indices, period)
    return np.where(indices >= n, period - indices, indices)


def _perspective_coefficients(source: np.ndarray, target: np.ndarray) -> tuple[float, ...]:
    """Pillow's 8 ``PERSPECTIVE`` coefficients mapping output points ``target`` (4 x 2, x y) to
    input points ``source`` (4 x 2): ``X = (a x + b y + c) / (g x + h y + 1)``, ``Y`` alike."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(target, source):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs.extend([u, v])
    return tuple(np.linalg.solve(np.asarray(rows, np.float64), np.asarray(rhs, np.float64)).tolist())


def _warped_crop(image: np.ndarray, size: int, rng: np.random.Generator, params: Distortions) -> np.ndarray:
    """The geometric part: a ``size x size`` crop at a random place, through a random affine
    map and perspective jitter (each with its probability), reflected at the borders."""
    h, w = image.shape[:2]
    scale, angle, shear = 1.0, 0.0, 0.0
    if rng.random() < params.affine_probability:
        scale = float(rng.uniform(*params.scale))
        angle = math.radians(float(rng.uniform(*params.rotate_degrees)))
        shear = math.radians(float(rng.uniform(*params.shear_degrees)))
    # Output corners (x, y) relative to the crop centre, mapped back into the input by the
    # inverse of scale * rotation * shear.
    half = size / 2.0
    corners = np.array([[-half, -half], [half, -half], [half, half], [-half, half]])
    forward = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]) \
        @ np.array([[1.0, math.tan(shear)], [0.0, 1.0]])
    offsets = corners @ np.linalg.inv(forward).T
    if rng.random() < params.perspective_probability:
        sigma = float(rng.uniform(*params.perspective_scale)) * size / scale
        offsets = offsets + rng.normal(0.0, sigma, size=offsets.shape) if sigma > 0 else offsets
    # Crop centre: anywhere the crop's bounding box fits (the whole image if it does not).
    reach = np.abs(offsets).max(axis=0)  # (x, y)
    cx = float(rng.uniform(min(reach[0], w / 2), max(w - reach[0], w / 2)))
    cy = float(rng.uniform(min(reach[1], h / 2), max(h - reach[1], h / 2)))
    source = offsets + [cx, cy]
    # The input window under the warped crop, mirrored where it leaves the image.
    x0, y0 = np.floor(source.min(axis=0)).astype(int) - 2
    x1, y1 = np.ceil(source.max(axis=0)).astype(int) + 2
    window = image[np.ix_(_reflect_indices(np.arange(y0, y1), h), _reflect_indices(np.arange(x0, x1), w))]
    target = corners + half
    coefficients = _perspective_coefficients(source - [x0, y0], target)
    warped = Image.fromarray(np.ascontiguousarray(window)).transform(
        (size, size), Image.Transform.PERSPECTIVE, coefficients, resample=Image.Resampling.BILINEAR)
    return np.asarray(warped)


def _clahe(crop: np.ndarray, clip: float) -> np.ndarray:
    from skimage.exposure import equalize_adapthist

    kernel = max(2, crop.shape[0] // 8), max(2, crop.shape[1] // 8)  # 8 x 8 tiles, as OpenCV's default
    out = equalize_adapthist(crop, kernel_size=kernel, clip_limit=clip / 256.0)  # RGB: on HSV's value
    return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _shift_hsv(crop: np.ndarray, hue: float, saturation: float, value: float) -> np.ndarray:
    from skimage.color import hsv2rgb, rgb2hsv

    hsv = rgb2hsv(crop)
    hsv[..., 0] = np.mod(hsv[..., 0] + hue / 180.0, 1.0)
    hsv[..., 1] = np.clip(hsv[..., 1] + saturation / 255.0, 0, 1)
    hsv[..., 2] = np.clip(hsv[..., 2] + value / 255.0, 0, 1)
    return np.clip(hsv2rgb(hsv) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def crop_function(augmentation: str, size: int, rng: np.random.Generator,
                  grayscale_probability: float = 0.0) -> Callable[[np.ndarray], np.ndarray]:
    """The training crop of ``augmentation`` (``lama_core.choices.AUGMENTATIONS``):
    ``"distortions"`` (``distorted_crop``, with ``grayscale_probability``) or ``"crop"``
    (``random_crop``), as a function of one uint8 ``H x W x 3`` image returning a uint8
    ``size x size x 3`` crop drawn with ``rng``. Raises ``KeyError`` for another name (the
    job configs accept only these)."""
    params = Distortions(grayscale_probability=grayscale_probability)
    return {"distortions": lambda image: distorted_crop(image, size, rng, params),
            "crop": lambda image: random_crop(image, size, rng)}[augmentation]


def distorted_crop(image: np.ndarray, size: int, rng: np.random.Generator,
                   params: Distortions = Distortions()) -> np.ndarray:
    """A ``size x size x 3`` uint8 training crop of ``image`` (any uint8 layout ``to_rgb``
    takes) through the official ``distortions`` augmentation (module docstring): perspective
    and affine warp with reflected borders, random placement, horizontal flip, CLAHE,
    brightness/contrast and hue/saturation/value jitter, then (``grayscale_probability``) grey.
    Images whose shorter side is below ``size`` are first upscaled to it (bicubic). Every
    draw comes from ``rng``; a fresh array is returned."""
    if size < 1:
        raise ValueError(f"crop size must be positive, got {size}")
    image = to_rgb(image)
    h, w = image.shape[:2]
    if min(h, w) < size:
        factor = size / min(h, w)
        image = _resize(image, max(size, round(h * factor)), max(size, round(w * factor)))
    crop = _warped_crop(image, size, rng, params)
    if rng.random() < params.flip_probability:
        crop = crop[:, ::-1]
    if rng.random() < params.clahe_probability:
        crop = _clahe(crop, float(rng.uniform(*params.clahe_clip)))
    if rng.random() < params.brightness_contrast_probability:
        alpha = 1.0 + float(rng.uniform(-params.contrast_limit, params.contrast_limit))
        beta = 255.0 * float(rng.uniform(-params.brightness_limit, params.brightness_limit))
        crop = np.clip(crop.astype(np.float32) * alpha + beta + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < params.hsv_probability:
        crop = _shift_hsv(crop, float(rng.uniform(-params.hue_shift, params.hue_shift)),
                          float(rng.uniform(-params.saturation_shift, params.saturation_shift)),
                          float(rng.uniform(-params.value_shift, params.value_shift)))
    if rng.random() < params.grayscale_probability:
        luma = crop.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        crop = np.repeat(np.clip(luma + 0.5, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)
    return np.ascontiguousarray(crop)


__all__ = ["to_rgb", "random_crop", "Distortions", "distorted_crop"]
