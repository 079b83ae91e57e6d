"""Every job's command line: one name per concept, a self-explaining --help, fast failures
for bad keys and values (before torch or Ray load), and actor plans that never hang."""
from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import pytest

from pipelines.cluster.actor_pool import FREE_CPUS, MIN_CODEC_CPUS, plan_actors
from pipelines.common.config_kit import describe
from pipelines.common.errors import JobError
from pipelines.evaluate.config import EvaluateConfig
from pipelines.inpaint.config import InpaintConfig
from pipelines.masks.config import MakeMasksConfig
from pipelines.train.config import LocalTrainConfig, TrainConfig

REPO = Path(__file__).resolve().parents[1]
JOBS = {"inpaint": InpaintConfig, "train": TrainConfig, "train_local": LocalTrainConfig, "evaluate": EvaluateConfig,
        "make_masks": MakeMasksConfig}
#: DESIGN.md "Job interfaces": the key each job uses for a shared concept.
CONTRACT = {
    "inpaint": {"input", "output", "model", "mask_dir", "mask_kind", "mask_seed", "num_workers", "cpus_per_worker",
                "gpus_per_worker", "endpoint_url", "overwrite", "retry_errors", "dry_run", "preview"},
    "train": {"input", "output", "model", "mask_kind", "num_workers", "cpus_per_worker", "gpus_per_worker",
              "endpoint_url", "weights_dir", "steps"},
    "evaluate": {"input", "output", "model", "mask_kind", "mask_seed", "metrics", "watch", "num_workers",
                 "cpus_per_worker", "gpus_per_worker", "endpoint_url", "overwrite", "dry_run", "weights_dir"},
    "train_local": {"input", "output", "model", "mask_kind", "cpus_per_worker", "weights_dir", "steps"},
    "make_masks": {"mask_kind", "n", "mask_seed", "output", "preview"},
}
OLD_NAMES = {"data", "checkpoints", "masks", "kind", "preset", "init_from", "num_actors", "num_cpus_per_actor",
             "num_gpus", "use_gpu", "device"}


