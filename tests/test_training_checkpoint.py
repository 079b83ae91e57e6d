"""The training-checkpoint layout (lama_core.training_checkpoint) without Ray: names sort by
step, ``complete.json`` decides completeness, damaged checkpoints are skipped with the file
named, resume falls back to the one before, cleanup and pruning; locally and on S3."""
from __future__ import annotations

import json
import os
import re

import pytest
import torch

from lama_core import build_discriminator, build_generator, load_generator
from lama_core.training import GANTrainingStep, TrainingConfig
from lama_core.training_checkpoint import (COMPLETE_FILE, checkpoint_name, checkpoint_problem, latest_checkpoint,
                                           list_checkpoints, prune_checkpoints, remove_incomplete, resume_latest,
                                           step_of, verify_checkpoint, write_checkpoint)
from pipelines.evaluate.checkpoints import expand_checkpoints
from pipelines.train.config import TrainConfig
from pipelines.train.checkpoints import resume_from_run, restore_checkpoint, save_training_checkpoint, state_digest


def files(step: int) -> dict[str, bytes]:
    return {"generator.safetensors": bytes([step % 256]) * (100 + step), "training_state.pt": b"s" * 50}


def test_names_sort_by_step_and_parse_back():
    steps = [0, 7, 120, 99_999, 1_000_000, 999_999_999]
    names = [checkpoint_name(s) for s in steps]
    assert names[2] == "checkpoint_000000120"
    assert sorted(names) == names
    assert [step_of(n) for n in names] == steps
    assert step_of("runs/x/checkpoint_000000120/") == 120
    for other in ("checkpoint_manager_snapshot.json", "checkpoint_000120", "checkpoint_12a", "ray_train"):
        assert step_of(other) is None
    with pytest.raises(ValueError):
        checkpoint_name(-1)


def test_complete_incomplete_truncated_cleanup_and_pruning(tmp_path):
    run = str(tmp_path / "run")
    assert list_checkpoints(run) == [] and latest_checkpoint(run) is None
    for step in (2, 4, 6, 8):
        write_checkpoint(run, step, files(step))
    (tmp_path / "run" / "ray_train").mkdir()  # other files of a run live outside the namespace
    # Caught mid-write: files but no marker (a bigger step than any complete one).
    half = tmp_path / "run" / checkpoint_name(10)
    half.mkdir()
    (half / "generator.safetensors").write_bytes(b"x" * 20)
    # Complete but truncated afterwards.
    gen8 = tmp_path / "run" / checkpoint_name(8) / "generator.safetensors"
    gen8.write_bytes(gen8.read_bytes()[:30])

    listed = list_checkpoints(run)
    assert [c.step for c in listed] == [2, 4, 6, 8, 10]
    assert [c.usable for c in listed] == [True, True, True, False, False]
    assert listed[3].complete and f"{gen8} is 30 bytes, 108 expected (truncated)" == listed[3].problem
    assert not listed[4].complete and COMPLETE_FILE in listed[4].problem
    assert latest_checkpoint(run).step == 6
    assert checkpoint_problem(str(half)).startswith(f"no {COMPLETE_FILE}")
    assert checkpoint_problem(str(gen8.parent)) == listed[3].problem
    assert checkpoint_problem(listed[2].uri) is None
    assert checkpoint_problem(str(tmp_path / "run" / "ray_train")) is None  # not judged: not a checkpoint name

    assert remove_incomplete(run) == [str(half)]
    assert not half.exists() and gen8.exists()
    # Keep the 2 newest usable (4, 6); 2 goes; the damaged 8 is newer and stays until overwritten.
    assert prune_checkpoints(run, keep=2) == [listed[0].uri]
    assert [c.step for c in list_checkpoints(run)] == [4, 6, 8]
    write_checkpoint(run, 8, files(8))  # training reached step 8 again: replaced, complete
    assert latest_checkpoint(run).step == 8 and verify_checkpoint(latest_checkpoint(run)) is None


def test_same_size_corruption_is_caught_by_the_hash(tmp_path):
    run = str(tmp_path / "run")
    uri = write_checkpoint(run, 3, files(3))
    path = tmp_path / "run" / checkpoint_name(3) / "training_state.pt"
    path.write_bytes(b"t" * 50)  # same size, other bytes
    assert latest_checkpoint(run).step == 3  # sizes match: listing alone cannot tell
    assert verify_checkpoint(uri) == f"{path} does not match its SHA-256 in {COMPLETE_FILE} (corrupt)"


def test_file_names_and_the_marker_contents(tmp_path):
    with pytest.raises(ValueError):
        write_checkpoint(str(tmp_path), 1, {COMPLETE_FILE: b"{}"})
    with pytest.raises(ValueError):
        write_checkpoint(str(tmp_path), 1, {"sub/file": b""})
    uri = write_checkpoint(str(tmp_path), 1, files(1))
    manifest = json.loads((tmp_path / checkpoint_name(1) / COMPLETE_FILE).read_text())
    assert manifest["step"] == 1 and set(manifest["files"]) == set(files(1))
    assert uri == str(tmp_path / checkpoint_name(1))


def _trainer(seed: int) -> GANTrainingStep:
    torch.manual_seed(seed)
    return GANTrainingStep(build_generator("small"), build_discriminator("small"), TrainingConfig())


def _train_checkpoint(run: str, step: int, seed: int, endpoint_url: str | None = None) -> tuple[str, str]:
    """A real training checkpoint of random small-preset weights at ``step``: (uri, G digest)."""
    trainer = _trainer(seed)
    trainer.global_step = step
    cfg = TrainConfig(model="small")
    uri = save_training_checkpoint(run, trainer, cfg, b"png", {"step": step}, endpoint_url)
    return uri, state_digest(trainer.generator)


