"""The typed configs of training: ``TrainingOptions`` (the recipe, data, validation and
checkpoint keys both trainers use), ``TrainConfig`` (``jobs/train.py``: plus the Ray Train
keys) and ``LocalTrainConfig`` (``jobs/train_local.py``: one process, local files). Light:
no torch, no Ray."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from lama_core.choices import AUGMENTATIONS, MASK_KINDS, PRESETS, RECIPES, TRAINING_PRECISIONS, choice_problem

from pipelines.common.config_kit import at_least_one, choices, non_negative, setting
from pipelines.records.formats import TRAINING_MAX_INPUT_PIXELS

#: Loss weight keys: null = the recipe's value (``lama_core.losses.LOSS_RECIPES``).
LOSS_WEIGHT_KEYS = ("l1_weight_known", "l1_weight_missing", "adversarial_weight", "feature_matching_weight",
                    "hrf_weight", "r1_gamma")


@dataclass
class TrainingOptions:
    """What both trainers take: the model to start from, the data, the recipe, the
    validation batch and the checkpoints."""

    input: str = setting("", "training images: folder/prefix of png/jpg/webp (recursive) or Parquet shards "
                             "(column image); empty = scikit-image's colour photos (samples.TRAINING_PHOTOS)")
    output: str = setting("outputs/train", "where runs live; this run is output/name")
    name: str = setting("lama", "run name: checkpoints go under output/name/")
    model: str = setting("small", "what to start from: a preset (" + " | ".join(PRESETS) + ") for fresh "
                                  "weights, or a checkpoint URI (official big-lama folder/best.ckpt or ours) "
                                  "to fine-tune")
    steps: int = setting(200, "optimizer steps in total (a resumed run continues to this number)")
    cpus_per_worker: float = setting(1.0, "CPUs per worker (its torch threads); under Ray leave >= 0.5 CPU for "
                                          "decoding")
    batch_size: int = setting(4, "images per worker per step (big-lama: 10 per GPU)")
    crop_size: int = setting(128, "training crop side in pixels, a multiple of 8 (big-lama: 256)")
    accum_steps: int = setting(1, "gradient accumulation steps per optimizer step")
    precision: str = setting("fp32", " | ".join(TRAINING_PRECISIONS) + " (autocast; FFTs stay fp32)")
    generator_lr: float = setting(1e-3, "Adam learning rate of the generator (a resumed run takes this one)")
    discriminator_lr: float = setting(1e-4, "Adam learning rate of the discriminator (a resumed run takes this "
                                            "one)")
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
                                               "encoder_epoch_20.pth for the perceptual loss of recipe=official; "
                                               "null = $TORCH_HOME/hub/checkpoints; missing there: the job "
                                               "refuses to start (use recipe=no-perceptual without it)")
    perceptual_weights: str = setting("", "explicit path of encoder_epoch_20.pth (overrides weights_dir)")
    mask_kind: str = setting("wide_256", "mask set drawn for training: " + " | ".join(MASK_KINDS)
                             + ", or a mixture a+b+c (mask i from kind i mod 3)")
    seed: int = setting(0, "seed of weights and masks")
    log_every: int = setting(10, "steps between progress lines")
    checkpoint_every: int = setting(100, "steps between checkpoints (and at the end)")
    keep_checkpoints: int = setting(3, "checkpoints kept (oldest deleted)")
    validation_images: int = setting(4, "images of the fixed validation batch (held out, never trained on)")
    max_input_pixels: int = setting(TRAINING_MAX_INPUT_PIXELS, "training images over this many pixels (read from the "
                                                   "header, before decoding) are skipped and counted, JPEGs "
                                                   "decoded at 1/2, 1/4 or 1/8 scale to fit; 0 = no limit")
    validation_input: str = setting("", "validation images (never trained on); empty = the last "
                                        "validation_images images of input (sorted; Parquet: its last shard), "
                                        "then left out of training")

    def problems(self) -> list[str]:
        """Every value out of range, one sentence each (empty: the config is good)."""
        problems = at_least_one(self, "steps", "batch_size", "accum_steps", "log_every", "checkpoint_every",
                                "keep_checkpoints", "validation_images")
        problems += non_negative(self, "cpus_per_worker", "generator_lr", "discriminator_lr",
                                 "gradient_clip_norm", "seed", "max_input_pixels")
        problems += [f"{n} must be >= 0 or null, got {getattr(self, n)}" for n in LOSS_WEIGHT_KEYS
                     if getattr(self, n) is not None and getattr(self, n) < 0]
        problems += choices(self, recipe=RECIPES, augmentation=AUGMENTATIONS, precision=TRAINING_PRECISIONS)
        if not 0 <= self.grayscale_probability <= 1:
            problems.append(f"grayscale_probability must be in [0, 1], got {self.grayscale_probability}")
        if self.crop_size < 8 or self.crop_size % 8:
            problems.append(f"crop_size must be a positive multiple of 8, got {self.crop_size}")
        if any(choice_problem("mask_kind", kind, MASK_KINDS) for kind in self.mask_kind.split("+")):
            problems.append(f"unknown mask_kind {self.mask_kind!r}; known: {', '.join(MASK_KINDS)} (or a+b+c)")
        if not self.model:
            problems.append("model must be a preset name or a checkpoint URI")
        if not self.name or "/" in self.name:
            problems.append(f"name must be a non-empty folder name, got {self.name!r}")
        return problems


@dataclass
class TrainConfig(TrainingOptions):
    """``jobs/train.py``: DDP training of the LaMa GAN with Ray Train; a rerun resumes."""

    num_workers: int = setting(1, "training workers (DDP ranks)")
    gpus_per_worker: Optional[float] = setting(None, "GPUs per worker: 0 = CPU, 1 = one GPU each; null = 1 "
                                                     "when the cluster has GPUs, else 0")
    crops_per_image: int = setting(1, "random crops cut from each decoded image per epoch")
    max_failures: int = setting(2, "worker-group restarts from the last checkpoint before giving up")
    sync_batchnorm: bool = setting(False, "SyncBatchNorm across GPU workers under DDP (official: off, per-GPU "
                                          "BatchNorm statistics)")
    endpoint_url: Optional[str] = setting(None, "S3-compatible endpoint; null = AWS_ENDPOINT_URL, else AWS")
    verbose: bool = setting(False, "true: show Ray's own log lines and progress bars on the console")
    fail_at_step: int = setting(-1, "testing aid: the last rank raises once at this step (-1 = never)")

    def problems(self) -> list[str]:
        problems = super().problems()
        problems += at_least_one(self, "num_workers", "crops_per_image")
        problems += non_negative(self, "max_failures")
        if self.gpus_per_worker is not None and self.gpus_per_worker < 0:
            problems.append(f"gpus_per_worker must be >= 0 or null, got {self.gpus_per_worker}")
        return problems


@dataclass
class LocalTrainConfig(TrainingOptions):
    """``jobs/train_local.py``: the same training in one CPU process, without Ray; local files."""
