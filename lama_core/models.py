"""Constructors for the generator and discriminator from presets or configs."""
from __future__ import annotations

from typing import Any

from .discriminator import DiscriminatorConfig, NLayerDiscriminator
from .ffc import FFCResNetGenerator, GeneratorConfig
from .presets import discriminator_config, generator_config


def build_generator(preset_or_config: str | GeneratorConfig | dict[str, Any] = "big-lama") -> FFCResNetGenerator:
    """A freshly initialised (PyTorch default init) generator for a preset name
    (``big-lama``, ``lama-fourier``, ``small``), a ``GeneratorConfig`` or a dict of official
    ``FFCResNetGenerator`` arguments. Returns the module in training mode on the CPU."""
    return FFCResNetGenerator(generator_config(preset_or_config))


def build_discriminator(preset_or_config: str | DiscriminatorConfig | dict[str, Any] = "big-lama") -> NLayerDiscriminator:
    """A freshly initialised PatchGAN discriminator for a preset name or config."""
    return NLayerDiscriminator(discriminator_config(preset_or_config))


def count_parameters(module) -> int:
    """Number of parameters (not buffers) of a module."""
    return sum(p.numel() for p in module.parameters())
