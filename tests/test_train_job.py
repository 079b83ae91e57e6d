"""Distributed training with Ray Train: 2 CPU workers (gloo) checkpointing to a local S3
endpoint, exact resume, recovery from a worker failure, resume after the driver or every Ray
process was killed (SIGKILL) and past a truncated checkpoint, and `ray job submit`."""
from __future__ import annotations

import io
import json
import os
import signal
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
from pipelines.train.config import TrainConfig
from pipelines.train.checkpoints import state_digest
from pipelines.train.ray_job import run_training

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def small_photos(n: int = 6, size: int = 80) -> list[bytes]:
    from pipelines.common.samples import sample_photos

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
    cfg = TrainConfig(model="small", recipe="no-perceptual", num_workers=2, cpus_per_worker=0.5, batch_size=2,
                      crop_size=64, log_every=2, checkpoint_every=2, validation_images=2, max_failures=0, seed=3)
    return replace(cfg, **overrides)


def test_two_workers_checkpoint_to_s3_then_resume_exactly(ray_local, s3_training_data):
    bucket = s3_training_data
    cfg = base_config(input=f"{bucket}/train", output=f"{bucket}/runs", name="exp", steps=2)
    first = run_training(cfg)
    assert first.checkpoint == f"{bucket}/runs/exp/checkpoint_000000002"
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
    # The glob users write matches checkpoint folders only (Ray's files live in ray_train/).
    assert fs.glob(f"{bucket[5:]}/runs/exp/checkpoint_*") == [f"{bucket[5:]}/runs/exp/checkpoint_00000000{s}"
                                                              for s in (2, 4)]
    files = {p.rsplit("/", 1)[-1] for p in fs.ls(second.checkpoint[5:])}
    assert {"generator.safetensors", "discriminator.safetensors", "training_state.pt", "validation.png",
            "config.json", "metrics.json", "complete.json"} <= files
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
    with pytest.raises(RuntimeError) as failed:
        run_training(replace(cfg, name="flaky-no-retry", max_failures=0))
    # The first line (what jobs/train.py prints) names the worker and its error.
    assert str(failed.value).splitlines()[0] == ("training failed: worker rank 1: RuntimeError: fail_at_step=3: "
                                                 "simulated worker failure (testing aid)")


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
                   "python", "jobs/train.py", "recipe=no-perceptual", "steps=2", "batch_size=2", "crop_size=64",
                   "log_every=1",
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

    import dataclasses

    import yaml

    from lama_core import build_discriminator, build_generator
    from lama_core.presets import generator_config
    from pipelines.train.loop import build_models

    torch.manual_seed(1)
    generator, discriminator = build_generator("small"), build_discriminator("small")
    state = collections.OrderedDict({f"generator.{k}": v for k, v in generator.state_dict().items()})
    state.update({f"discriminator.{k}": v for k, v in discriminator.state_dict().items()})
    state["loss_resnet_pl.impl.conv1.weight"] = torch.zeros(2, 3, 3, 3)
    # The official layout: config.yaml (the generator's architecture) + models/best.ckpt.
    (tmp_path / "models").mkdir()
    torch.save({"state_dict": state, "global_step": 7}, tmp_path / "models" / "best.ckpt")
    config = {"kind": "ffc_resnet", **dataclasses.asdict(generator_config("small"))}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"generator": config}))
    g, d = build_models(str(tmp_path))
    assert state_digest(g) == state_digest(generator)
    assert state_digest(d) == state_digest(discriminator)


# -- crashes: SIGKILL of the driver, of every Ray process, a truncated latest checkpoint ---

