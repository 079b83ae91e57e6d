"""Export a model to ONNX: ``python jobs/export.py model=URI-or-preset output=FILE.onnx``.

One graph with dynamic batch, height and width: inputs ``image`` (N,3,H,W float 0-1) and
``mask`` (N,1,H,W 0/1), output the composited image (N,3,H,W float 0-1); the model id,
``lama_core`` version, generator config and this contract in its metadata
(``lama_core/onnx_export.py``; README "Export"). Needs the ``onnx`` extra
(``pip install -e '.[onnx]'``). ``--help`` lists every key.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a plain checkout

from pipelines.common.cli import run_job  # noqa: E402
from pipelines.export.config import ExportConfig  # noqa: E402  (light: parsing never waits for torch)


def main(cfg: ExportConfig) -> None:
    from pipelines.export.job import run_export

    summary = run_export(cfg)
    print(f"exported {summary.model_id} to {summary.path} ({summary.size_bytes / 2**20:.1f} MiB, opset "
          f"{summary.opset}, dft={summary.dft})")


if __name__ == "__main__":
    run_job(main, ExportConfig)
