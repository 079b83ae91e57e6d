"""Distributed training with Ray Train: 2 CPU workers (gloo) checkpointing to a local S3
endpoint, exact resume, recovery from a worker failure, and `ray job submit`."""
from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lama_core import load_generator
from pipelines.configs import TrainConfig
from pipelines.train import run_training, state_digest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def small_photos(n: int = 6, size: int = 80) -> list[bytes]:
    from pipelines.samples import sample_photos

    photos = list(sample_photos().values())[:n]
    return [_png(np.asarray(Image.fromarray(p).resize((size, size)))) for p in photos]


@pytest.fixture
def s3_training_data(s3_bucket):
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": os.environ["AWS_ENDPOINT_URL"]})
    for i, data in enumerate(small_photos()):
        fs.pipe(f"{s3_bucket[5:]}/train/img{i}.png", data)
    return s3_bucket


def base_config(**overrides) -> TrainConfig:
    cfg = TrainConfig(model="small", num_workers=2, cpus_per_worker=0.5, batch_size=2, crop_size=64,
                      log_every=2, checkpoint_every=2, validation_images=2, max_failures=0, seed=3)
    return replace(cfg, **overrides)


def test_two_workers_checkpoint_to_s3_then_resume_exactly(ray_local, s3_training_data):
    bucket = s3_training_data
    cfg = base_config(input=f"{bucket}/train", output=f"{bucket}/runs", name="exp", steps=2)
    first = run_training(cfg)
    assert first.checkpoint.startswith(f"{bucket}/runs/exp/checkpoint_")
    assert first.metrics["step"] == 2 and first.metrics["start_step"] == 0
    saved = load_generator(first.checkpoint)  # our checkpoint loads for inference, from S3
    assert not saved.training

    second = run_training(replace(cfg, steps=4))
    # The resumed run starts at step 2 with exactly the weights of the step-2 checkpoint.
    assert second.metrics["step"] == 4
    assert second.metrics["start_step"] == 2
    assert second.metrics["start_generator_digest"] == state_digest(saved)
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": os.environ["AWS_ENDPOINT_URL"]})
    files = {p.rsplit("/", 1)[-1] for p in fs.ls(second.checkpoint[5:])}
    assert {"generator.safetensors", "discriminator.safetensors", "training_state.pt", "validation.png",
            "config.json"} <= files
    grid = Image.open(io.BytesIO(fs.cat(f"{second.checkpoint[5:]}/validation.png")))
    assert grid.size == (4 * 64, 2 * 64)  # input | mask | output | target, one row per image
    assert state_digest(load_generator(second.checkpoint)) != state_digest(saved)  # and it trained on


def test_worker_failure_recovers_from_the_last_checkpoint(ray_local, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for i, png in enumerate(small_photos(6)):  # 2 of them held out for validation
        (data / f"p{i}.png").write_bytes(png)
    cfg = base_config(input=str(data), output=str(tmp_path / "runs"), name="flaky", steps=4, fail_at_step=3,
                      max_failures=1)
    outcome = run_training(cfg)
    # The first attempt died at step 3; the restarted group resumed from the step-2 checkpoint.
    assert outcome.metrics["step"] == 4
    assert outcome.metrics["start_step"] == 2
    with pytest.raises(RuntimeError, match="simulated worker failure"):
        run_training(replace(cfg, name="flaky-no-retry", max_failures=0))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_job_submit_runs_training_on_a_local_cluster(tmp_path):
    import tempfile

    # Ray's unix sockets live under --temp-dir: keep its path short (108-byte socket limit).
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    bin_dir = Path(sys.executable).parent
    # Ray 2.60 clusters started with `ray start` require token authentication; clients
    # pick the token the head generated (~/.ray/auth_token) in token mode.
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", RAY_USAGE_STATS_ENABLED="0",
               RAY_AUTH_MODE="token")
    env.pop("RAY_ADDRESS", None)
    gcs_port, dash_port = _free_port(), _free_port()
    # The test session's own Ray already holds the default agent ports on this machine.
    agent_ports = [f"--{name}={_free_port()}" for name in (
        "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
        "runtime-env-agent-port", "ray-client-server-port")]
    head = subprocess.Popen([str(bin_dir / "ray"), "start", "--head", "--block", f"--port={gcs_port}",
                             *agent_ports,
                             f"--dashboard-port={dash_port}", "--dashboard-host=127.0.0.1", "--num-cpus=2",
                             "--include-dashboard=true", f"--temp-dir={ray_tmp}"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        address = f"http://127.0.0.1:{dash_port}"
        deadline = time.time() + 120
        while time.time() < deadline:
            probe = subprocess.run([str(bin_dir / "ray"), "job", "list", "--address", address], env=env,
                                   capture_output=True, text=True)
            if probe.returncode == 0:
                break
            time.sleep(2)
        else:
            pytest.fail("the local Ray head's job server did not come up")
        out = tmp_path / "runs"
        command = [str(bin_dir / "ray"), "job", "submit", "--address", address, "--working-dir", str(REPO), "--",
                   "python", "jobs/train.py", "steps=2", "batch_size=2", "crop_size=64", "log_every=1",
                   "checkpoint_every=2", "validation_images=2", f"output={out}", "name=submitted"]
        for _ in range(30):  # the head's job agent starts a little after the job server
            result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=420)
            if "No available agent" not in result.stderr:
                break
            time.sleep(3)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert "succeeded" in result.stdout
        last = [line for line in result.stdout.splitlines() if line.startswith("latest checkpoint: ")]
        assert last, result.stdout[-3000:]
        checkpoint = last[-1].split(": ", 1)[1].strip()
        assert load_generator(checkpoint).config.ngf == 16
    finally:
        import signal

        try:
            os.killpg(head.pid, signal.SIGTERM)
            head.wait(timeout=60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(head.pid, signal.SIGKILL)


def test_fine_tuning_starts_from_an_official_checkpoint(tmp_path):
    """model=URI loads G and D from a LaMa Lightning checkpoint (official layout)."""
    import collections

    import torch

    from lama_core import build_discriminator, build_generator
    from pipelines.train import build_models

    torch.manual_seed(1)
    generator, discriminator = build_generator("small"), build_discriminator("small")
    state = collections.OrderedDict({f"generator.{k}": v for k, v in generator.state_dict().items()})
    state.update({f"discriminator.{k}": v for k, v in discriminator.state_dict().items()})
    state["loss_resnet_pl.impl.conv1.weight"] = torch.zeros(2, 3, 3, 3)
    torch.save({"state_dict": state, "global_step": 7}, tmp_path / "best.ckpt")
    g, d = build_models(TrainConfig(model=str(tmp_path / "best.ckpt")))
    assert state_digest(g) == state_digest(generator)
    assert state_digest(d) == state_digest(discriminator)