def _session_pids(sid: int) -> list[int]:
    """Processes of the session ``sid`` (the driver's pid when started with start_new_session):
    the driver, the local Ray it started (gcs, raylet, agents) and Ray's workers, which sit in
    process groups of their own but stay in the driver's session."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
                if state != "Z" and os.getsid(int(entry)) == sid:  # zombies are dead already
                    pids.append(int(entry))
            except (OSError, IndexError):
                pass
    return pids


def _ray_still_running(sid: int) -> bool:
    """Whether the session still runs Ray's core or workers. Ray's dashboard and runtime-env
    agents outlive a SIGKILLed driver as orphans; they do not train or write."""
    for pid in _session_pids(sid):
        try:
            with open(f"/proc/{pid}/comm") as f:
                name = f.read().strip()
        except OSError:
            continue
        if name not in ("ray::DashboardA", "ray::RuntimeEnv"):
            return True
    return False


def _kill_session(sid: int) -> None:
    for pid in _session_pids(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _launch_training(args: list[str], log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)  # its own local Ray, as a user's laptop run
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, str(REPO / "jobs" / "train.py"), *args], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for_step(run: str, proc: subprocess.Popen, step: int, log: Path, timeout: float = 600) -> None:
    """Wait until ``run`` has a complete checkpoint at ``step`` or later."""
    from lama_core.training_checkpoint import latest_checkpoint

    deadline = time.time() + timeout
    while time.time() < deadline:
        latest = latest_checkpoint(run)
        if latest is not None and latest.step >= step:
            return
        if proc.poll() is not None:
            pytest.fail(f"training exited early ({proc.returncode}): {log.read_text()[-3000:]}")
        time.sleep(0.2)
    _kill_session(proc.pid)
    pytest.fail(f"no checkpoint at step {step} in {timeout} s: {log.read_text()[-3000:]}")


def _metrics_of(uri: str) -> dict:
    return json.loads((Path(uri) / "metrics.json").read_text())


def test_resume_after_sigkill_of_driver_then_of_all_ray_processes_and_past_a_truncated_checkpoint(tmp_path):
    """(1) SIGKILL the driver after 2 checkpoints; plant a half-written checkpoint of a later
    step (as a crash mid-write leaves it); (2) the rerun ignores and removes it and continues
    from the last complete checkpoint with exactly its weights; SIGKILL every process of the
    driver's session (driver, local Ray, workers: a node crash) 2 checkpoints later, then
    truncate the latest checkpoint's generator; (3) the rerun warns naming the file,
    continues from the checkpoint before it, finishes, and names its last checkpoint.
    (Local storage: polling moto from this process while it takes a checkpoint per step is
    too slow to stop the first run early; the layout on S3 is in test_training_checkpoint.)"""
    import shutil

    from lama_core.training_checkpoint import COMPLETE_FILE, checkpoint_name, latest_checkpoint, list_checkpoints
    from pipelines.evaluate.checkpoints import expand_checkpoints

    run = str(tmp_path / "runs" / "crash")
    args = ["model=small", "recipe=no-perceptual", "batch_size=2", "crop_size=32", "validation_images=2", "log_every=1",
            "checkpoint_every=1", "keep_checkpoints=2", f"output={tmp_path / 'runs'}", "name=crash"]

    first = _launch_training([*args, "steps=100000"], tmp_path / "first.log")
    try:
        _wait_for_step(run, first, 2, tmp_path / "first.log")
        first.kill()  # SIGKILL, the driver alone; Ray's processes follow it or are orphaned
        first.wait()
        deadline = time.time() + 60  # the workers die with the driver; they may finish a write first
        while time.time() < deadline and _ray_still_running(first.pid):
            time.sleep(0.5)
    finally:
        _kill_session(first.pid)  # whatever outlived the driver (Ray's agents): not ours to leave
    resume_from = latest_checkpoint(run)
    assert resume_from is not None and resume_from.step >= 2
    resume_digest = state_digest(load_generator(resume_from.uri))
    half = Path(run) / checkpoint_name(resume_from.step + 1000)
    shutil.copytree(resume_from.uri, half)
    (half / COMPLETE_FILE).unlink()
    (half / "generator.safetensors").write_bytes(b"half-written")
    assert expand_checkpoints(f"{run}/checkpoint_*")[0] == [c.uri for c in list_checkpoints(run) if c.usable]

    second = _launch_training([*args, "steps=100000"], tmp_path / "second.log")
    try:
        _wait_for_step(run, second, resume_from.step + 2, tmp_path / "second.log")
    finally:
        _kill_session(second.pid)  # driver, gcs, raylet, workers: all at once
        second.wait()
    deadline = time.time() + 30
    while time.time() < deadline and _session_pids(second.pid):
        time.sleep(0.5)
    assert not _session_pids(second.pid)
    assert not half.exists()  # the rerun removed it
    assert f"removed incomplete checkpoint {half}" in (tmp_path / "second.log").read_text()
    continued = [c for c in list_checkpoints(run) if c.usable]
    metrics = _metrics_of(continued[-1].uri)
    assert metrics["start_step"] == resume_from.step and metrics["resumed_from"] == resume_from.uri
    assert metrics["start_generator_digest"] == resume_digest

    latest, before = continued[-1], continued[-2]
    generator = Path(latest.uri) / "generator.safetensors"
    generator.write_bytes(generator.read_bytes()[:1000])
    target = latest.step + 1
    env = dict(os.environ, PYTHONPATH=str(REPO), RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    third = subprocess.run([sys.executable, str(REPO / "jobs" / "train.py"), *args, f"steps={target}"], env=env,
                           capture_output=True, text=True, timeout=600, start_new_session=True)
    output = third.stdout + third.stderr
    assert third.returncode == 0, output[-3000:]
    assert f"warning: skipping checkpoint {latest.uri}: {generator} is 1,000 bytes" in output
    assert f"trained from {before.uri} (step {before.step}) to step {target}" in output
    last = third.stdout.strip().splitlines()[-1]
    assert last == f"latest checkpoint: {run}/{checkpoint_name(target)}"
    assert load_generator(last.split(": ", 1)[1]).config.ngf == 16
