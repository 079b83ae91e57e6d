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


def discriminator_config_from_state(state: dict[str, Any]) -> DiscriminatorConfig:
    """The ``NLayerDiscriminator`` config that ``state`` (its state dict, keys ``model0.0.weight``
    ...) was saved from: ``input_nc`` and ``ndf`` from the first conv's weight
    (``ndf x input_nc x 4 x 4``), ``n_layers`` from the number of ``modelK`` blocks minus 2."""
    first = state.get("model0.0.weight")
    blocks = {key.split(".", 1)[0] for key in state if key.startswith("model")}
    if first is None or first.ndim != 4 or len(blocks) < 3:
        raise ValueError("not a PatchGAN discriminator state dict (model0.0.weight and >= 3 blocks expected)")
    return DiscriminatorConfig(input_nc=int(first.shape[1]), ndf=int(first.shape[0]), n_layers=len(blocks) - 2)


def count_parameters(module) -> int:
    """Number of parameters (not buffers) of a module."""
    return sum(p.numel() for p in module.parameters())
