"""``Inpainter``: run a LaMa generator on images of any size.

Image in: uint8 ``H x W x 3`` arrays (also ``H x W`` grayscale, ``H x W x 4`` RGBA whose
alpha is dropped, and uint16 ``H x W [x C]`` 16-bit images), PIL images, or float tensors
``3 x H x W`` in [0, 1]. Mask in: ``H x W`` arrays (uint8 0..255, bool, or float in [0, 1]),
PIL images (converted to 'L'), or float tensors ``1 x H x W`` / ``H x W``; 1 / 255 = hole.
A uint8 mask whose maximum is 1 is read as a 0/1 mask.

Masks are binarised with ``mask > threshold`` on the [0, 1] scale (default 0.5, i.e. uint8
values of 128 and above are holes). The generator sees ``image * (1 - mask)`` and the
mask, padded symmetrically to a multiple of 8 (as the official predictor does; maps
smaller than twice the generator's size multiple, e.g. 1×1 or 5×7, are mirror-padded up to
it); the output is cropped back, and only hole pixels take the generator's values: every
known pixel of the uint8 result is the input's own pixel, bit for bit.

Where the generator runs is the ``hd_strategy``: ``"windows"`` (default) inpaints images
longer than 800 px in a context window around each hole region at native resolution
(``lama_core.hd_strategy``), smaller ones as a full frame; ``"full"`` always runs the full
frame. Windows of all images in a call are batched together by size. A generator input
(window or frame) above ``max_pixels`` is downscaled (area) to fit, inpainted, upscaled
(bicubic) and pasted at the hole pixels only; its image's result says ``resized=True``.
Large inputs are never held as one float copy: masks become bool, uint8 images stay
uint8, and resizing runs in strips (``lama_core.resample``).

What runs each batch is the ``backend``: ``"torch"`` (the generator itself), or the exported
ONNX graph (``lama_core.onnx_export``: padding, generator and compositing in one graph) on
``"onnxruntime"`` or ``"openvino"``. Windows, batching and the pasting of hole pixels are the
same for all three. A reduced-precision batch whose output is non-finite or black in the
holes is rerun in fp32 (``Inpainter.predict_checked``; ``InpaintResult.precision_fallback``).
"""
from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .backends import backend_problem
from .choices import AUTO_PRECISION, DEFAULT_HD_STRATEGY, HD_STRATEGIES, PRECISION_CHOICES, PRECISIONS, choice_problem
from .cpu_allocator import keep_freed_memory
from .fast_inference import optimize_for_inference
from .ffc import FFCResNetGenerator
from .hd_strategy import Window, WindowOptions, own_holes, plan_windows
from .image_arrays import DEFAULT_MASK_THRESHOLD, InpaintInputError, image_to_float, mask_to_float, to_uint8
from .onnx_export import export_onnx_bytes
from .onnx_sessions import onnxruntime_session, openvino_session
from .resample import area_downscale, bicubic_strips, to_float_chw

#: ``precision`` names the Inpainter (and every job that runs one) accepts, and their dtypes.
PRECISION_DTYPES = dict(zip(PRECISIONS, (torch.float32, torch.bfloat16, torch.float16)))


def pad_to_multiple(x: torch.Tensor, multiple: int, minimum: int = 0) -> torch.Tensor:
    """Pad ``N x C x H x W`` at the bottom/right to multiples of ``multiple`` (and at least
    ``minimum``) with symmetric (edge-including mirror) padding, numpy's ``mode='symmetric'``
    as the official code uses; a pad longer than the map mirrors it again (a 1-pixel map
    repeats its pixel), so any size >= 1 works."""
    h, w = x.shape[-2:]
    ph, pw = max((-h) % multiple, minimum - h), max((-w) % multiple, minimum - w)
    ph, pw = ph + (-(h + ph)) % multiple, pw + (-(w + pw)) % multiple
    if ph:
        x = x.index_select(-2, torch.as_tensor(np.pad(np.arange(h), (0, ph), mode="symmetric"), device=x.device))
    if pw:
        x = x.index_select(-1, torch.as_tensor(np.pad(np.arange(w), (0, pw), mode="symmetric"), device=x.device))
    return x


