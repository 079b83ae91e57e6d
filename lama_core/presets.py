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


def describe_value(value: Any) -> str:
    """A short, safe rendering of a value read from an untrusted file, for error messages:
    numbers and booleans as such, short strings quoted, anything else by type. OmegaConf
    interpolations are named as such and never resolved."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, (int, float)):
        text = repr(value)
        return text if len(text) <= 24 else text[:20] + "..."
    if isinstance(value, str):
        if "${" in value:
            return "an OmegaConf interpolation (never resolved in model files)"
        return repr(value) if len(value) <= 40 else repr(value[:36]) + "..."
    return f"a {type(value).__name__}"


def _int_field(args: dict[str, Any], key: str) -> None:
    if key in args and type(args[key]) is not int:
        raise ValueError(f"generator {key} must be an integer, got {describe_value(args[key])}")


def _conv_options(key: str, opts: Any) -> FFCConvOptions:
    if opts is None:
        opts = {}
    if not isinstance(opts, dict):
        raise ValueError(f"generator {key} must be a mapping, got {describe_value(opts)}")
    opts = dict(opts)
    values = []
    for name in ("ratio_gin", "ratio_gout"):
        value = opts.pop(name, 0.0)
        if type(value) not in (int, float):
            raise ValueError(f"generator {key}.{name} must be a number, got {describe_value(value)}")
        values.append(float(value))
    lfu = opts.pop("enable_lfu", False)
    if type(lfu) is not bool:
        raise ValueError(f"generator {key}.enable_lfu must be true or false, got {describe_value(lfu)}")
    if opts:
        raise ValueError(f"unsupported {key} options: {_names(opts)}")
    return FFCConvOptions(values[0], values[1], lfu)


def _names(keys) -> str:
    names = sorted(describe_value(k) for k in keys)
    return ", ".join(names[:5]) + (f" (+{len(names) - 5} more)" if len(names) > 5 else "")


def generator_config_from_dict(args: dict[str, Any]) -> GeneratorConfig:
    """Build a ``GeneratorConfig`` from official ``generator:`` config arguments (``kind``,
    ``norm_layer``, ``padding_type``, ``activation_layer`` and the like are checked, then dropped).

    Types are checked strictly (integers for sizes, numbers for ratios, booleans for
    ``enable_lfu``), since the dict may come from an untrusted file; ranges are checked by
    ``model_limits.check_generator_limits``. Raises ``ValueError`` with a one-line reason
    that never echoes long or interpolated strings.
    """
    if not isinstance(args, dict):
        raise ValueError(f"generator config must be a mapping, got {describe_value(args)}")
    args = dict(args)
    kind = args.pop("kind", "ffc_resnet")
    if kind != "ffc_resnet":
        raise ValueError(f"unsupported generator kind {describe_value(kind)}: only 'ffc_resnet' (LaMa's FFC generator)")
    for key, expected in (("norm_layer", "bn"), ("padding_type", "reflect"), ("activation_layer", "relu"),
                          ("up_norm_layer", "bn"), ("out_ffc", False)):
        value = args.pop(key, expected)
        if type(value) is not type(expected) or value != expected:
            raise ValueError(f"unsupported generator option {key}={describe_value(value)} (only {expected!r})")
    add_out_act = args.pop("add_out_act", "sigmoid")
    if add_out_act is True:
        add_out_act = "tanh"
    elif add_out_act is False:
        add_out_act = "none"
    if not isinstance(add_out_act, str):
        raise ValueError(f"generator add_out_act must be a string or boolean, got {describe_value(add_out_act)}")
    for unused in ("spatial_transform_layers", "spatial_transform_kwargs", "out_ffc_kwargs", "up_activation"):
        args.pop(unused, None)
    convs = {key: _conv_options(key, args.pop(key))
             for key in ("init_conv_kwargs", "downsample_conv_kwargs", "resnet_conv_kwargs") if key in args}
    known = set(GeneratorConfig.__dataclass_fields__)
    unknown = set(args) - known
    if unknown:
        raise ValueError(f"unknown generator config keys: {_names(unknown)}")
    for key in args:
        _int_field(args, key)
    return GeneratorConfig(add_out_act=add_out_act, **args, **convs)


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
