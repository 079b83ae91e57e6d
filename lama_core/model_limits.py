"""Limits on generator configurations read from files, checked before anything is built.

A model file names its own architecture (safetensors metadata, ``config.yaml``, a
Lightning checkpoint's hyper-parameters). An untrusted file could name a network of any
size, so the loader validates the config here first: each field against a documented
range, then the parameter count, computed from the config alone (integer arithmetic, no
tensor and no module is created), against a cap the caller may raise.

Documented limits (``FIELD_LIMITS``, ``DEFAULT_MAX_PARAMETERS``):

| field | allowed |
| --- | --- |
| ``input_nc``, ``output_nc`` | int, 1..64 |
| ``ngf`` | int, 1..1024 |
| ``n_downsampling`` | int, 0..8 |
| ``n_blocks`` | int, 0..256 |
| ``max_features`` | int, 1..8192 |
| ``*_conv_kwargs.ratio_gin/ratio_gout`` | number, 0..1 |
| ``*_conv_kwargs.enable_lfu`` | bool |
| ``add_out_act`` | ``sigmoid``, ``tanh``, ``none`` |
| parameters | at most 102,000,000 (2x big-lama's 50,975,875) unless ``max_parameters`` is raised |

``generator_state_shapes`` also gives the exact state-dict layout the config implies, so
tensor sizes in a file are checked against it before any tensor data is read.
"""
from __future__ import annotations

from .ffc import FFCConvOptions, GeneratorConfig

DEFAULT_MAX_PARAMETERS = 102_000_000
"""Parameter cap for generators read from files: twice big-lama's 50,975,875."""

# field -> (type name, low, high); checked by ``check_generator_limits``.
FIELD_LIMITS: dict[str, tuple[int, int]] = {
    "input_nc": (1, 64),
    "output_nc": (1, 64),
    "ngf": (1, 1024),
    "n_downsampling": (0, 8),
    "n_blocks": (0, 256),
    "max_features": (1, 8192),
}
OUTPUT_ACTIVATIONS = ("sigmoid", "tanh", "none", "")


class ModelLimitError(ValueError):
    """A generator config is malformed or exceeds a documented limit (one-line message)."""


def check_generator_limits(config: GeneratorConfig, max_parameters: int = DEFAULT_MAX_PARAMETERS) -> int:
    """Check every field of ``config`` against ``FIELD_LIMITS`` and its parameter count
    against ``max_parameters``. Returns the parameter count. Raises ``ModelLimitError``
    with a one-line reason; allocates nothing."""
    for name, (low, high) in FIELD_LIMITS.items():
        value = getattr(config, name)
        if type(value) is not int:  # bool is an int subclass: refuse it too
            raise ModelLimitError(f"generator {name} must be an integer, got {type(value).__name__}")
        if not low <= value <= high:
            raise ModelLimitError(f"generator {name}={value} is outside the allowed range {low}..{high}")
    if config.add_out_act not in OUTPUT_ACTIVATIONS:
        raise ModelLimitError(f"generator add_out_act must be one of {OUTPUT_ACTIVATIONS[:3]}")
    for group in ("init_conv_kwargs", "downsample_conv_kwargs", "resnet_conv_kwargs"):
        opts = getattr(config, group)
        for name in ("ratio_gin", "ratio_gout"):
            value = getattr(opts, name)
            if type(value) not in (int, float) or not 0.0 <= value <= 1.0:
                raise ModelLimitError(f"generator {group}.{name} must be a number in 0..1")
        if type(opts.enable_lfu) is not bool:
            raise ModelLimitError(f"generator {group}.enable_lfu must be true or false")
    count = count_generator_parameters(config)
    if count > max_parameters:
        raise ModelLimitError(
            f"generator config has {count:,} parameters, above the limit of {max_parameters:,} "
            "(load_generator(..., max_parameters=N) raises it for a file you trust)")
    return count


def _bn(prefix: str, channels: int, out: dict) -> None:
    for name in ("weight", "bias"):
        out[f"{prefix}.{name}"] = ((channels,), True)
    for name in ("running_mean", "running_var"):
        out[f"{prefix}.{name}"] = ((channels,), False)
    out[f"{prefix}.num_batches_tracked"] = ((), False)


