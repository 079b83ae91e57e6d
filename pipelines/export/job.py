"""The export job's driver: resolve the model as every job does, export it, turn a missing
model or extra into one line."""
from __future__ import annotations

from lama_core.onnx_export import ExportSummary, export_model

from pipelines.common.config_kit import check_config
from pipelines.common.errors import JobError
from pipelines.common.storage import CHECKOUT, absolute_uri
from pipelines.export.config import ExportConfig


def run_export(cfg: ExportConfig) -> ExportSummary:
    """Export ``cfg.model`` to ``cfg.output`` (``lama_core.onnx_export.export_model``). Raises
    ``JobError`` (one line) for a missing or incompatible model or a missing extra."""
    from lama_core import CheckpointError, MissingExtraError
    from lama_core.choices import PRESETS

    check_config(cfg)
    model = cfg.model if cfg.model in PRESETS else absolute_uri(cfg.model, CHECKOUT)
    try:
        return export_model(model, absolute_uri(cfg.output), opset=cfg.opset or None, dft=cfg.dft, seed=cfg.seed,
                            endpoint_url=cfg.endpoint_url)
    except MissingExtraError as exc:
        raise JobError(str(exc)) from exc
    except (FileNotFoundError, CheckpointError, ValueError) as exc:
        raise JobError(f"cannot export model {cfg.model}: {str(exc).splitlines()[0]}") from exc
