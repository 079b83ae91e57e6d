"""LaMa large-mask inpainting in plain PyTorch: FFC generator, PatchGAN discriminator,
checkpoint I/O (official big-lama checkpoints load unchanged) and the ``Inpainter``.

This package never imports Ray; ``pipelines`` wraps it for distributed work.
"""
from .checkpoint import CheckpointError, load_generator, read_checkpoint, save_discriminator, save_generator
from .discriminator import DiscriminatorConfig, NLayerDiscriminator
from .ffc import FFCResNetGenerator, GeneratorConfig
from .hd_strategy import HD_STRATEGIES, WindowOptions
from .inpainter import Inpainter, InpaintInputError, InpaintResult
from .models import build_discriminator, build_generator, count_parameters
from .presets import DISCRIMINATOR_PRESETS, GENERATOR_PRESETS

__all__ = [
    "CheckpointError", "load_generator", "read_checkpoint", "save_generator", "save_discriminator",
    "DiscriminatorConfig", "NLayerDiscriminator", "FFCResNetGenerator", "GeneratorConfig",
    "Inpainter", "InpaintInputError", "InpaintResult", "build_generator", "build_discriminator",
    "count_parameters", "GENERATOR_PRESETS", "DISCRIMINATOR_PRESETS", "HD_STRATEGIES", "WindowOptions",
]
