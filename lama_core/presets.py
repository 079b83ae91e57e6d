"""Named model presets, as data. ``big-lama`` and ``lama-fourier`` are the official
released configurations; ``small`` is this project's CPU-sized member of the same family
(tests, demos and the shipped demo checkpoint)."""
from __future__ import annotations

import copy
from dataclasses import asdict
from typing import Any

from .discriminator import DiscriminatorConfig
from .ffc import FFCConvOptions, GeneratorConfig

GENERATOR_PRESETS: dict[str, GeneratorConfig] = {
    "big-lama": GeneratorConfig(ngf=64, n_downsampling=3, n_blocks=18,
                                resnet_conv_kwargs=FFCConvOptions(0.75, 0.75, False)),
    "lama-fourier": GeneratorConfig(ngf=64, n_downsampling=3, n_blocks=9,
                                    resnet_conv_kwargs=FFCConvOptions(0.75, 0.75, False)),
    "small": GeneratorConfig(ngf=16, n_downsampling=3, n_blocks=3,
                             resnet_conv_kwargs=FFCConvOptions(0.75, 0.75, False)),
}

DISCRIMINATOR_PRESETS: dict[str, DiscriminatorConfig] = {
    "big-lama": DiscriminatorConfig(input_nc=3, ndf=64, n_layers=4),
    "lama-fourier": DiscriminatorConfig(input_nc=3, ndf=64, n_layers=4),
    "small": DiscriminatorConfig(input_nc=3, ndf=16, n_layers=3),
}


def generator_config(preset: str | GeneratorConfig | dict[str, Any]) -> GeneratorConfig:
    """Resolve a preset name, a ``GeneratorConfig`` or a dict of official
    ``FFCResNetGenerator`` arguments to a fresh ``GeneratorConfig``.

    Raises ``ValueError`` for an unknown preset name (listing the known ones) or unknown keys.
    """
    if isinstance(preset, GeneratorConfig):
        return copy.deepcopy(preset)
    if isinstance(preset, str):
        if preset not in GENERATOR_PRESETS:
            raise ValueError(f"unknown generator preset {preset!r}; known: {sorted(GENERATOR_PRESETS)}")
        return copy.deepcopy(GENERATOR_PRESETS[preset])
    return generator_config_from_dict(dict(preset))


def generator_config_from_dict(args: dict[str, Any]) -> GeneratorConfig:
    """Build a ``GeneratorConfig`` from official ``generator:`` config arguments (``kind``,
    ``norm_layer``, ``padding_type``, ``activation_layer`` and the like are checked, then dropped)."""
    args = dict(args)
    kind = args.pop("kind", "ffc_resnet")
    if kind != "ffc_resnet":
        raise ValueError(f"unsupported generator kind {kind!r}: only 'ffc_resnet' (LaMa's FFC generator)")
    for key, expected in (("norm_layer", "bn"), ("padding_type", "reflect"), ("activation_layer", "relu"),
                          ("up_norm_layer", "bn"), ("out_ffc", False)):
        value = args.pop(key, expected)
        if value != expected:
            raise ValueError(f"unsupported generator option {key}={value!r} (only {expected!r})")
    add_out_act = args.pop("add_out_act", "sigmoid")
    if add_out_act is True:
        add_out_act = "tanh"
    elif add_out_act is False:
        add_out_act = "none"
    for unused in ("spatial_transform_layers", "spatial_transform_kwargs", "out_ffc_kwargs", "up_activation"):
        args.pop(unused, None)
    convs = {}
    for key in ("init_conv_kwargs", "downsample_conv_kwargs", "resnet_conv_kwargs"):
        if key in args:
            opts = dict(args.pop(key) or {})
            convs[key] = FFCConvOptions(float(opts.pop("ratio_gin", 0.0)), float(opts.pop("ratio_gout", 0.0)),
                                        bool(opts.pop("enable_lfu", False)))
            if opts:
                raise ValueError(f"unsupported {key} options: {sorted(opts)}")
    known = set(GeneratorConfig.__dataclass_fields__)
    unknown = set(args) - known
    if unknown:
        raise ValueError(f"unknown generator config keys: {sorted(unknown)}")
    return GeneratorConfig(add_out_act=str(add_out_act), **args, **convs)


def generator_config_to_dict(config: GeneratorConfig) -> dict[str, Any]:
    """Plain-dict form of a ``GeneratorConfig`` (official argument names), for saving."""
    return asdict(config)


def discriminator_config(preset: str | DiscriminatorConfig | dict[str, Any]) -> DiscriminatorConfig:
    """Resolve a preset name, config or dict (``input_nc``, ``ndf``, ``n_layers``) to a
    fresh ``DiscriminatorConfig``."""
    if isinstance(preset, DiscriminatorConfig):
        return copy.deepcopy(preset)
    if isinstance(preset, str):
        if preset not in DISCRIMINATOR_PRESETS:
            raise ValueError(f"unknown discriminator preset {preset!r}; known: {sorted(DISCRIMINATOR_PRESETS)}")
        return copy.deepcopy(DISCRIMINATOR_PRESETS[preset])
    args = {k: v for k, v in dict(preset).items() if k != "kind"}
    return DiscriminatorConfig(**args)
