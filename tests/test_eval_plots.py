"""Evaluation plots: one line per training run, never one line across runs."""
import io

from PIL import Image

from pipelines.evaluate.plots import METRIC_UNITS, metrics_plot_png, run_of


def test_run_of_groups_checkpoints_by_their_folder():
    assert run_of("s3://b/runs/exp1/checkpoint_000100") == "s3://b/runs/exp1"
    assert run_of("/r/exp2/checkpoint_000100/") == "/r/exp2"
    assert run_of("/r/exp2/checkpoint_000100/generator.safetensors") == "/r/exp2"
    assert run_of("/models/big-lama/models/best.ckpt") == "/models/big-lama"


def test_plot_of_two_runs_and_a_reference_is_a_png():
    points = [{"checkpoint": f"/r/{run}/checkpoint_{step:06d}", "step": step, "psnr": 20 + step / 100 + k,
               "fid": 5.0 - k} for k, run in enumerate(("a", "b")) for step in (100, 200, 300)]
    points.append({"checkpoint": "/models/big-lama", "step": None, "psnr": 25.0, "fid": 1.0})
    png = metrics_plot_png(points, ["psnr", "fid"], "thick_512")
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.width > 300
    assert "dB" in METRIC_UNITS["psnr"]
