"""``jobs/export.py``'s typed config (light: no torch)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from lama_core.choices import DFT_MODES

from pipelines.common.config_kit import DEFAULT_MODEL, choices, non_negative, setting


@dataclass
class ExportConfig:
    """``jobs/export.py``: write one ONNX graph of a model: dynamic batch, height and width;
    inputs image (N,3,H,W float 0-1) and mask (N,1,H,W 0/1); output the composited image."""

    model: str = setting(DEFAULT_MODEL, "checkpoint URI (big-lama folder, best.ckpt, generator.safetensors, a "
                                        "training checkpoint) or a preset name (RANDOM weights)")
    output: str = setting("outputs/model.onnx", "the .onnx file to write (local path or URI)")
    dft: str = setting("matmul", "FFTs as real matrix products (matmul: opset 18, ONNX Runtime and OpenVINO, "
                                 "2.5x faster on ORT CPU) or as ONNX DFT nodes (onnx: opset 20, ONNX Runtime only)")
    opset: int = setting(0, "ONNX opset; 0 = the lowest the dft form needs (18 or 20)")
    seed: int = setting(0, "weight seed when `model` is a preset name")
    endpoint_url: Optional[str] = setting(None, "S3-compatible endpoint; null = AWS_ENDPOINT_URL, else AWS")

    def problems(self) -> list[str]:
        """Every value out of range, one sentence each (empty: the config is good)."""
        problems = non_negative(self, "opset", "seed") + choices(self, dft=DFT_MODES)
        if not self.output.endswith(".onnx"):
            problems.append(f"output must name a .onnx file, got {self.output!r}")
        return problems
