"""Run the exported inpainting graph (``lama_core.onnx_export``) with ONNX Runtime or OpenVINO.

A session is built once (the Inpainter builds one per instance, i.e. once per model actor)
and then called per batch: ``session(image, mask) -> output`` with float32 torch tensors
``N x 3 x H x W`` / ``N x 1 x H x W`` in [0, 1] in, the composited float32
``N x 3 x H x W`` in [0, 1] out, on the session's device. Runtimes are imported here, inside
the functions, so that ``lama_core`` works without them.
"""
from __future__ import annotations

import os
import tempfile
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .backends import require
from .onnx_export import INPUT_NAMES, OUTPUT_NAME

Session = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def onnxruntime_providers(device: torch.device) -> list[Any]:
    """ONNX Runtime execution providers for ``device``: the CPU provider on CPU; on CUDA the
    CUDA provider on that device's index (then the CPU provider, which ORT uses for any node
    the CUDA one lacks). TensorRT is opt-in (pass ``providers=`` yourself, e.g.
    ``[("TensorrtExecutionProvider", {...}), "CUDAExecutionProvider"]``): it builds an engine
    per new input shape, minutes each, which suits fixed-size serving, not the Inpainter's
    windows of many sizes."""
    if device.type == "cpu":
        return ["CPUExecutionProvider"]
    if device.type == "cuda":
        return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
    raise ValueError(f"backend='onnxruntime' runs on cpu or cuda devices, got {device}")


def onnxruntime_session(model: bytes | str, device: torch.device | str = "cpu",
                        providers: Sequence[Any] | None = None, num_threads: int | None = None) -> Session:
    """An ONNX Runtime session over ``model`` (``.onnx`` bytes or a local path) on ``device``.
    ``providers``: ORT execution providers (default ``onnxruntime_providers(device)``);
    ``num_threads``: intra-op threads (default: torch's thread count, as the torch backend
    uses). Raises ``MissingExtraError`` without onnxruntime, ``RuntimeError`` when a
    requested provider is not in this onnxruntime build (CUDA needs ``onnxruntime-gpu``)."""
    ort = require("onnxruntime", "onnx", "backend='onnxruntime'")
    device = torch.device(device)
    providers = list(providers) if providers is not None else onnxruntime_providers(device)
    available = set(ort.get_available_providers())
    missing = [p if isinstance(p, str) else p[0] for p in providers
               if (p if isinstance(p, str) else p[0]) not in available]
    if missing:
        raise RuntimeError(f"onnxruntime {ort.__version__} here has no {', '.join(missing)} (it has "
                           f"{', '.join(sorted(available))}); for CUDA/TensorRT install onnxruntime-gpu")
    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads or torch.get_num_threads()
    session = ort.InferenceSession(model, options, providers=providers)
    if device.type == "cuda":
        return _bound_cuda_run(session, device)

    def run(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        feed = {INPUT_NAMES[0]: _numpy32(image), INPUT_NAMES[1]: _numpy32(mask)}
        return torch.from_numpy(session.run([OUTPUT_NAME], feed)[0])

    return run


def _numpy32(x: torch.Tensor) -> np.ndarray:
    return x.detach().to("cpu", torch.float32).contiguous().numpy()


def _bound_cuda_run(session: Any, device: torch.device) -> Session:
    """Run on CUDA through I/O binding: inputs and the output stay in torch's GPU memory
    (the output has the image's shape, so torch allocates it), no host round trip."""
    index = device.index or 0

    def run(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        image = image.to(device, torch.float32).contiguous()
        mask = mask.to(device, torch.float32).contiguous()
        out = torch.empty_like(image)
        binding = session.io_binding()
        for name, tensor in ((INPUT_NAMES[0], image), (INPUT_NAMES[1], mask)):
            binding.bind_input(name=name, device_type="cuda", device_id=index, element_type=np.float32,
                               shape=tuple(tensor.shape), buffer_ptr=tensor.data_ptr())
        binding.bind_output(name=OUTPUT_NAME, device_type="cuda", device_id=index, element_type=np.float32,
                            shape=tuple(out.shape), buffer_ptr=out.data_ptr())
        torch.cuda.synchronize(device)  # ORT runs on its own stream: the inputs must be written
        session.run_with_iobinding(binding)
        return out

    return run


def _dft_form(model: bytes | str) -> str:
    """The ``lama_core.dft`` metadata property of a graph (bytes or path), "" if absent."""
    onnx = require("onnx", "openvino", "backend='openvino'")
    proto = (onnx.load_model_from_string(model) if isinstance(model, (bytes, bytearray))
             else onnx.load_model(model, load_external_data=False))
    return next((p.value for p in proto.metadata_props if p.key == "lama_core.dft"), "")


#: OpenVINO's ``INFERENCE_PRECISION_HINT`` for each ``precision`` it runs. Set explicitly for
#: fp32 too: on CPUs with AVX512-BF16 or AMX, OpenVINO's default is bf16.
OPENVINO_PRECISION = {"fp32": "f32", "bf16": "bf16"}


def openvino_session(model: bytes | str, precision: str = "fp32", num_threads: int | None = None) -> Session:
    """An OpenVINO CPU model compiled from ``model`` (``.onnx`` bytes or a local path) with
    ``INFERENCE_PRECISION_HINT`` from ``precision`` (``fp32`` or ``bf16``: bf16 only where
    the CPU has it natively). ``num_threads``: default torch's thread count. Raises
    ``MissingExtraError`` without openvino."""
    ov = require("openvino", "openvino", "backend='openvino'")
    if precision not in OPENVINO_PRECISION:
        raise ValueError(f"backend='openvino' runs precision fp32 or bf16, got {precision!r}")
    if _dft_form(model) == "onnx":
        raise ValueError("OpenVINO misreads the onesided ONNX DFT of a graph exported with dft='onnx' "
                         "(wrong output shapes): export with dft='matmul' (the default) for OpenVINO")
    core = ov.Core()
    if isinstance(model, (bytes, bytearray)):
        # read_model takes a path for ONNX; the file is needed only while it is read.
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "model.onnx")
            with open(path, "wb") as f:
                f.write(model)
            ov_model = core.read_model(path)
    else:
        ov_model = core.read_model(model)
    config = {"INFERENCE_PRECISION_HINT": OPENVINO_PRECISION[precision],
              "INFERENCE_NUM_THREADS": num_threads or torch.get_num_threads()}
    request = core.compile_model(ov_model, "CPU", config).create_infer_request()

    def run(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        request.infer({INPUT_NAMES[0]: _numpy32(image), INPUT_NAMES[1]: _numpy32(mask)})
        return torch.from_numpy(request.get_tensor(OUTPUT_NAME).data.copy())

    return run
