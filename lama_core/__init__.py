"""LaMa large-mask inpainting in plain PyTorch: FFC generator, PatchGAN discriminator,
checkpoint I/O (official big-lama checkpoints load unchanged) and the ``Inpainter``.

This package never imports Ray; ``pipelines`` wraps it for distributed work.
"""
from .lazy_exports import lazy_exports

# Each name's module loads on first use (lazy_exports.py): a decode or encode worker's
# ``from lama_core.image_arrays import ...`` must not pull in torch through this file.
__all__, __getattr__ = lazy_exports(__name__, {
    "backends": ("BACKENDS", "MissingExtraError"),
    "checkpoint": ("CheckpointError", "load_generator", "read_checkpoint", "save_discriminator", "save_generator"),
    "discriminator": ("DiscriminatorConfig", "NLayerDiscriminator"),
    "ffc": ("FFCResNetGenerator", "GeneratorConfig"),
    "hd_strategy": ("HD_STRATEGIES", "WindowOptions"),
    "inpainter": ("Inpainter", "InpaintResult"),
    "image_arrays": ("InpaintInputError",),
    "onnx_export": ("export_model", "export_onnx"),
    "models": ("build_discriminator", "build_generator", "count_parameters"),
    "presets": ("DISCRIMINATOR_PRESETS", "GENERATOR_PRESETS"),
})