def _run(job: str, *args: str) -> subprocess.CompletedProcess:
    # -X importtime is not needed: the absence of torch/ray in sys.modules is checked below.
    return subprocess.run([sys.executable, str(REPO / "jobs" / f"{job}.py"), *args], capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("job", sorted(JOBS))
def test_contract_keys_and_no_old_names(job):
    keys = {f.name for f in fields(JOBS[job])}
    assert CONTRACT[job] <= keys, CONTRACT[job] - keys
    assert not keys & OLD_NAMES
    if job == "train_local":
        return  # local files only: no object store, so no endpoint
    endpoint = [f for f in fields(JOBS[job]) if f.name == "endpoint_url"]
    assert endpoint and endpoint[0].default is None  # null everywhere: AWS_ENDPOINT_URL, else AWS


@pytest.mark.parametrize("job", sorted(JOBS))
def test_help_lists_every_key_with_a_description_fast(job):
    start = time.perf_counter()
    proc = _run(job, "--help")
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    for key, type_name, default, description in describe(JOBS[job]):
        assert description, f"{job}: {key} has no description"
        assert f"  {key}  (" in proc.stdout, key
        assert description.split()[0] in proc.stdout
    assert elapsed < 5, elapsed


@pytest.mark.parametrize("job", sorted(JOBS))
def test_version(job):
    proc = _run(job, "--version")
    assert proc.returncode == 0 and proc.stdout.startswith("lama-at-scale ")


@pytest.mark.parametrize("job,arg,expect", [
    ("inpaint", "num_actors=2", "did you mean num_workers?"),
    ("inpaint", "ouptut=/tmp/x", "did you mean output?"),
    ("train", "data=/tmp/x", "did you mean input?"),
    ("train", "use_gpu=true", "did you mean gpus_per_worker?"),
    ("evaluate", "checkpoints=/tmp/x", "did you mean model?"),
    ("evaluate", "masks=[thin_512]", "did you mean mask_kind?"),
    ("make_masks", "kind=thin_512", "did you mean mask_kind?"),
    ("inpaint", "max_pixels=-5", "max_pixels must be >= 0"),
    ("inpaint", "batch_size=two", "bad config"),
    ("train", "precision=fp16", "precision must be fp32 or bf16"),
    ("train", "model=", "model: "),
    ("train", "steps=0", "steps must be >= 1"),
    ("make_masks", "mask_kind=huge_1024", "unknown mask_kind"),
    ("evaluate", "metrics=[psnr,foo]", "unknown or no metrics ['foo']"),
    ("inpaint", "model=/no/such/model", "/no/such/model does not exist"),
])
def test_bad_keys_and_values_fail_in_one_line_without_ray(job, arg, expect, tmp_path):
    start = time.perf_counter()
    proc = _run(job, arg, f"output={tmp_path / 'out'}")
    assert time.perf_counter() - start < 5
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("job", ["train", "train_local"])
def test_the_default_recipe_without_its_encoder_refuses_before_ray(job, tmp_path):
    """recipe=official (the default) trains the hole with the HRF loss; without its encoder
    a run silently learned one mean colour. Both trainers refuse in one line, exit 2,
    naming the file they looked for and the two ways on, before Ray or any output."""
    proc = _run(job, "weights_dir=/no/weights", f"output={tmp_path / 'out'}")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "/no/weights/ade20k/ade20k-resnet50dilated-ppm/encoder_epoch_20.pth not found" in lines[0]
    assert "perceptual_weights=FILE, or train with recipe=no-perceptual" in lines[0]
    assert not (tmp_path / "out").exists()


def test_light_modules_import_neither_torch_nor_ray():
    code = ("import sys; import pipelines.common.cli, pipelines.inpaint.config, pipelines.evaluate.config, "
            "pipelines.train.config, pipelines.masks.config; "
            "print([m for m in ('torch', 'ray', 'numpy') if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_codec_stages_import_no_torch():
    """Ray runs reading/decoding and encoding/writing in CPU tasks beside the model actors;
    a worker that loaded torch for them would take ~2.4 s of CPU from the model."""
    code = ("import sys; import pipelines.records.decode, pipelines.inpaint.record_writer, pipelines.inpaint.webdataset_writer; "
            "from pipelines.inpaint.record_writer import record_table; "
            "print([m for m in ('torch', 'torchvision', 'scipy') if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_a_bare_value_of_a_list_key_is_a_one_item_list():
    from pipelines.common.cli import parse_job_config

    assert parse_job_config(EvaluateConfig, ["mask_kind=thick_512"]).mask_kind == ["thick_512"]
    assert parse_job_config(EvaluateConfig, ["mask_kind=[thick_512,thin_512]"]).mask_kind == ["thick_512", "thin_512"]


def test_config_file_errors_name_the_file(tmp_path):
    bad_key, not_yaml = tmp_path / "typo.yaml", tmp_path / "broken.yaml"
    bad_key.write_text("batchsize: 3\n")
    not_yaml.write_text("batch_size: [1\n")
    for path, expect in ((bad_key, "unknown key 'batchsize' in"), (not_yaml, "cannot read config file")):
        proc = _run("inpaint", "--config", str(path), f"output={tmp_path / 'out'}")
        assert proc.returncode == 2 and expect in proc.stderr and str(path) in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_config_file_then_overrides(tmp_path):
    from pipelines.common.cli import parse_job_config

    path = tmp_path / "job.yaml"
    path.write_text("batch_size: 8\nmask_kind: thin_512\n")
    cfg = parse_job_config(InpaintConfig, ["--config", str(path), "batch_size=2"])
    assert isinstance(cfg, InpaintConfig) and cfg.batch_size == 2 and cfg.mask_kind == "thin_512"


def test_names_agree_with_lama_core():
    """Each enumeration is defined once (lama_core.choices): the library's tables are keyed by
    exactly its names, and every config accepts exactly them (each other value is refused)."""
    from lama_core import choices
    from lama_core.hd_strategy import HD_STRATEGIES
    from lama_core.inpainter import PRECISION_DTYPES
    from lama_core.losses import LOSS_RECIPES
    from lama_core.masks import MASK_SETS
    from lama_core.presets import GENERATOR_PRESETS
    from lama_core.training import TRAINING_PRECISIONS
    from lama_core.metrics.lpips import BACKBONES

    assert set(MASK_SETS) == set(choices.MASK_KINDS) and len(MASK_SETS) == len(choices.MASK_KINDS)
    assert set(GENERATOR_PRESETS) == set(choices.PRESETS) and set(LOSS_RECIPES) == set(choices.RECIPES)
    assert tuple(PRECISION_DTYPES) == choices.PRECISIONS
    assert HD_STRATEGIES is choices.HD_STRATEGIES and TRAINING_PRECISIONS is choices.TRAINING_PRECISIONS
    assert set(BACKBONES) == set(choices.LPIPS_NETS)
    from lama_core.metrics import METRICS
    assert set(METRICS) == set(choices.METRIC_NAMES)
    accepted = {  # config, key -> the names it must accept
        (InpaintConfig, "hd_strategy"): choices.HD_STRATEGIES, (InpaintConfig, "precision"): choices.PRECISION_CHOICES,
        (InpaintConfig, "mask_kind"): choices.MASK_KINDS, (EvaluateConfig, "precision"): choices.PRECISION_CHOICES,
        (EvaluateConfig, "lpips_net"): choices.LPIPS_NETS, (TrainConfig, "recipe"): choices.RECIPES,
        (TrainConfig, "augmentation"): choices.AUGMENTATIONS, (TrainConfig, "precision"): choices.TRAINING_PRECISIONS,
        (TrainConfig, "mask_kind"): choices.MASK_KINDS, (LocalTrainConfig, "augmentation"): choices.AUGMENTATIONS,
        (MakeMasksConfig, "mask_kind"): choices.MASK_KINDS,
    }
    for (schema, key), names in accepted.items():
        for name in names:
            assert schema(**{key: name}).problems() == [], (schema.__name__, key, name)
        for wrong in ("nope", names[0].upper()):
            assert any(key in p for p in schema(**{key: wrong}).problems()), (schema.__name__, key, wrong)


def test_local_trainer_lists_only_its_own_keys(tmp_path):
    """train_local runs one process without Ray: its --help has no Ray keys, and a Ray key is
    refused like any unknown key (one line, exit 2)."""
    keys = {f.name for f in fields(LocalTrainConfig)}
    assert not keys & {"num_workers", "gpus_per_worker", "max_failures", "sync_batchnorm", "verbose",
                       "fail_at_step", "endpoint_url", "crops_per_image"}
    proc = _run("train_local", "--help")
    assert proc.returncode == 0 and "num_workers" not in proc.stdout and "max_failures" not in proc.stdout
    proc = _run("train_local", "num_workers=2", f"output={tmp_path / 'out'}")
    assert proc.returncode == 2 and "unknown key 'num_workers'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


# ------------------------------------------------------------------ actor plans


def test_auto_plan_on_a_small_cpu_machine_uses_every_core():
    plan = plan_actors(InpaintConfig(), cluster_cpus=2, cluster_gpus=0, fixed_cluster=True)
    assert (plan.actors, plan.device, plan.gpus) == (1, "cpu", 0)
    assert plan.threads == 2  # every core runs the model ...
    assert plan.cpus <= 2 - FREE_CPUS  # ... while Ray Data keeps a whole CPU for its own 1-CPU tasks
    assert MIN_CODEC_CPUS <= plan.codec_cpus <= FREE_CPUS


def test_auto_plan_on_gpus_one_actor_per_gpu():
    plan = plan_actors(InpaintConfig(), cluster_cpus=32, cluster_gpus=4, fixed_cluster=False)
    assert (plan.actors, plan.gpus, plan.device) == (4, 1.0, "cuda")


@pytest.mark.parametrize("settings", [dict(cpus_per_worker=2), dict(num_workers=2, cpus_per_worker=1),
                                      dict(cpus_per_worker=1.5)])
def test_plans_that_would_starve_the_codec_stages_are_refused(settings):
    with pytest.raises(JobError, match="reading, decoding and encoding"):
        plan_actors(InpaintConfig(**settings), cluster_cpus=2, cluster_gpus=0, fixed_cluster=True)


def test_plans_that_fit_run():
    plan = plan_actors(InpaintConfig(num_workers=2, cpus_per_worker=0.5), cluster_cpus=2, cluster_gpus=0,
                       fixed_cluster=True)
    assert plan.actors == 2 and plan.threads == 1
    plan = plan_actors(InpaintConfig(num_workers=2), cluster_cpus=2, cluster_gpus=0, fixed_cluster=True)
    assert plan.actors == 2 and plan.threads == 1 and plan.cpus == 0.5
    big = plan_actors(InpaintConfig(), cluster_cpus=16, cluster_gpus=0, fixed_cluster=True)
    assert big.actors == 2 and big.threads == 8 and big.actors * big.cpus == 15


def test_gpus_on_a_machine_without_gpus_refused():
    with pytest.raises(JobError, match="no GPU"):
        plan_actors(InpaintConfig(gpus_per_worker=1), cluster_cpus=2, cluster_gpus=0, fixed_cluster=True)


def test_a_job_stops_the_local_ray_it_started_and_leaves_any_other(tmp_path):
    """``run_job`` stops a local Ray that the job started, before the interpreter's exit hook
    (which waits 0.5 s for log lines first); a Ray that was already there keeps running."""
    code = """
import sys, ray
from pipelines.cluster import ray_setup
from pipelines.common.cli import run_job
from pipelines.masks.config import MakeMasksConfig
def started_here(cfg):
    assert ray_setup.init_ray() == "local"
    print(ray._private.worker._global_node.all_processes["raylet"][0].process.pid)
sys.argv = ["job", "output=%s"]
run_job(started_here, MakeMasksConfig)
print("after:", ray.is_initialized())
ray.init(address="local", num_cpus=1, include_dashboard=False)
run_job(lambda cfg: print("again:", ray_setup.init_ray()), MakeMasksConfig)
print("kept:", ray.is_initialized())
""" % (tmp_path / "unused")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    lines = proc.stdout.split()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    raylet = int(lines[0])
    assert proc.stdout.split("\n")[1:4] == ["after: False", "again: existing", "kept: True"], proc.stdout
    assert not Path(f"/proc/{raylet}").exists() or "zombie" in Path(f"/proc/{raylet}/status").read_text().lower()


def test_a_job_prepares_while_ray_starts_and_a_failed_preparation_stops_that_ray():
    """``ray_setup.init_ray_during``: the work runs in another thread while this one starts
    a local Ray (the work sees Ray come up while it runs); the work's exception is raised
    once Ray is up, and the local Ray started for it is stopped again."""
    code = """
import threading, time, ray
from pipelines.cluster import ray_setup
def work():
    seen = [threading.current_thread() is threading.main_thread(), ray.is_initialized()]
    deadline = time.monotonic() + 60
    while not ray.is_initialized() and time.monotonic() < deadline:
        time.sleep(0.05)
    return seen + [ray.is_initialized()]
print(*ray_setup.init_ray_during(work))
ray_setup.release_local_ray()
def failing():
    time.sleep(0.5)
    raise ValueError("no such model")
try:
    ray_setup.init_ray_during(failing)
except ValueError as exc:
    print("raised:", exc, "| ray still up:", ray.is_initialized())
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # In the helper thread; Ray not up when the work began; up while it still ran.
    assert proc.stdout.splitlines() == ["local [False, False, True]",
                                        "raised: no such model | ray still up: False"], proc.stdout + proc.stderr


def test_model_stages_run_batches_in_the_actors_own_thread():
    """Ray Data's default hands each batch to a second thread, where big-lama kept fewer
    cores busy (stage_utils.model_actor_pool); both model stages use this pool."""
    from pipelines.cluster.actor_pool import ActorPlan, model_actor_pool

    pool = model_actor_pool(ActorPlan(actors=3, cpus=1.0, threads=2, gpus=0.0, device="cpu", codec_cpus=0.5))
    assert pool.enable_true_multi_threading is True and pool.min_size == pool.max_size == 3
    from pipelines.evaluate.stage import EvalModelStage, EvaluateStage
    from pipelines.inpaint.model_stage import InpaintStage, ModelStage

    class MapRecorder:  # what a stage asks of Ray Data's map_batches
        def map_batches(self, fn, **kwargs):
            self.fn, self.kwargs = fn, kwargs
            return self

    plan = ActorPlan(actors=3, cpus=1.0, threads=2, gpus=0.0, device="cpu", codec_cpus=0.5)
    stages = {InpaintStage: ModelStage("small", 0, "fp32", 0, "windows", 4, None, False, plan),
              EvaluateStage: EvalModelStage("ckpt", ("psnr",), "fp32", 4, "", {}, "vgg", 0, frozenset(), None, plan)}
    for actor, stage in stages.items():
        asked = stage.apply(MapRecorder())
        assert asked.fn is actor and asked.kwargs["batch_size"] == 4 and asked.kwargs["num_cpus"] == 1.0
        assert asked.kwargs["compute"].enable_true_multi_threading is True
        assert asked.kwargs["compute"].min_size == asked.kwargs["compute"].max_size == 3
        assert asked.kwargs["fn_constructor_kwargs"]["stage"] is stage
