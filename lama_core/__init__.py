"""LaMa large-mask inpainting in plain PyTorch: FFC generator, PatchGAN discriminator,
checkpoint I/O (official big-lama checkpoints load unchanged) and the ``Inpainter``.

This package never imports Ray; ``pipelines`` wraps it for distributed work.
"""
# Loaded on first use (PEP 562): ``from lama_core.image_arrays import ...`` in a decode or
# encode worker must not pull in torch through this package's own import.
_EXPORTS = {
    "checkpoint": ("CheckpointError", "load_generator", "read_checkpoint", "save_discriminator", "save_generator"),
    "discriminator": ("DiscriminatorConfig", "NLayerDiscriminator"),
    "ffc": ("FFCResNetGenerator", "GeneratorConfig"),
    "hd_strategy": ("HD_STRATEGIES", "WindowOptions"),
    "inpainter": ("Inpainter", "InpaintResult"),
    "image_arrays": ("InpaintInputError",),
    "models": ("build_discriminator", "build_generator", "count_parameters"),
    "presets": ("DISCRIMINATOR_PRESETS", "GENERATOR_PRESETS"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "CheckpointError", "load_generator", "read_checkpoint", "save_generator", "save_discriminator",
    "DiscriminatorConfig", "NLayerDiscriminator", "FFCResNetGenerator", "GeneratorConfig",
    "Inpainter", "InpaintInputError", "InpaintResult", "build_generator", "build_discriminator",
    "count_parameters", "GENERATOR_PRESETS", "DISCRIMINATOR_PRESETS", "HD_STRATEGIES", "WindowOptions",
]


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{module}", __name__), name)
