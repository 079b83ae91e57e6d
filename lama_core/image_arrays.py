"""Images and masks as the ``Inpainter`` takes them, normalised to float NumPy arrays, and
results back to uint8; NumPy and Pillow only, so that the decode and encode stages of the
jobs never load torch (seconds per worker process).
"""
from __future__ import annotations

import sys
from typing import Any

import numpy as np
from PIL import Image

DEFAULT_MASK_THRESHOLD = 0.5


def _is_tensor(x: Any) -> bool:
    """Whether ``x`` is a torch tensor, without importing torch: one can only exist once
    torch is loaded."""
    torch = sys.modules.get("torch")
    return torch is not None and torch.is_tensor(x)


class InpaintInputError(ValueError):
    """An image or mask has an unsupported type, dtype or shape, or sizes disagree."""


def image_to_float(image: Any) -> np.ndarray:
    """Normalise one image to float32 ``H x W x 3`` in [0, 1].

    Accepts uint8 / uint16 arrays (``H x W``, ``H x W x 1``, ``x 3`` or ``x 4``; alpha is
    dropped), float arrays in [0, 1], PIL images and float tensors ``3 x H x W``.
    Raises ``InpaintInputError`` for anything else.
    """
    if isinstance(image, Image.Image):
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            image = np.asarray(image)
        else:
            image = np.asarray(image.convert("RGB"))
    if _is_tensor(image):
        if image.ndim != 3 or image.shape[0] != 3 or not image.is_floating_point():
            raise InpaintInputError(f"tensor images must be float 3xHxW in [0, 1], got {image.dtype} {tuple(image.shape)}")
        return image.detach().float().cpu().permute(1, 2, 0).numpy()
    if not isinstance(image, np.ndarray):
        raise InpaintInputError(f"unsupported image type {type(image).__name__}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise InpaintInputError(f"image must be HxW, HxWx1, HxWx3 or HxWx4, got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InpaintInputError(f"empty image of shape {image.shape}")
    if image.dtype == np.uint8:
        out = image.astype(np.float32) / 255.0
    elif image.dtype == np.uint16:
        out = image.astype(np.float32) / 65535.0
    elif image.dtype in (np.float32, np.float64):
        out = image.astype(np.float32)
    elif image.dtype in (np.int32, np.int64):  # PIL's 'I' mode for 16-bit PNGs
        out = np.clip(image, 0, 65535).astype(np.float32) / 65535.0
    else:
        raise InpaintInputError(f"unsupported image dtype {image.dtype} (uint8, uint16 or float in [0, 1])")
    if out.shape[2] == 4:
        out = out[:, :, :3]
    elif out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    return out


def mask_to_float(mask: Any) -> np.ndarray:
    """Normalise one mask to float32 ``H x W`` in [0, 1] (not yet binarised).

    uint8 masks are read on the 0..255 scale, unless their maximum is 1 (a 0/1 mask);
    bool masks as 0/1; float masks as given. Colour masks (``H x W x C``) use their first
    channel. Raises ``InpaintInputError`` for other types.
    """
    if isinstance(mask, Image.Image):
        mask = np.asarray(mask.convert("L"))
    if _is_tensor(mask):
        mask = mask.detach().to("cpu").numpy()
        if mask.ndim == 3 and mask.shape[0] == 1:
            mask = mask[0]
    if not isinstance(mask, np.ndarray):
        raise InpaintInputError(f"unsupported mask type {type(mask).__name__}")
    if mask.ndim == 3:
        mask = mask[:, :, 0]
    if mask.ndim != 2:
        raise InpaintInputError(f"mask must be HxW, got shape {mask.shape}")
    if mask.dtype == np.bool_:
        return mask.astype(np.float32)
    if mask.dtype == np.uint8:
        return mask.astype(np.float32) / (1.0 if mask.max(initial=0) <= 1 else 255.0)
    if mask.dtype == np.uint16:
        return mask.astype(np.float32) / 65535.0
    if mask.dtype in (np.float32, np.float64):
        return mask.astype(np.float32)
    raise InpaintInputError(f"unsupported mask dtype {mask.dtype} (uint8, bool or float in [0, 1])")


def binarize_mask(mask: np.ndarray, threshold: float = DEFAULT_MASK_THRESHOLD) -> np.ndarray:
    """``H x W`` float in [0, 1] -> ``H x W`` float32 in {0, 1} (1 = hole, ``mask > threshold``)."""
    return (mask > threshold).astype(np.float32)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """float ``H x W x C`` in [0, 1] -> uint8, rounded to nearest (not truncated)."""
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