def failed_output(out: torch.Tensor, mask: torch.Tensor) -> bool:
    """Whether a blended batch (float ``N x 3 x H x W``, mask ``N x 1 x H x W`` in {0, 1}) is
    unusable: any non-finite value, or an image with holes whose hole pixels are all black
    (every channel < 1e-3 on the 0-1 scale)."""
    if not bool(torch.isfinite(out).all()):
        return True
    hole = mask.expand_as(out) > 0.5
    for j in range(out.shape[0]):
        values = out[j][hole[j]]
        if values.numel() and bool((values < 1e-3).all()):
            return True
    return False


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
    """One inpainted image: uint8 ``H x W x 3``; ``resized``: whether a generator input went
    through the pixel budget (downscaled); ``strategy``: ``"full"`` (one whole-frame input) or
    ``"windows"`` (see ``lama_core.hd_strategy``); ``windows``: generator inputs this image
    used (0 when it has no hole pixel: the input comes back unchanged); ``precision_fallback``:
    a reduced-precision batch holding one of its windows failed the output check and was rerun
    in fp32 (``Inpainter.predict_checked``)."""

    image: np.ndarray
    resized: bool
    strategy: str = "full"
    windows: int = 1
    precision_fallback: bool = False


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
    ``cpu_kernels``: ``lama_core.fast_inference.use_cpu_kernels`` (Winograd F(4×4, 3×3) in
    fp32, F(2×2, 3×3) in bf16, for the ResNet blocks' 3×3 FFCs, space-to-depth for the
    output conv; same numerics within 1e-4, big-lama fp32 at 512² 1.4x the folded path
    alone, benchmarks/RESULTS.md); None = on for CPU when folding, off elsewhere. It
    implies channels-last.
    On CPU it calls ``lama_core.cpu_allocator.keep_freed_memory`` (process-wide: freed
    buffers of up to 32 MiB are reused rather than returned to the OS).
    ``hd_strategy``: ``"windows"`` (default): images whose longer side is above
    ``window_options.trigger`` (800 px) are inpainted in a native-resolution context window
    around each hole region, the rest as full frames; ``"full"``: always the whole frame.
    ``window_options``: a ``lama_core.hd_strategy.WindowOptions`` (margins; measured defaults).
    ``keep_grey``: when every known pixel of an image is neutral grey (its three channels
    within 1 level), its fill is made grey too (the output's luma in all three channels):
    a generator trained on colour photos may tint a grey image's holes, and no grey photo
    has a colour hole.
    ``backend``: ``"torch"`` (default), ``"onnxruntime"`` (fp32 only; CPU, or CUDA with
    ``onnxruntime-gpu``: providers from ``lama_core.onnx_sessions.onnxruntime_providers``, or
    ``ort_providers`` to choose, e.g. TensorRT) or ``"openvino"`` (CPU; fp32, or bf16 through
    OpenVINO's inference precision hint). Those two run the ONNX graph ``onnx_model`` (bytes
    or a local ``.onnx`` path from ``lama_core.onnx_export``), exported from ``generator`` here
    when not given (~1 min for big-lama on 2 cores); the session is built once, here.
    ``fold_batchnorm``, ``channels_last`` and ``cpu_kernels`` apply to the torch backend only.
    Missing runtime packages raise ``lama_core.backends.MissingExtraError`` naming the extra.
    With a reduced precision the Inpainter keeps a reference to ``generator`` (torch) or the
    graph (openvino) to build its fp32 retry path on first need.
    """

    def __init__(self, generator: FFCResNetGenerator, device: str | torch.device = "cpu", batch_size: int = 4,
                 precision: str = "fp32", mask_threshold: float = DEFAULT_MASK_THRESHOLD,
                 max_pixels: int | None = None, channels_last: bool = False, fold_batchnorm: bool = True,
                 cpu_kernels: bool | None = None, hd_strategy: str = DEFAULT_HD_STRATEGY,
                 window_options: WindowOptions | None = None, keep_grey: bool = True, backend: str = "torch",
                 onnx_model: bytes | str | None = None, ort_providers: Sequence[Any] | None = None):
        for problem in (choice_problem("hd_strategy", hd_strategy, HD_STRATEGIES),
                        choice_problem("precision", precision, PRECISION_CHOICES)):
            if problem:
                raise ValueError(problem)
        precision = resolve_precision(precision, str(device), backend)
        self.keep_grey = keep_grey
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        if problem := backend_problem(backend, precision, self.device.type):
            raise ValueError(problem)
        self.backend = backend
        if self.device.type == "cpu":
            keep_freed_memory()  # reuse freed activation buffers instead of faulting in new pages
        if cpu_kernels is None:
            cpu_kernels = fold_batchnorm and self.device.type == "cpu"
        elif cpu_kernels and not fold_batchnorm:
            raise ValueError("cpu_kernels=True works on the folded generator: keep fold_batchnorm=True")
        self.channels_last = channels_last or cpu_kernels
        self.fold_batchnorm, self.cpu_kernels = fold_batchnorm, cpu_kernels
        self.dtype = PRECISION_DTYPES[precision]
        if precision == "bf16" and self.device.type == "cpu" and not native_bf16_cpu():
            warnings.warn("precision='bf16' on a CPU without AVX512-BF16 or AMX runs emulated, several times "
                          "slower than fp32 (10x measured with oneDNN held to AVX2): use precision='fp32' here",
                          RuntimeWarning, stacklevel=2)
        self.batch_size = batch_size
        self.precision = precision
        self.mask_threshold = mask_threshold
        self.max_pixels = max_pixels
        self.multiple = max(8, generator.size_multiple)
        # Each downsampling halves the map and the FFC blocks reflect-pad it by 1, which
        # needs >= 2 pixels at the bottleneck: tiny images are mirror-padded up to this.
        self.min_size = 2 * generator.size_multiple
        self.hd_strategy = hd_strategy
        self.window_options = window_options or WindowOptions()
        self.generator: torch.nn.Module | None = None
        self.onnx_model: bytes | str | None = None
        if backend == "torch":
            self.generator = self._torch_generator(generator, self.dtype)
            self._forward = self._torch_forward(self.generator, self.dtype)
        else:
            # Built once here: the bulk job makes one Inpainter per model actor.
            self.onnx_model = onnx_model if onnx_model is not None else export_onnx_bytes(generator).data
            self._ort_providers = ort_providers
            self._forward = self._session(precision)
        # A reduced-precision batch that fails the output check is rerun in fp32 through a
        # second path built on first need: from the caller's generator (kept by reference) for
        # torch, from the same graph for openvino.
        self._source = generator if precision != "fp32" and backend == "torch" else None
        self._fp32_forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None

    def _torch_generator(self, generator: FFCResNetGenerator, dtype: torch.dtype) -> torch.nn.Module:
        """The module the torch backend runs: always a copy (eval mode, device, dtype and
        layout never change the caller's module), folded/fast as configured."""
        if self.fold_batchnorm:
            module = optimize_for_inference(generator, channels_last=self.channels_last, cpu_kernels=self.cpu_kernels,
                                            dtype=dtype)
        else:
            module = copy.deepcopy(generator)
            if self.channels_last:
                module = module.to(memory_format=torch.channels_last)
        if dtype != torch.float32:
            # Casting weights once beats autocast re-casting them every call.
            module = module.to(dtype)
        return module.eval().to(self.device)

    def _torch_forward(self, module: torch.nn.Module, dtype: torch.dtype):
        def forward(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            h, w = image.shape[-2:]
            x = pad_to_multiple(torch.cat([image * (1 - mask), mask], dim=1), self.multiple, self.min_size)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                out = module(x.to(dtype))
            out = out[:, :, :h, :w].float()
            return mask * out + (1 - mask) * image
        return forward

    def _session(self, precision: str):
        if self.backend == "onnxruntime":
            return onnxruntime_session(self.onnx_model, self.device, self._ort_providers)
        return openvino_session(self.onnx_model, precision)

    def predict(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The generator's blended output for a batch, on the Inpainter's backend and precision.

        ``image``: float ``N x 3 x H x W`` in [0, 1]; ``mask``: float ``N x 1 x H x W`` in {0, 1}.
        Returns float32 ``N x 3 x H x W`` in [0, 1] = ``mask * output + (1 - mask) * image``
        on the Inpainter's device. Any H, W (padded internally; inside the graph for the
        ONNX backends). No precision guard here: see ``predict_checked``.
        """
        return self._forward(image.to(self.device, torch.float32), mask.to(self.device, torch.float32))

    def predict_checked(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """``predict`` with the reduced-precision guard: when a bf16/fp16 batch comes out
        non-finite anywhere, or all black (every value < 1e-3) in the holes of any of its
        images (what fp16 overflow in the spectral products produces), the whole batch is
        rerun in fp32. Returns ``(output, fell_back)``; fp32 Inpainters never fall back."""
        out = self.predict(image, mask)
        if self.precision == "fp32" or not failed_output(out, mask.to(out.device)):
            return out, False
        if self._fp32_forward is None:
            if self.backend == "torch":
                self._fp32_forward = self._torch_forward(self._torch_generator(self._source, torch.float32),
                                                         torch.float32)
            else:
                self._fp32_forward = self._session("fp32")
        return self._fp32_forward(image.to(self.device, torch.float32), mask.to(self.device, torch.float32)), True

    def inpaint(self, images: Sequence[Any], masks: Sequence[Any]) -> list[InpaintResult]:
        """Inpaint a list of images with their masks (see module docstring for accepted
        forms). Returns one ``InpaintResult`` per image, in order. Raises
        ``InpaintInputError`` naming the index on a size mismatch or bad type."""
        if len(images) != len(masks):
            raise InpaintInputError(f"{len(images)} images but {len(masks)} masks")
        sources = [_prepare(i, img, msk, self.mask_threshold) for i, (img, msk) in enumerate(zip(images, masks))]
        plans = [plan_windows(s.hole, self.hd_strategy, self.window_options) for s in sources]
        outputs = [s.original.copy() for s in sources]  # hole pixels are overwritten in place
        resized = [False] * len(sources)
        fallback = [False] * len(sources)
        grey = [self.keep_grey and is_grey(s.original, s.hole) for s in sources]
        # Every window of every image is one generator input; inputs of equal (possibly
        # budget-reduced) size share a batch, whichever image they come from.
        groups: dict[tuple[int, int], list[tuple[int, Window]]] = {}
        for i, plan in enumerate(plans):
            for window in plan.windows:
                groups.setdefault(self._work_size(window.height, window.width), []).append((i, window))
        for size, jobs in groups.items():
            for start in range(0, len(jobs), self.batch_size):
                chunk = jobs[start: start + self.batch_size]
                image = torch.stack([_window_input(sources[i].pixels, w, size) for i, w in chunk])
                mask = torch.stack([_window_input(sources[i].hole[:, :, None], w, size) for i, w in chunk])
                out, fell_back = self.predict_checked(image, (mask > self.mask_threshold).float())
                out = out.cpu()
                del image, mask
                for j, (i, window) in enumerate(chunk):
                    fallback[i] = fallback[i] or fell_back
                    own = own_holes(plans[i], window, sources[i].hole)
                    target = outputs[i][window.top:window.bottom, window.left:window.right]
                    if size == (window.height, window.width):
                        filled = to_uint8(out[j].permute(1, 2, 0).numpy())
                        if grey[i]:
                            filled = grey_of(filled)
                        target[own] = filled[own]
                        continue
                    resized[i] = True
                    for r0, r1, rows in bicubic_strips(out[j], (window.height, window.width)):
                        filled = to_uint8(rows.permute(1, 2, 0).numpy())
                        if grey[i]:
                            filled = grey_of(filled)
                        target[r0:r1][own[r0:r1]] = filled[own[r0:r1]]
        return [InpaintResult(out, r, plan.strategy, len(plan.windows), f)
                for out, r, plan, f in zip(outputs, resized, plans, fallback)]

    def __call__(self, images: Sequence[Any], masks: Sequence[Any]) -> list[np.ndarray]:
        """Like ``inpaint`` but returns only the uint8 ``H x W x 3`` images."""
        return [r.image for r in self.inpaint(images, masks)]

    def _work_size(self, h: int, w: int) -> tuple[int, int]:
        if self.max_pixels is None or h * w <= self.max_pixels:
            return h, w
        scale = math.sqrt(self.max_pixels / (h * w))
        return max(1, int(h * scale)), max(1, int(w * scale))


@dataclass
class _Source:
    """One input as the Inpainter keeps it: ``pixels`` (the uint8 ``H x W x 3`` input itself
    when it is one, else float32 in [0, 1]), ``hole`` (bool ``H x W``) and ``original``
    (uint8 ``H x W x 3``, the known pixels of the result)."""

    pixels: np.ndarray
    hole: np.ndarray
    original: np.ndarray


def _prepare(index: int, image: Any, mask: Any, threshold: float) -> _Source:
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        if min(image.shape[:2]) < 1:
            raise InpaintInputError(f"empty image of shape {image.shape}")
        pixels = original = image  # no float copy of the whole image: windows convert their crops
    else:
        pixels = image_to_float(image)
        original = to_uint8(pixels)
    hole = mask_to_hole(mask, threshold)
    if pixels.shape[:2] != hole.shape:
        raise InpaintInputError(f"image {index} is {pixels.shape[1]}x{pixels.shape[0]} but its mask is "
                                f"{hole.shape[1]}x{hole.shape[0]} (WxH)")
    return _Source(pixels, hole, original)


def _window_input(pixels: np.ndarray, window: Window, size: tuple[int, int]) -> torch.Tensor:
    """float32 ``C x size`` of ``pixels``' window (area-downscaled when ``size`` is smaller)."""
    crop = pixels[window.top:window.bottom, window.left:window.right]
    if size == crop.shape[:2]:
        return to_float_chw(crop)
    return area_downscale(crop, size)


def mask_to_hole(mask: Any, threshold: float = DEFAULT_MASK_THRESHOLD) -> np.ndarray:
    """Any accepted mask form -> bool ``H x W`` (True = hole), the same pixels as
    ``binarize_mask(mask_to_float(mask), threshold) > 0``; uint8 masks are compared in
    strips of rows, without a float copy of the whole mask."""
    if isinstance(mask, np.ndarray) and mask.dtype == np.uint8 and mask.ndim in (2, 3):
        plane = mask if mask.ndim == 2 else mask[:, :, 0]
        scale = np.float32(1.0 if plane.max(initial=0) <= 1 else 255.0)
        hole = np.empty(plane.shape, bool)
        for r in range(0, plane.shape[0], 1024):
            np.greater(plane[r: r + 1024].astype(np.float32) / scale, np.float32(threshold), out=hole[r: r + 1024])
        return hole
    return mask_to_float(mask) > threshold


def resolve_precision(precision: str, device: str = "cpu", backend: str = "torch") -> str:
    """``precision`` as it will run: ``"auto"`` becomes ``"bf16"`` where the hardware computes
    bf16 natively and the backend runs it (torch on a CPU with AVX512-BF16/AMX or a GPU with
    bf16; OpenVINO on such a CPU), else ``"fp32"`` (ONNX Runtime runs the fp32 graph); any
    other name is returned as given. bf16 keeps the FFTs in fp32 and stayed within ~41 dB of
    fp32 (benchmarks/RESULTS.md)."""
    if precision != AUTO_PRECISION:
        return precision
    if backend == "onnxruntime":
        return "fp32"
    if device.startswith("cuda"):
        return "bf16" if backend == "torch" and torch.cuda.is_available() and torch.cuda.is_bf16_supported() \
            else "fp32"
    return "bf16" if native_bf16_cpu() else "fp32"


def native_bf16_cpu() -> bool:
    """True when this CPU computes bf16 in hardware (AVX512-BF16 or AMX) and oneDNN may use
    it (``ONEDNN_MAX_CPU_ISA`` can forbid that); unknown counts as True."""
    try:
        hardware = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
        return bool(hardware and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # private probes moved: do not block bf16
        return True
