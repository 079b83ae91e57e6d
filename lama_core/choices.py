"""The named choices of ``lama_core``, defined once, importing nothing.

Every option that picks one of a fixed set of names (a precision, a high-resolution
strategy, a mask set, a preset, a loss recipe, an augmentation) has its names here. The
library's tables are keyed by them (``masks.MASK_SETS``, ``presets.GENERATOR_PRESETS``,
``losses.LOSS_RECIPES``) and the jobs' typed configs (``pipelines/*/config.py``) accept
exactly them: ``tests/test_job_configs.py`` checks both. A config imports this module
without loading torch, so ``--help`` and a mistyped value answer at once.
"""

#: ``precision`` of the ``Inpainter`` and of the inference jobs: fp16 runs on GPUs only.
PRECISIONS = ("fp32", "bf16", "fp16")
#: What ``precision`` may also say: ``auto``, bf16 where the hardware computes bf16 natively
#: (CPUs with AVX512-BF16 or AMX, GPUs with bf16), else fp32 (``lama_core.inpainter.resolve_precision``).
AUTO_PRECISION = "auto"
PRECISION_CHOICES = (AUTO_PRECISION,) + PRECISIONS
#: ``precision`` of the training step (autocast; FFTs stay fp32).
TRAINING_PRECISIONS = ("fp32", "bf16")

#: ``backend=`` of the Inpainter and the bulk job: PyTorch itself, or the exported ONNX graph
#: (``lama_core.onnx_export``) run by ONNX Runtime or OpenVINO (``lama_core.backends``).
BACKENDS = ("torch", "onnxruntime", "openvino")

#: How an exported graph writes the Fourier units' FFTs (``lama_core.onnx_export``): real
#: matrix products (opset 18, every runtime) or ONNX ``DFT`` nodes (opset 20, ONNX Runtime).
DFT_MODES = ("matmul", "onnx")

#: Where the generator runs on a large image (``lama_core.hd_strategy``).
HD_STRATEGIES = ("windows", "full")
DEFAULT_HD_STRATEGY = "windows"

#: Generated mask sets (``lama_core.masks.MASK_SETS``): the official evaluation sets and
#: big-lama's training mix.
MASK_KINDS = ("thin_256", "medium_256", "thick_256", "thin_512", "medium_512", "thick_512", "wide_256")

#: Generator presets (``lama_core.presets.GENERATOR_PRESETS``).
PRESETS = ("big-lama", "lama-fourier", "small")

#: Training loss recipes (``lama_core.losses.LOSS_RECIPES``).
RECIPES = ("official", "no-perceptual")

#: LPIPS backbones (``lama_core.metrics.lpips.BACKBONES``): vgg is the paper's protocol.
LPIPS_NETS = ("vgg", "alex")

#: Registered quality metrics (``lama_core.metrics.METRICS``).
METRIC_NAMES = ("psnr", "ssim", "l1", "lpips", "fid")

#: Training crop augmentations (``lama_core.augment.crop_function``).
AUGMENTATIONS = ("distortions", "crop")


def choice_problem(name: str, value: object, allowed: tuple[str, ...]) -> str | None:
    """``None`` when ``value`` is one of ``allowed``, else the one-sentence problem that every
    config and the library print: ``"NAME must be a, b or c, got 'x'"`` for a short list,
    ``"unknown NAME 'x'; known: a, b, ..."`` for a long one."""
    if value in allowed:
        return None
    if len(allowed) > 4:
        return f"unknown {name} {value!r}; known: {', '.join(allowed)}"
    listed = allowed[0] if len(allowed) == 1 else f"{', '.join(allowed[:-1])} or {allowed[-1]}"
    return f"{name} must be {listed}, got {value!r}"
