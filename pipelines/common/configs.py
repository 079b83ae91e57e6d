"""The typed configs of every job: one source of truth for keys, types, defaults and the
one-line descriptions that ``--help`` prints.

This module imports nothing heavy (no torch, no Ray), so ``python jobs/NAME.py --help`` and
a mistyped key answer in well under a second. Key names follow one name per concept across
jobs (``docs/DESIGN.md``, "Job interfaces"): ``input``, ``output``, ``model``, ``mask_dir``,
``mask_kind``, ``mask_seed``, ``num_workers``, ``cpus_per_worker``, ``gpus_per_worker``,
``endpoint_url``, ``overwrite``, ``retry_errors``, ``dry_run``, ``weights_dir``.

Each config has a ``problems()`` method: every value that is out of range, one sentence
each, checked on the driver before Ray starts.
"""
from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Dict, List, Optional

#: Precision names accepted by the ``Inpainter`` and the training step.
PRECISIONS = ("fp32", "bf16", "fp16")
#: Generated mask sets (``lama_core.masks.MASK_SETS``; repeated here to keep this module light,
#: ``tests/test_job_configs.py`` checks the two agree).
MASK_KINDS = ("thin_256", "medium_256", "thick_256", "thin_512", "medium_512", "thick_512", "wide_256")
#: Generator presets (``lama_core.presets.GENERATOR_PRESETS``; checked to agree in the tests).
PRESETS = ("big-lama", "lama-fourier", "small")
#: Training loss recipes (``lama_core.losses.LOSS_RECIPES``).
RECIPES = ("official", "no-perceptual")

DEFAULT_MODEL = "assets/lama-small-demo"
#: Keys of earlier versions -> today's name, so an old script gets a pointed error.
RENAMED_KEYS = {
    "data": "input", "checkpoints": "model", "masks": "mask_kind", "kind": "mask_kind", "preset": "model",
    "init_from": "model", "num_actors": "num_workers", "num_cpus_per_actor": "cpus_per_worker",
    "num_gpus": "gpus_per_worker", "use_gpu": "gpus_per_worker", "device": "gpus_per_worker",
}


def setting(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field with its ``--help`` description (``default`` may be a list or dict:
    it is copied per instance)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help}, **kwargs)
    return field(default=default, metadata={"help": help}, **kwargs)


def describe(schema: type) -> list[tuple[str, str, Any, str]]:
    """``[(key, type name, default, description)]`` of a config dataclass: the job's own
    keys first, then those it inherits (the shared worker options), each in field order."""
    own = [f for f in fields(schema) if f.name in vars(schema).get("__annotations__", {})]
    rows = []
    for f in own + [f for f in fields(schema) if f not in own]:
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        type_name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        rows.append((f.name, str(type_name).replace("typing.", ""), default, f.metadata.get("help", "")))
    return rows


def _non_negative(cfg: Any, *names: str) -> list[str]:
    return [f"{n} must be >= 0, got {getattr(cfg, n)}" for n in names if getattr(cfg, n) < 0]


def _at_least_one(cfg: Any, *names: str) -> list[str]:
    return [f"{n} must be >= 1, got {getattr(cfg, n)}" for n in names if getattr(cfg, n) < 1]


