"""Shared fixtures: paths to the official reference vectors."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The official vectors, copied into the repository (tests/data/reference/README.md says whence).
REFERENCE_DIR = Path(os.environ.get("LAMA_REFERENCE_DIR", REPO / "tests" / "data" / "reference"))


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """Folder with the official test vectors (``ffc_small.npz``, the state-dict manifest)."""
    if not REFERENCE_DIR.exists():
        pytest.fail(f"reference vectors not found at {REFERENCE_DIR} (set LAMA_REFERENCE_DIR)")
    return REFERENCE_DIR


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 endpoint on loopback (moto's server), for the whole test session.

    Sets ``AWS_ENDPOINT_URL`` and dummy credentials in this process's environment, so s3fs
    here and in Ray worker processes started afterwards both reach it. Yields the URL.
    """
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                             "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION="us-east-1")
    yield url
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def s3_bucket(s3_endpoint, request) -> str:
    """A fresh, empty bucket on the local S3 endpoint; yields ``s3://<name>``."""
    import re
    import uuid

    import boto3

    name = re.sub(r"[^a-z0-9-]", "-", f"t-{request.node.name.lower()}")[:40].rstrip("-") + "-" + uuid.uuid4().hex[:8]
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    return f"s3://{name}"


@pytest.fixture(scope="session")
def ray_local(s3_endpoint):
    """One local Ray instance for the whole test session (2 CPUs, small object store).

    Started after the S3 endpoint so that Ray's worker processes inherit its address and
    credentials. ``address="local"`` never attaches to another cluster on the machine.
    """
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=512 * 2**20,
                 log_to_driver=False)
    yield
    if started:
        ray.shutdown()
