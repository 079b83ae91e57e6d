"""Export a LaMa generator as one ONNX graph: image + mask in, composited image out.

The graph (``InpaintGraph``) holds the whole Inpainter contract for one batch, so any
runtime can use it without our Python code:

    inputs   image  float32 N x 3 x H x W in [0, 1]
             mask   float32 N x 1 x H x W, 1 = hole, 0 = known (values in between blend)
    output   output float32 N x 3 x H x W in [0, 1] = mask * generator + (1 - mask) * image

N, H and W are dynamic, any size >= 1: the symmetric padding to the generator's multiple
(8 for big-lama; at least twice the multiple, as the Inpainter does) and the crop back run
inside the graph.

The FFTs of the Fourier units are expressed in one of two ways (``dft=``):
``"matmul"`` (default): each real 2-D FFT as products with cos/sin matrices built in the
graph from the runtime H and W (standard ops only: MatMul, Cos, Sin, Mod; opset 18). Loads
and matches PyTorch in ONNX Runtime and OpenVINO (max abs diff 6e-8 on ORT for the small
preset; within 1e-4 everywhere tests/test_export.py looks), and uses only ops that ORT's
CUDA and TensorRT providers implement (not run here: no GPU).
``"onnx"``: torch's own ``rfftn``/``irfftn`` exported as the ONNX ``DFT`` operator (opset
20: real input, ``onesided``). ONNX Runtime only, and worse there: big-lama 512² took 6.3 s
against 2.6 s for ``"matmul"`` (ORT CPU, 2 cores; benchmarks/RESULTS.md), ORT's DFT kernel
is less exact away from power-of-two sizes (4.8e-4 at 1000x760), it has no GPU kernel (the
CUDA EP would hand every DFT node back to the CPU; TensorRT has no DFT layer), and OpenVINO
misreads its onesided output (refused by ``onnx_sessions.openvino_session``).
"""
from __future__ import annotations

import copy
import io
import json
import math
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from .backends import require
from .choices import DFT_MODES
from .fast_inference import fold_batchnorm
from .ffc import FFCResNetGenerator, FourierUnit
from .presets import generator_config_to_dict

DEFAULT_DFT = "matmul"
#: Lowest opset each DFT mode exports at: DFT-20 takes real input and a runtime length.
MIN_OPSET = {"matmul": 18, "onnx": 20}
INPUT_NAMES = ("image", "mask")
OUTPUT_NAME = "output"
CONTRACT = ("inputs: image float32 [N,3,H,W] in [0,1], mask float32 [N,1,H,W] 1=hole 0=known; "
            "output: output float32 [N,3,H,W] in [0,1] = mask*generator(image*(1-mask), mask) + (1-mask)*image; "
            "N, H, W dynamic (>= 1): symmetric padding to the generator's size multiple and the crop back "
            "are inside the graph")


