"""``Inpainter``: run a LaMa generator on images of any size.

Image in: uint8 ``H x W x 3`` arrays (also ``H x W`` grayscale, ``H x W x 4`` RGBA whose
alpha is dropped, and uint16 ``H x W [x C]`` 16-bit images), PIL images, or float tensors
``3 x H x W`` in [0, 1]. Mask in: ``H x W`` arrays (uint8 0..255, bool, or float in [0, 1]),
PIL images (converted to 'L'), or float tensors ``1 x H x W`` / ``H x W``; 1 / 255 = hole.
A uint8 mask whose maximum is 1 is read as a 0/1 mask.

Masks are binarised with ``mask > threshold`` on the [0, 1] scale (default 0.5, i.e. uint8
values of 128 and above are holes). The generator sees ``image * (1 - mask)`` and the
mask, padded symmetrically to a multiple of 8 (as the official predictor does); the output
is cropped back, and only hole pixels take the generator's values: every known pixel of
the uint8 result is the input's own pixel, bit for bit.

Images above ``max_pixels`` are downscaled (area) to fit, inpainted, upscaled (bicubic)
and pasted into the original at the hole pixels only; their results say ``resized=True``.
"""
from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .cpu_allocator import keep_freed_memory
from .fast_inference import optimize_for_inference
from .ffc import FFCResNetGenerator

DEFAULT_MASK_THRESHOLD = 0.5
#: ``precision`` names the Inpainter (and every job that runs one) accepts, and their dtypes.
PRECISION_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


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
    if torch.is_tensor(image):
        if image.ndim != 3 or image.shape[0] != 3 or not image.is_floating_point():
            raise InpaintInputError(f"tensor images must be float 3xHxW in [0, 1], got {image.dtype} {tuple(image.shape)}")
        return image.detach().to("cpu", torch.float32).permute(1, 2, 0).numpy()
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
    if torch.is_tensor(mask):
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


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad ``N x C x H x W`` at the bottom/right to multiples of ``multiple`` with symmetric
    (edge-including mirror) padding, numpy's ``mode='symmetric'`` as the official code uses."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph:
        x = x.index_select(-2, torch.as_tensor(np.pad(np.arange(h), (0, ph), mode="symmetric"), device=x.device))
    if pw:
        x = x.index_select(-1, torch.as_tensor(np.pad(np.arange(w), (0, pw), mode="symmetric"), device=x.device))
    return x


def is_grey(image: np.ndarray, hole: np.ndarray) -> bool:
    """Whether every known pixel (``hole == 0``) of a uint8 ``H x W x 3`` image has its three
    channels within 1 level of each other (a grey image stored as RGB)."""
    known = image[hole == 0].astype(np.int16)
    return known.size > 0 and int((known.max(axis=1) - known.min(axis=1)).max()) <= 1