def test_resume_skips_a_truncated_latest_checkpoint_with_a_warning(tmp_path):
    run = str(tmp_path / "run")
    _, digest4 = _train_checkpoint(run, 4, seed=4)
    uri6, digest6 = _train_checkpoint(run, 6, seed=6)
    generator = os.path.join(uri6, "generator.safetensors")
    with open(generator, "r+b") as f:
        f.truncate(os.path.getsize(generator) // 2)

    trainer, warned = _trainer(0), []
    ckpt, step, warnings = resume_latest(run, lambda c: restore_checkpoint(c.uri, trainer), warn=warned.append)
    assert (ckpt.step, step, trainer.global_step) == (4, 4, 4)
    assert state_digest(trainer.generator) == digest4 != digest6
    assert warned == warnings and len(warnings) == 1
    assert warnings[0].startswith(f"warning: skipping checkpoint {uri6}: {generator} is ")
    assert "(truncated)" in warnings[0]


def test_resume_skips_a_checkpoint_that_verifies_but_does_not_load(tmp_path):
    """A complete checkpoint whose files match their marker but cannot be loaded (here:
    a training_state.pt that is not a PyTorch file) falls back too, naming the file."""
    run = str(tmp_path / "run")
    _train_checkpoint(run, 1, seed=1)
    uri2, _ = _train_checkpoint(run, 2, seed=2)
    contents = {n: open(os.path.join(uri2, n), "rb").read() for n in os.listdir(uri2) if n != COMPLETE_FILE}
    contents["training_state.pt"] = b"not a checkpoint"
    write_checkpoint(run, 2, contents)
    trainer = _trainer(0)
    ckpt, _, warnings = resume_latest(run, lambda c: restore_checkpoint(c.uri, trainer), warn=lambda m: None)
    assert ckpt.step == 1
    assert f"{uri2}/training_state.pt" in warnings[0]
    # Nothing usable at all: (None, None) with the reasons; a fresh run: no warnings.
    assert resume_latest(str(tmp_path / "fresh"), lambda c: 1) == (None, None, [])


def test_evaluate_listing_ignores_incomplete_and_damaged_checkpoints(tmp_path):
    run = tmp_path / "run"
    good, _ = _train_checkpoint(str(run), 2, seed=2)
    damaged, _ = _train_checkpoint(str(run), 4, seed=4)
    with open(os.path.join(damaged, "training_state.pt"), "r+b") as f:
        f.truncate(10)
    half, _ = _train_checkpoint(str(run), 6, seed=6)
    os.remove(os.path.join(half, COMPLETE_FILE))  # caught before the marker
    (run / "ray_train").mkdir()
    found, skipped = expand_checkpoints(str(run / "checkpoint_*"))
    assert found == [good]
    assert [s.split(" ")[0] for s in skipped] == [damaged, half]
    assert "training_state.pt is 10 bytes" in skipped[0] and COMPLETE_FILE in skipped[1]
    from pipelines.common.cli import JobError

    with pytest.raises(JobError, match="incomplete"):
        expand_checkpoints(half)
    assert load_generator(good).config.ngf == 16


def test_layout_on_s3(s3_bucket):
    run = f"{s3_bucket}/runs/exp"
    uri2, digest2 = _train_checkpoint(run, 2, seed=2)
    uri4, _ = _train_checkpoint(run, 4, seed=4)
    assert uri2 == f"{run}/checkpoint_000000002"
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": os.environ["AWS_ENDPOINT_URL"]})
    fs.pipe(f"{uri4[5:]}/generator.safetensors", fs.cat(f"{uri4[5:]}/generator.safetensors")[:100])
    fs.pipe(f"{run[5:]}/{checkpoint_name(6)}/generator.safetensors", b"partial")  # no marker
    fs.pipe(f"{run[5:]}/ray_train/checkpoint_manager_snapshot.json", b"{}")
    assert [(c.step, c.usable) for c in list_checkpoints(run)] == [(2, True), (4, False), (6, False)]
    trainer = _trainer(0)
    ckpt, _, warnings = resume_latest(run, lambda c: restore_checkpoint(c.uri, trainer), warn=lambda m: None)
    assert ckpt.uri == uri2 and state_digest(trainer.generator) == digest2
    assert f"{uri4}/generator.safetensors is 100 bytes" in warnings[0]
    assert expand_checkpoints(f"{run}/checkpoint_*")[0] == [uri2]
    assert remove_incomplete(run) == [f"{run}/{checkpoint_name(6)}"]
    assert prune_checkpoints(run, keep=1) == []  # only one usable: nothing to prune
    assert [c.step for c in list_checkpoints(run)] == [2, 4]


def test_resume_refuses_to_start_over_when_no_checkpoint_loads(tmp_path):
    """Checkpoints exist but none loads: the worker fails with the file named (jobs/train.py
    prints that as its last line) instead of silently training from step 0 over the run."""
    run = str(tmp_path / "run")
    uri, _ = _train_checkpoint(run, 5, seed=5)
    generator = os.path.join(uri, "generator.safetensors")
    with open(generator, "r+b") as f:
        f.truncate(64)
    expected = f"no checkpoint of {run} could be loaded; skipping checkpoint {uri}: {generator} is 64 bytes"
    with pytest.raises(RuntimeError, match=re.escape(expected)):
        resume_from_run(run, _trainer(0), rank=0, world=1, endpoint_url=None)
    assert resume_from_run(str(tmp_path / "fresh"), _trainer(0), rank=0, world=1, endpoint_url=None) == (0, "", [])