@dataclass
class WorkerOptions:
    """Compute settings shared by the jobs that run a pool of model actors (inpaint, evaluate)."""

    batch_size: int = setting(4, "images per model forward pass (per actor call)")
    codec_batch_size: int = setting(8, "records per read/decode and encode/write task batch")
    num_workers: int = setting(0, "model actors; 0 = auto: one per GPU, or on CPU one per 8 cores, together "
                                  "one torch thread per core")
    cpus_per_worker: float = setting(0.0, "CPUs Ray reserves per model actor (and its torch threads when set); "
                                          "0 = auto: all CPUs but one, shared by the actors")
    gpus_per_worker: Optional[float] = setting(None, "GPUs per model actor; 0 = run on CPU; null = 1 when the "
                                                     "cluster has GPUs, else 0")
    precision: str = setting("fp32", "fp32 | bf16 (CPUs with AVX512-BF16/AMX, GPUs) | fp16 (GPUs); FFTs stay fp32")
    endpoint_url: Optional[str] = setting(None, "S3-compatible endpoint; null = AWS_ENDPOINT_URL, else AWS")
    verbose: bool = setting(False, "true: show Ray's own log lines and progress bars on the console")

    def worker_problems(self) -> list[str]:
        problems = _at_least_one(self, "batch_size", "codec_batch_size")
        problems += _non_negative(self, "num_workers", "cpus_per_worker")
        if self.gpus_per_worker is not None and self.gpus_per_worker < 0:
            problems.append(f"gpus_per_worker must be >= 0 or null, got {self.gpus_per_worker}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.precision == "fp16" and self.gpus_per_worker == 0:
            problems.append("precision=fp16 needs a GPU (gpus_per_worker > 0); use fp32 or bf16 on CPU")
        return problems


@dataclass
class InpaintConfig(WorkerOptions):
    """``jobs/inpaint.py``: inpaint every record of ``input`` into ``output``."""

    input: str = setting("outputs/samples", "images to inpaint: a LaMa folder (x.png + x_mask000.png), "
                                            "Parquet shards (id, image, mask?, geometry?) or WebDataset .tar "
                                            "shards (a folder, one .tar, or shards-{000000..000099}.tar); the "
                                            "default is created from scikit-image's sample photos on first use")
    output: str = setting("outputs/inpaint", "writes images/ID.png, masks/ID.png and records/*.parquet")
    model: str = setting(DEFAULT_MODEL, "checkpoint URI (big-lama folder, best.ckpt, generator.safetensors) "
                                        "or a preset name (RANDOM weights, said loudly)")
    mask_dir: Optional[str] = setting(None, "folder of masks named like the images (MASK_DIR/sub/x.png for "
                                            "INPUT/sub/x.jpg), as images or mask geometry (MASK_DIR/sub/x.json); "
                                            "null = LaMa naming beside the images")
    mask_kind: Optional[str] = setting(None, "generated mask set for records without a mask: "
                                             + " | ".join(MASK_KINDS) + "; null = thick_512 for Parquet and "
                                             "WebDataset records, and a folder image without a mask file is an "
                                             "error row (set it to draw masks for a plain folder of photos)")
    mask_seed: int = setting(0, "seed of generated masks: a record's mask depends only on (mask_kind, "
                                "mask_seed, id)")
    overwrite: bool = setting(False, "true: delete this output's records and redo every record")
    retry_errors: bool = setting(False, "true: also redo records that failed on their input (after fixing "
                                        "files or options); storage and model errors are always retried")
    dry_run: bool = setting(False, "true: print the plan (records total/done/to do, shards, ignored files) "
                                   "and stop before running the model")
    mask_dilate: int = setting(0, "grow every given hole (mask file or geometry, not drawn masks) by this many "
                                  "pixels on each side: detector boxes hug the object and leave a halo")
    input_format: str = setting("auto", "auto | folder | parquet | webdataset")
    output_format: str = setting("png", "png | jpg | webdataset (OUTPUT/shards/*.tar of ID.png + ID.json, the "
                                        "record, instead of OUTPUT/images/)")
    records_per_shard: int = setting(64, "records per output shard with output_format=webdataset")
    png_compress_level: int = setting(1, "zlib level 0-9 of output PNGs (1 is ~3x faster than 6, ~10% larger)")
    jpeg_quality: int = setting(95, "quality 1-100 of output JPEGs")
    write_masks: bool = setting(True, "true: write each record's mask (0/255 PNG) under output/masks/")
    max_pixels: int = setting(2048 * 2048, "pixel budget per image: larger images are inpainted downscaled "
                                           "and pasted back at the hole (flag `resized`); 0 = no budget")
    hd_strategy: str = setting("windows", "windows: images over 800 px are inpainted in a native-resolution "
                                          "context window around each hole region (lama_core/hd_strategy.py); "
                                          "full: the whole frame always")
    records_per_file: int = setting(1000, "rows per records/*.parquet file")
    seed: int = setting(0, "weight seed when `model` is a preset name")
    max_input_pixels: int = setting(4096 * 4096, "images over this many pixels (read from the header, before "
                                                 "decoding) are input errors; JPEGs decode at 1/2, 1/4 or 1/8 "
                                                 "scale to fit; 0 = no limit")
    storage_attempts: int = setting(6, "tries per storage request on transient faults (connection refused or "
                                       "reset, timeouts, 5xx, throttling)")
    storage_backoff_seconds: float = setting(1.0, "first wait between storage tries; doubles each try")
    storage_backoff_max_seconds: float = setting(30.0, "longest wait between storage tries")
    lease_seconds: float = setting(120.0, "the output's one-writer lease: renewed every third of this; a "
                                          "killed run's lease expires after it")

    def problems(self) -> list[str]:
        problems = self.worker_problems()
        problems += _non_negative(self, "max_pixels", "mask_seed", "seed", "max_input_pixels",
                                  "storage_backoff_seconds", "storage_backoff_max_seconds")
        problems += _at_least_one(self, "records_per_file", "storage_attempts", "records_per_shard")
        problems += _non_negative(self, "mask_dilate")
        if 0 < self.max_pixels < 64 * 64:
            problems.append(f"max_pixels must be 0 (no budget) or >= 4096 (64x64), got {self.max_pixels}")
        if not 5 <= self.lease_seconds < float("inf"):
            problems.append(f"lease_seconds must be a finite number >= 5, got {self.lease_seconds}")
        for name in ("storage_backoff_seconds", "storage_backoff_max_seconds"):
            if getattr(self, name) == float("inf") or getattr(self, name) != getattr(self, name):
                problems.append(f"{name} must be finite, got {getattr(self, name)}")
        if self.input_format not in ("auto", "folder", "parquet", "webdataset"):
            problems.append(f"input_format must be auto, folder, parquet or webdataset, got {self.input_format!r}")
        if self.hd_strategy not in ("windows", "full"):
            problems.append(f"hd_strategy must be windows or full, got {self.hd_strategy!r}")
        if self.output_format not in ("png", "jpg", "webdataset"):
            problems.append(f"output_format must be png, jpg or webdataset, got {self.output_format!r}")
        if not 0 <= self.png_compress_level <= 9:
            problems.append(f"png_compress_level must be 0-9, got {self.png_compress_level}")
        if not 1 <= self.jpeg_quality <= 100:
            problems.append(f"jpeg_quality must be 1-100, got {self.jpeg_quality}")
        if self.mask_kind is not None and self.mask_kind not in MASK_KINDS:
            problems.append(f"unknown mask_kind {self.mask_kind!r}; known: {', '.join(MASK_KINDS)}")
        if not self.input or not self.output:
            problems.append("input and output must not be empty")
        return problems


@dataclass
class EvaluateConfig(WorkerOptions):
    """``jobs/evaluate.py``: score every (model, mask set) pair not yet scored in ``output``."""

    model: Any = setting("outputs/train/lama/checkpoint_*",
                         "checkpoint(s) to score: a URI, a glob (runs/exp/checkpoint_*, also s3://) or a list "
                         "[a,b]; each a big-lama folder, best.ckpt, generator.safetensors or training checkpoint")
    mask_kind: List[str] = setting(["thick_512", "thin_512"],
                                   "mask sets: kinds (" + " ".join(MASK_KINDS) + ") and/or frozen folders "
                                   "from jobs/make_masks.py (named by their basename)")
    mask_seed: int = setting(0, "seed of generated masks: image i (sorted ids) gets mask i")
    input: str = setting("", "ground truth: folder/prefix of png/jpg/webp, or Parquet shards (id, image); "
                             "empty = scikit-image's sample photos (written under output/sample_data)")
    input_format: str = setting("auto", "auto | folder | parquet")
    output: str = setting("outputs/evaluate", "writes per_image/, summary/, plots/, samples/, cache/")
    metrics: List[str] = setting(["psnr", "ssim", "l1", "lpips", "fid"],
                                 "metrics to compute; those whose weights are missing are skipped and named")
    lpips_net: str = setting("vgg", "LPIPS backbone: vgg (the paper's) | alex")
    weights_dir: Optional[str] = setting(None, "folder with the standard weight files; null = "
                                               "$TORCH_HOME/hub/checkpoints")
    weight_paths: Dict[str, str] = setting({}, "explicit file per weight: weight_paths.inception=URI (also "
                                               "vgg16, alexnet, lpips_vgg, lpips_alex)")
    overwrite: bool = setting(False, "true: delete this output's tables and score every pair again")
    dry_run: bool = setting(False, "true: print the pairs to score and stop before running the model")
    watch: bool = setting(False, "true: poll the model glob and score new checkpoints as they appear")
    poll_seconds: float = setting(300.0, "seconds between polls in watch mode")
    max_polls: int = setting(0, "sweeps before a watch stops; 0 = until interrupted")
    grid_images: int = setting(4, "images per sample grid (input | output | ground truth)")

    def problems(self) -> list[str]:
        problems = self.worker_problems()
        problems += _non_negative(self, "poll_seconds", "max_polls", "grid_images", "mask_seed")
        if self.lpips_net not in ("vgg", "alex"):
            problems.append(f"lpips_net must be vgg or alex, got {self.lpips_net!r}")
        if self.input_format not in ("auto", "folder", "parquet"):
            problems.append(f"input_format must be auto, folder or parquet, got {self.input_format!r}")
        if not list(self.mask_kind):
            problems.append("mask_kind must name at least one mask set")
        if not self.model:
            problems.append("model must name at least one checkpoint")
        return problems


@dataclass
class TrainConfig:
    """``jobs/train.py``: DDP training of the LaMa GAN with Ray Train; a rerun resumes."""

    input: str = setting("", "training images: folder/prefix of png/jpg/webp (recursive) or Parquet shards "
                             "(column image); empty = scikit-image's colour photos (samples.TRAINING_PHOTOS)")
    output: str = setting("outputs/train", "where runs live (local or s3://); this run is output/name")
    name: str = setting("lama", "run name: checkpoints go under output/name/")
    model: str = setting("small", "what to start from: a preset (" + " | ".join(PRESETS) + ") for fresh "
                                  "weights, or a checkpoint URI (official big-lama folder/best.ckpt or ours) "
                                  "to fine-tune")
    steps: int = setting(200, "optimizer steps in total (a resumed run continues to this number)")
    num_workers: int = setting(1, "training workers (DDP ranks)")
    cpus_per_worker: float = setting(1.0, "CPUs reserved per worker; leave >= 0.5 CPU for decoding")
    gpus_per_worker: Optional[float] = setting(None, "GPUs per worker: 0 = CPU, 1 = one GPU each; null = 1 "
                                                     "when the cluster has GPUs, else 0")
    batch_size: int = setting(4, "images per worker per step (big-lama: 10 per GPU)")
    crop_size: int = setting(128, "training crop side in pixels, a multiple of 8 (big-lama: 256)")
    crops_per_image: int = setting(1, "random crops cut from each decoded image per epoch")
    accum_steps: int = setting(1, "gradient accumulation steps per optimizer step")
    precision: str = setting("fp32", "fp32 | bf16 (autocast; FFTs stay fp32)")
    generator_lr: float = setting(1e-3, "Adam learning rate of the generator")
    discriminator_lr: float = setting(1e-4, "Adam learning rate of the discriminator")
    recipe: str = setting("official", "loss recipe: official (big-lama's) | no-perceptual (for training "
                                      "without the ADE20k encoder: reconstruction terms on the hole; "
                                      "lama_core/losses.py)")
    l1_weight_known: Optional[float] = setting(None, "weight of L1 on known pixels; null = the recipe's (10)")
    l1_weight_missing: Optional[float] = setting(None, "weight of L1 on hole pixels; null = the recipe's "
                                                       "(official 0, no-perceptual 10)")
    adversarial_weight: Optional[float] = setting(None, "weight of the non-saturating adversarial loss; null = "
                                                        "the recipe's (official 10, no-perceptual 3)")
    feature_matching_weight: Optional[float] = setting(None, "weight of discriminator feature matching; null "
                                                             "= the recipe's (official 100, no-perceptual 30)")
    hrf_weight: Optional[float] = setting(None, "weight of the high-receptive-field perceptual loss (needs the "
                                                "ADE20k encoder); null = the recipe's (official 30)")
    r1_gamma: Optional[float] = setting(None, "R1 gradient penalty gamma; null = the recipe's (0.001)")
    gradient_clip_norm: float = setting(1.0, "each optimizer's gradients clipped to this global L2 norm before "
                                             "its step (official: 1); 0 = off")
    augmentation: str = setting("distortions", "distortions (the official photometric + geometric "
                                               "augmentation) | crop (random crop and flip only)")
    grayscale_probability: float = setting(0.0, "share of training crops turned grey (ours; official 0)")
    weights_dir: Optional[str] = setting(None, "folder with ade20k/ade20k-resnet50dilated-ppm/"
                                               "encoder_epoch_20.pth for the perceptual loss; null = no "
                                               "perceptual loss unless perceptual_weights is given")
    perceptual_weights: str = setting("", "explicit path of encoder_epoch_20.pth (overrides weights_dir)")
    mask_kind: str = setting("wide_256", "mask set drawn for training: " + " | ".join(MASK_KINDS)
                             + ", or a mixture a+b+c (mask i from kind i mod 3)")
    seed: int = setting(0, "seed of weights and masks")
    log_every: int = setting(10, "steps between progress lines")
    checkpoint_every: int = setting(100, "steps between checkpoints (and at the end)")
    keep_checkpoints: int = setting(3, "checkpoints kept (oldest deleted)")
    validation_images: int = setting(4, "images of the fixed validation batch (held out, never trained on)")
    validation_input: str = setting("", "validation images (never trained on); empty = the last "
                                        "validation_images images of input (sorted; Parquet: its last shard), "
                                        "then left out of training")
    max_failures: int = setting(2, "worker-group restarts from the last checkpoint before giving up")
    sync_batchnorm: bool = setting(False, "SyncBatchNorm across GPU workers under DDP (official: off, per-GPU "
                                          "BatchNorm statistics)")
    endpoint_url: Optional[str] = setting(None, "S3-compatible endpoint; null = AWS_ENDPOINT_URL, else AWS")
    verbose: bool = setting(False, "true: show Ray's own log lines and progress bars on the console")
    fail_at_step: int = setting(-1, "testing aid: the last rank raises once at this step (-1 = never)")

    def problems(self) -> list[str]:
        problems = _at_least_one(self, "steps", "num_workers", "batch_size", "crops_per_image", "accum_steps",
                                 "log_every", "checkpoint_every", "keep_checkpoints", "validation_images")
        problems += _non_negative(self, "cpus_per_worker", "generator_lr", "discriminator_lr",
                                  "gradient_clip_norm", "max_failures", "seed")
        problems += [f"{n} must be >= 0 or null, got {getattr(self, n)}" for n in (
            "l1_weight_known", "l1_weight_missing", "adversarial_weight", "feature_matching_weight", "hrf_weight",
            "r1_gamma") if getattr(self, n) is not None and getattr(self, n) < 0]
        if self.recipe not in RECIPES:
            problems.append(f"unknown recipe {self.recipe!r}; known: {', '.join(RECIPES)}")
        if self.augmentation not in ("distortions", "crop"):
            problems.append(f"augmentation must be distortions or crop, got {self.augmentation!r}")
        if not 0 <= self.grayscale_probability <= 1:
            problems.append(f"grayscale_probability must be in [0, 1], got {self.grayscale_probability}")
        if self.gpus_per_worker is not None and self.gpus_per_worker < 0:
            problems.append(f"gpus_per_worker must be >= 0 or null, got {self.gpus_per_worker}")
        if self.crop_size < 8 or self.crop_size % 8:
            problems.append(f"crop_size must be a positive multiple of 8, got {self.crop_size}")
        if self.precision not in ("fp32", "bf16"):
            problems.append(f"precision must be fp32 or bf16 for training, got {self.precision!r}")
        if any(kind not in MASK_KINDS for kind in self.mask_kind.split("+")):
            problems.append(f"unknown mask_kind {self.mask_kind!r}; known: {', '.join(MASK_KINDS)} (or a+b+c)")
        if not self.model:
            problems.append("model must be a preset name or a checkpoint URI")
        if not self.name or "/" in self.name:
            problems.append(f"name must be a non-empty folder name, got {self.name!r}")
        return problems


@dataclass
class MakeMasksConfig:
    """``jobs/make_masks.py``: freeze a generated mask set to storage."""

    mask_kind: str = setting("thick_512", "mask set: " + " | ".join(MASK_KINDS))
    n: int = setting(100, "number of masks")
    mask_seed: int = setting(0, "seed: mask i depends only on (mask_kind, mask_seed, i)")
    output: str = setting("outputs/masks/thick_512", "folder or URI for 000000_mask000.png, ...")
    preview: str = setting("", "PNG grid of the first masks; empty = <output>_preview.png")
    endpoint_url: Optional[str] = setting(None, "S3-compatible endpoint; null = AWS_ENDPOINT_URL, else AWS")

    def problems(self) -> list[str]:
        problems = _at_least_one(self, "n") + _non_negative(self, "mask_seed")
        if self.mask_kind not in MASK_KINDS:
            problems.append(f"unknown mask_kind {self.mask_kind!r}; valid kinds: {', '.join(MASK_KINDS)}")
        return problems


@dataclass
class CocoMasksConfig:
    """``jobs/coco_masks.py``: one mask geometry file per image of a COCO-style annotation or
    detection file, for ``jobs/inpaint.py mask_dir=``."""

    input: str = setting("annotations.json", "COCO-style JSON: images (id, file_name), annotations (image_id, "
                                             "bbox [x, y, w, h], segmentation?, category_id, score?), categories")
    output: str = setting("outputs/coco_masks", "folder or URI for <image file name without extension>.json")
    categories: List[str] = setting([], "category names (or ids) to keep; empty = all")
    min_score: float = setting(0.0, "drop annotations whose score is below this")
    shapes: str = setting("auto", "auto (segmentation when present, else the box) | bbox | segmentation")
    endpoint_url: Optional[str] = setting(None, "S3-compatible endpoint; null = AWS_ENDPOINT_URL, else AWS")

    def problems(self) -> list[str]:
        problems = _non_negative(self, "min_score")
        if self.shapes not in ("auto", "bbox", "segmentation"):
            problems.append(f"shapes must be auto, bbox or segmentation, got {self.shapes!r}")
        return problems