def _count(size: int, like: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``size`` (a possibly symbolic int) as a scalar tensor, without letting the exporter
    specialise the graph on its value (the exporter cannot take a symbolic size as the
    second operand of ``%``, so sizes enter arithmetic as tensors)."""
    return torch.ones(size, dtype=dtype, device=like.device).sum()


def _angles(n: int, k: int, like: torch.Tensor) -> torch.Tensor:
    """float32 ``n x k``: ``2 pi (i * j mod n) / n``. The product is reduced modulo ``n`` in
    integers first, so the angle stays in [0, 2 pi) and cos/sin keep full float32 accuracy
    at any size (an unreduced 2047 * 1023 radians would lose ~3 digits)."""
    i = torch.arange(n, device=like.device)
    j = torch.arange(k, device=like.device)
    return (i[:, None] * j[None, :] % _count(n, like, torch.int64)).float() * (2 * math.pi) / _count(n, like)


class MatmulFourierUnit(nn.Module):
    """A ``FourierUnit`` whose orthonormal real 2-D FFT and its inverse are products with
    cos/sin matrices instead of FFT calls: same function (within float32 rounding), made of
    MatMul/Cos/Sin only, so it exports to any ONNX runtime and execution provider.

    ``N x C x H x W`` float32 -> ``N x C_out x H x W``; shares the conv/BN/ReLU of ``unit``.
    Cost: O(H W (H + W)) per channel against FFT's O(H W log(H W)): at big-lama's 64x64
    bottleneck (512 px images) ~7% of the generator's multiply-adds.
    """

    def __init__(self, unit: FourierUnit):
        super().__init__()
        self.conv_layer, self.bn, self.relu = unit.conv_layer, unit.bn, unit.relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        x = x.float()
        kw = w // 2 + 1
        a_w = _angles(w, kw, x)                                   # w x kw
        a_h = _angles(h, h, x)                                    # h x h (symmetric)
        norm_w, norm_h = torch.rsqrt(_count(w, x)), torch.rsqrt(_count(h, x))
        # Forward along W (real -> onesided): [re | im] = x @ [cos | -sin] / sqrt(w).
        z = x @ (torch.cat([torch.cos(a_w), -torch.sin(a_w)], dim=1) * norm_w)     # N C h 2kw
        # Along H (complex, full): (cos - i sin) @ (re + i im), both halves in one product.
        cs_h = torch.cat([torch.cos(a_h), torch.sin(a_h)], dim=0) * norm_h         # 2h x h
        p = cs_h @ z                                                                # N C 2h 2kw
        c_re, c_im, s_re, s_im = p[..., :h, :kw], p[..., :h, kw:], p[..., h:, :kw], p[..., h:, kw:]
        re, im = c_re + s_im, c_im - s_re
        # Channel order (c0.re, c0.im, c1.re, ...), as FourierUnit.
        ffted = torch.stack((re, im), dim=2).reshape(n, -1, h, kw)
        ffted = self.relu(self.bn(self.conv_layer(ffted)))
        ffted = ffted.reshape(n, -1, 2, h, kw)
        z = torch.cat([ffted[:, :, 0], ffted[:, :, 1]], dim=-1)                    # N C h 2kw
        p = cs_h @ z
        c_re, c_im, s_re, s_im = p[..., :h, :kw], p[..., :h, kw:], p[..., h:, :kw], p[..., h:, kw:]
        # Inverse along H: (cos + i sin) @ (re + i im).
        re, im = c_re - s_im, c_im + s_re
        # Inverse along W (onesided -> real): every bin but DC and Nyquist stands for itself
        # and its mirror (weight 2); their imaginary parts drop out (sin(0) = 0; the Nyquist
        # row's weight is zeroed explicitly, as pocketfft ignores it).
        k = torch.arange(kw, device=x.device)
        doubled = ((k > 0) & (2 * k != w)).float() + 1
        sin_weight = torch.where(2 * k == w, torch.zeros_like(doubled), doubled)
        a_t = a_w.transpose(0, 1)                                                   # kw x w
        inverse = torch.cat([torch.cos(a_t) * doubled[:, None], -torch.sin(a_t) * sin_weight[:, None]], dim=0)
        return (torch.cat([re, im], dim=-1) @ (inverse * norm_w)).to(x.dtype)


def mirror_index(size: int, padded: int, device: torch.device) -> torch.Tensor:
    """int64 ``padded``: indices of a symmetric (edge-including) padding of ``size`` items
    to ``padded``, mirrored again when the pad is longer than the map: numpy's
    ``np.pad(np.arange(size), (0, padded - size), mode="symmetric")``."""
    n = torch.ones(size, dtype=torch.int64, device=device).sum()  # a tensor, see _count
    j = torch.arange(padded, device=device) % (2 * n)
    return torch.where(j < n, j, 2 * n - 1 - j)


class InpaintGraph(nn.Module):
    """What the ONNX graph computes (module docstring): ``forward(image, mask)`` with
    ``image`` float32 ``N x 3 x H x W`` in [0, 1], ``mask`` float32 ``N x 1 x H x W`` in
    {0, 1}; returns the composited float32 ``N x 3 x H x W`` in [0, 1]. Pads like
    ``lama_core.inpainter.pad_to_multiple`` (bottom/right, symmetric, to a multiple of
    ``max(8, size_multiple)`` and at least ``2 * size_multiple``)."""

    def __init__(self, generator: FFCResNetGenerator):
        super().__init__()
        self.generator = generator
        self.multiple = max(8, generator.size_multiple)
        minimum = 2 * generator.size_multiple
        self.minimum = -(-minimum // self.multiple) * self.multiple

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        m = self.multiple
        hp = torch.sym_max((h + m - 1) // m * m, self.minimum)
        wp = torch.sym_max((w + m - 1) // m * m, self.minimum)
        x = torch.cat([image * (1 - mask), mask], dim=1)
        x = x.index_select(2, mirror_index(h, hp, x.device)).index_select(3, mirror_index(w, wp, x.device))
        out = self.generator(x)[:, :, :h, :w]
        return mask * out + (1 - mask) * image


def export_graph_module(generator: FFCResNetGenerator, dft: str = DEFAULT_DFT) -> InpaintGraph:
    """The ``InpaintGraph`` that gets exported: an eval-mode float32 copy of ``generator``
    with its BatchNorms folded (``fold_batchnorm``: the runtimes cannot fold a BN that
    follows a sum of two convs) and, for ``dft="matmul"``, every ``FourierUnit`` replaced
    by a ``MatmulFourierUnit``. The caller's module is not changed."""
    if dft not in DFT_MODES:
        raise ValueError(f"dft must be one of {', '.join(DFT_MODES)}, got {dft!r}")
    folded = fold_batchnorm(copy.deepcopy(generator).float().cpu().eval())
    if dft == "matmul":
        for parent in list(folded.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, FourierUnit):
                    setattr(parent, name, MatmulFourierUnit(child))
    return InpaintGraph(folded).eval()


@dataclass
class OnnxGraph:
    """A serialised ONNX model (``data``, bytes of a ``.onnx`` file) and the metadata
    properties written into it (str -> str)."""

    data: bytes
    metadata: dict[str, str]


def _lama_core_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lama-at-scale")
    except PackageNotFoundError:
        return "unknown"


def export_onnx_bytes(generator: FFCResNetGenerator, *, opset: int | None = None, dft: str = DEFAULT_DFT,
                      model_id: str = "") -> OnnxGraph:
    """Export ``generator`` (any ``FFCResNetGenerator``; not changed) as the graph of the
    module docstring and return it in memory. ``opset``: the ONNX opset (default and
    minimum: 18 for ``dft="matmul"``, 20 for ``dft="onnx"``). ``model_id``: written into the
    metadata (``lama_core.model_id``). Needs the ``onnx`` extra (onnx, onnxscript).
    Takes ~25 s for the ``small`` preset and ~1 min for big-lama (matmul, 2 cores)."""
    require("onnxscript", "onnx", "ONNX export")
    onnx = require("onnx", "onnx", "ONNX export")
    module = export_graph_module(generator, dft)
    opset = MIN_OPSET[dft] if opset is None else opset
    if opset < MIN_OPSET[dft]:
        raise ValueError(f"dft={dft!r} needs opset >= {MIN_OPSET[dft]}, got {opset}")
    # Example sizes off the multiple of 8 and a batch of 2, so nothing specialises on 1 or on
    # an already padded size.
    image, mask = torch.rand(2, 3, 44, 60), (torch.rand(2, 1, 44, 60) > 0.5).float()
    dim = torch.export.Dim
    n, h, w = dim("batch", min=1, max=4096), dim("height", min=1, max=16384), dim("width", min=1, max=16384)
    with torch.no_grad(), warnings.catch_warnings():
        # The exporter warns that image's and mask's dims share their names: they are meant to.
        warnings.filterwarnings("ignore", message=".*axis name", category=UserWarning)
        # optimize=False: onnxscript's optimizer took minutes on big-lama's graph; the runtimes
        # fold constants and fuse themselves when they load it.
        program = torch.onnx.export(module, (image, mask), dynamo=True, opset_version=opset, verbose=False,
                                    optimize=False, input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
                                    dynamic_shapes={"image": {0: n, 2: h, 3: w}, "mask": {0: n, 2: h, 3: w}})
    model = program.model_proto
    # The exporter annotates intermediate shapes with symbolic sizes that are wrong for the
    # DFT outputs (ORT then refuses its own buffers); runtimes infer them anyway.
    del model.graph.value_info[:]
    metadata = {
        "lama_core.model_id": model_id,
        "lama_core.version": _lama_core_version(),
        "lama_core.generator_config": json.dumps(generator_config_to_dict(generator.config)),
        "lama_core.contract": CONTRACT,
        "lama_core.dft": dft,
        "lama_core.pad_multiple": str(module.multiple),
    }
    onnx.helper.set_model_props(model, metadata)
    model.producer_name = "lama_core"
    buffer = io.BytesIO()
    onnx.save_model(model, buffer)
    return OnnxGraph(buffer.getvalue(), metadata)


def export_onnx(generator: FFCResNetGenerator, path: str, *, opset: int | None = None, dft: str = DEFAULT_DFT,
                model_id: str = "", endpoint_url: str | None = None) -> dict[str, str]:
    """``export_onnx_bytes`` written to ``path`` (a local path or fsspec URI, see
    ``lama_core.storage``); returns the graph's metadata properties."""
    from .storage import write_bytes

    graph = export_onnx_bytes(generator, opset=opset, dft=dft, model_id=model_id)
    write_bytes(path, graph.data, endpoint_url)
    return graph.metadata


def read_onnx_metadata(data: bytes) -> dict[str, str]:
    """The metadata properties of a serialised ONNX model (``bytes`` of a ``.onnx`` file)."""
    onnx = require("onnx", "onnx", "reading ONNX metadata")
    model = onnx.load_model_from_string(data)
    return {p.key: p.value for p in model.metadata_props}


@dataclass
class ExportSummary:
    """What ``export_model`` wrote: ``path`` (the URI given), ``size_bytes``, ``opset``,
    ``dft``, ``model_id``."""

    path: str
    size_bytes: int
    opset: int
    dft: str
    model_id: str


def export_model(model: str, output_path: str, *, opset: int | None = None, dft: str = DEFAULT_DFT, seed: int = 0,
                 endpoint_url: str | None = None) -> ExportSummary:
    """Load ``model`` (a checkpoint URI that ``lama_core.load_generator`` reads, e.g. the
    official ``big-lama`` folder or ``best.ckpt``, or a preset name: random weights drawn
    with ``torch.manual_seed(seed)``), export it (``export_onnx_bytes``) and write the
    ``.onnx`` file to ``output_path`` (local path or fsspec URI). Raises what
    ``load_generator`` raises for a missing or incompatible model, ``MissingExtraError``
    without the ``onnx`` extra."""
    from .model_source import generator_for, model_id
    from .storage import write_bytes

    generator = generator_for(model, seed, endpoint_url)
    ident = model_id(model, generator, seed)
    graph = export_onnx_bytes(generator, opset=opset, dft=dft, model_id=ident)
    write_bytes(output_path, graph.data, endpoint_url)
    return ExportSummary(output_path, len(graph.data), opset or MIN_OPSET[dft], dft, ident)