def _fourier_unit(prefix: str, channels: int, out: dict) -> None:
    out[f"{prefix}.conv_layer.weight"] = ((2 * channels, 2 * channels, 1, 1), True)
    _bn(f"{prefix}.bn", 2 * channels, out)


def _ffc_bn_act(prefix: str, cin: int, cout: int, k: int, opts: FFCConvOptions, ratio_gout: float,
                out: dict) -> None:
    """Mirror of ``FFC_BN_ACT`` (groups 1, no bias): which convs exist and their shapes."""
    in_cg = int(cin * opts.ratio_gin)
    in_cl = cin - in_cg
    out_cg = int(cout * ratio_gout)
    out_cl = cout - out_cg
    for name, (a, b) in (("convl2l", (out_cl, in_cl)), ("convl2g", (out_cg, in_cl)), ("convg2l", (out_cl, in_cg))):
        if a and b:
            out[f"{prefix}.ffc.{name}.weight"] = ((a, b, k, k), True)
    if in_cg and out_cg:
        half = out_cg // 2
        g2g = f"{prefix}.ffc.convg2g"
        out[f"{g2g}.conv1.0.weight"] = ((half, in_cg, 1, 1), True)
        _bn(f"{g2g}.conv1.1", half, out)
        _fourier_unit(f"{g2g}.fu", half, out)
        if opts.enable_lfu:
            _fourier_unit(f"{g2g}.lfu", half, out)
        out[f"{g2g}.conv2.weight"] = ((out_cg, half, 1, 1), True)
    if ratio_gout != 1:
        _bn(f"{prefix}.bn_l", cout - out_cg, out)
    if ratio_gout != 0:
        _bn(f"{prefix}.bn_g", out_cg, out)


def generator_state_shapes(config: GeneratorConfig) -> dict[str, tuple[tuple[int, ...], bool]]:
    """The state dict ``FFCResNetGenerator(config)`` would have, computed without building it:
    ``{key: (shape, is_parameter)}`` in module order. Buffers are BatchNorm running
    statistics (float) and ``num_batches_tracked`` (int64, shape ``()``)."""
    c = config
    init, down, res = c.init_conv_kwargs, c.downsample_conv_kwargs, c.resnet_conv_kwargs
    out: dict[str, tuple[tuple[int, ...], bool]] = {}
    _ffc_bn_act("model.1", c.input_nc, c.ngf, 7, init, init.ratio_gout, out)
    index = 2
    for i in range(c.n_downsampling):
        ratio_gout = res.ratio_gin if i == c.n_downsampling - 1 else down.ratio_gout
        _ffc_bn_act(f"model.{index}", min(c.max_features, c.ngf * 2 ** i), min(c.max_features, c.ngf * 2 ** (i + 1)),
                    3, down, ratio_gout, out)
        index += 1
    bottleneck = min(c.max_features, c.ngf * 2 ** c.n_downsampling)
    for _ in range(c.n_blocks):
        for conv in ("conv1", "conv2"):
            _ffc_bn_act(f"model.{index}.{conv}", bottleneck, bottleneck, 3, res, res.ratio_gout, out)
        index += 1
    index += 1  # ConcatTupleLayer
    for i in range(c.n_downsampling):
        mult = 2 ** (c.n_downsampling - i)
        cin, cout = min(c.max_features, c.ngf * mult), min(c.max_features, int(c.ngf * mult / 2))
        out[f"model.{index}.weight"] = ((cin, cout, 3, 3), True)
        out[f"model.{index}.bias"] = ((cout,), True)
        _bn(f"model.{index + 1}", cout, out)
        index += 3
    index += 1  # ReflectionPad2d
    out[f"model.{index}.weight"] = ((c.output_nc, c.ngf, 7, 7), True)
    out[f"model.{index}.bias"] = ((c.output_nc,), True)
    return out


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for dim in shape:
        n *= dim
    return n


def count_generator_parameters(config: GeneratorConfig) -> int:
    """Parameters (not buffers) of ``FFCResNetGenerator(config)``, from the config alone."""
    return sum(_numel(shape) for shape, is_param in generator_state_shapes(config).values() if is_param)


def generator_state_bytes(config: GeneratorConfig) -> int:
    """Bytes of the generator's full float32 state dict (parameters and buffers)."""
    return sum(8 if not shape else 4 * _numel(shape) for shape, _ in generator_state_shapes(config).values())