def grey_of(image: np.ndarray) -> np.ndarray:
    """uint8 ``H x W x 3`` -> the same shape, each pixel its luma (ITU-R 601) in all three channels."""
    luma = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.repeat(np.clip(luma + 0.5, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)


@dataclass
class InpaintResult:
    """One inpainted image: uint8 ``H x W x 3``, and whether it went through the pixel budget."""

    image: np.ndarray
    resized: bool


class Inpainter:
    """Runs a generator over images of arbitrary sizes, in batches of equal-sized images.

    ``generator``: an ``FFCResNetGenerator`` (put into eval mode and moved to ``device``).
    ``batch_size``: images per forward pass. ``precision``: ``"fp32"``, or ``"bf16"`` /
    ``"fp16"``: the (folded) generator's weights and activations in that type, FFTs kept in
    fp32 (``FourierUnit``). bf16 is the reduced-precision CPU mode (about 2x on CPUs with
    AVX512-BF16/AMX, within ~60 dB PSNR of fp32: ``benchmarks/RESULTS.md``); fp16 is for GPUs. ``max_pixels``: pixel budget per image
    (None = unlimited). ``mask_threshold``: see the module docstring. ``fold_batchnorm``:
    run ``lama_core.fast_inference.fold_batchnorm``'s copy of the generator (same function
    within float rounding, fewer memory passes); ``channels_last``: NHWC layout.
    ``cpu_kernels``: ``lama_core.fast_inference.use_cpu_kernels`` (Winograd F(2×2, 3×3) for
    the ResNet blocks' 3×3 FFCs, space-to-depth for the output conv; same numerics, ~1.2x
    faster on CPU); None = on for CPU when folding, off elsewhere. It implies channels-last.
    On CPU it calls ``lama_core.cpu_allocator.keep_freed_memory`` (process-wide: freed
    buffers of up to 32 MiB are reused rather than returned to the OS).
    ``keep_grey``: when every known pixel of an image is neutral grey (its three channels
    within 1 level), its fill is made grey too (the output's luma in all three channels):
    a generator trained on colour photos may tint a grey image's holes, and no grey photo
    has a colour hole.
    """

    def __init__(self, generator: FFCResNetGenerator, device: str | torch.device = "cpu", batch_size: int = 4,
                 precision: str = "fp32", mask_threshold: float = DEFAULT_MASK_THRESHOLD,
                 max_pixels: int | None = None, channels_last: bool = False, fold_batchnorm: bool = True,
                 cpu_kernels: bool | None = None, keep_grey: bool = True):
        self.keep_grey = keep_grey
        if precision not in PRECISION_DTYPES:
            raise ValueError(f"precision must be fp32, bf16 or fp16, got {precision!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        if self.device.type == "cpu":
            keep_freed_memory()  # reuse freed activation buffers instead of faulting in new pages
        if cpu_kernels is None:
            cpu_kernels = fold_batchnorm and self.device.type == "cpu"
        elif cpu_kernels and not fold_batchnorm:
            raise ValueError("cpu_kernels=True works on the folded generator: keep fold_batchnorm=True")
        self.channels_last = channels_last or cpu_kernels
        # Always a copy: eval mode, device, dtype and layout never change the caller's module.
        if fold_batchnorm:
            generator = optimize_for_inference(generator, channels_last=self.channels_last, cpu_kernels=cpu_kernels)
        else:
            generator = copy.deepcopy(generator)
            if self.channels_last:
                generator = generator.to(memory_format=torch.channels_last)
        self.dtype = PRECISION_DTYPES[precision]
        if precision == "bf16" and self.device.type == "cpu" and not native_bf16_cpu():
            warnings.warn("precision='bf16' on a CPU without AVX512-BF16 or AMX runs emulated, several times "
                          "slower than fp32 (10x measured with oneDNN held to AVX2): use precision='fp32' here",
                          RuntimeWarning, stacklevel=2)
        if self.dtype != torch.float32:
            # Casting weights once beats autocast re-casting them every call.
            generator = generator.to(self.dtype)
        self.generator = generator.eval().to(self.device)
        self.batch_size = batch_size
        self.precision = precision
        self.mask_threshold = mask_threshold
        self.max_pixels = max_pixels
        self.multiple = max(8, self.generator.size_multiple)

    def predict(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The generator's blended output for a batch.

        ``image``: float ``N x 3 x H x W`` in [0, 1]; ``mask``: float ``N x 1 x H x W`` in {0, 1}.
        Returns float32 ``N x 3 x H x W`` in [0, 1] = ``mask * output + (1 - mask) * image``.
        Any H, W (padded internally).
        """
        h, w = image.shape[-2:]
        image = image.to(self.device, torch.float32)
        mask = mask.to(self.device, torch.float32)
        x = pad_to_multiple(torch.cat([image * (1 - mask), mask], dim=1), self.multiple)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            out = self.generator(x.to(self.dtype))
        out = out[:, :, :h, :w].float()
        return mask * out + (1 - mask) * image

    def inpaint(self, images: Sequence[Any], masks: Sequence[Any]) -> list[InpaintResult]:
        """Inpaint a list of images with their masks (see module docstring for accepted
        forms). Returns one ``InpaintResult`` per image, in order. Raises
        ``InpaintInputError`` naming the index on a size mismatch or bad type."""
        if len(images) != len(masks):
            raise InpaintInputError(f"{len(images)} images but {len(masks)} masks")
        prepared = []
        for i, (img, msk) in enumerate(zip(images, masks)):
            rgb = image_to_float(img)
            hole = binarize_mask(mask_to_float(msk), self.mask_threshold)
            if rgb.shape[:2] != hole.shape:
                raise InpaintInputError(f"image {i} is {rgb.shape[1]}x{rgb.shape[0]} but its mask is "
                                        f"{hole.shape[1]}x{hole.shape[0]} (WxH)")
            original = img if isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim == 3 \
                and img.shape[2] == 3 else to_uint8(rgb)
            prepared.append((rgb, hole, original))
        results: list[InpaintResult | None] = [None] * len(prepared)
        # Batch images of equal (possibly budget-reduced) size together.
        groups: dict[tuple[int, int], list[int]] = {}
        for i, (rgb, _, _) in enumerate(prepared):
            groups.setdefault(self._work_size(*rgb.shape[:2]), []).append(i)
        for size, indices in groups.items():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start: start + self.batch_size]
                image = torch.stack([self._resize(torch.from_numpy(prepared[i][0]).permute(2, 0, 1), size, "area")
                                     for i in chunk])
                mask = torch.stack([self._resize(torch.from_numpy(prepared[i][1])[None], size, "area")
                                    for i in chunk])
                mask = (mask > self.mask_threshold).float()
                out = self.predict(image, mask).cpu()
                for j, i in enumerate(chunk):
                    rgb, hole, original = prepared[i]
                    pred = out[j]
                    resized = tuple(pred.shape[-2:]) != rgb.shape[:2]
                    if resized:
                        pred = F.interpolate(pred[None], size=rgb.shape[:2], mode="bicubic", align_corners=False)[0]
                    filled = to_uint8(pred.permute(1, 2, 0).numpy())
                    if self.keep_grey and is_grey(original, hole):
                        filled = grey_of(filled)
                    results[i] = InpaintResult(np.where(hole[:, :, None] > 0, filled, original), resized)
        return results  # type: ignore[return-value]

    def __call__(self, images: Sequence[Any], masks: Sequence[Any]) -> list[np.ndarray]:
        """Like ``inpaint`` but returns only the uint8 ``H x W x 3`` images."""
        return [r.image for r in self.inpaint(images, masks)]

    def _work_size(self, h: int, w: int) -> tuple[int, int]:
        if self.max_pixels is None or h * w <= self.max_pixels:
            return h, w
        scale = math.sqrt(self.max_pixels / (h * w))
        return max(1, int(h * scale)), max(1, int(w * scale))

    @staticmethod
    def _resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
        if tuple(x.shape[-2:]) == size:
            return x
        return F.interpolate(x[None], size=size, mode=mode)[0]


def native_bf16_cpu() -> bool:
    """True when this CPU computes bf16 in hardware (AVX512-BF16 or AMX) and oneDNN may use
    it (``ONEDNN_MAX_CPU_ISA`` can forbid that); unknown counts as True."""
    try:
        hardware = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
        return bool(hardware and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # private probes moved: do not block bf16
        return True


def to_uint8(image: np.ndarray) -> np.ndarray:
    """float ``H x W x C`` in [0, 1] -> uint8, rounded to nearest (not truncated)."""
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
