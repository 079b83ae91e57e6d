"""``jobs/evaluate.py``'s typed config: every key with its default, its ``--help`` line and its
check, in one place (light: no torch, no Ray)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from lama_core.choices import LPIPS_NETS, MASK_KINDS, METRIC_NAMES

from pipelines.common.config_kit import WorkerOptions, choices, non_negative, setting
from pipelines.records.formats import DEFAULT_MAX_INPUT_PIXELS, EVAL_INPUT_FORMATS


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
                             "empty = scikit-image's photos held out from the default model's training "
                             "(samples.EVALUATION_PHOTOS, written under output/sample_data)")
    input_format: str = setting("auto", " | ".join(EVAL_INPUT_FORMATS))
    output: str = setting("outputs/evaluate", "writes per_image/, summary/, plots/, samples/, cache/")
    metrics: List[str] = setting(list(METRIC_NAMES),
                                 "metrics to compute; those whose weights are missing are skipped and named")
    lpips_net: str = setting(LPIPS_NETS[0], "LPIPS backbone: vgg (the paper's) | alex")
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
    max_input_pixels: int = setting(DEFAULT_MAX_INPUT_PIXELS, "ground-truth images over this many pixels (read from "
                                                              "the header, before decoding) are error rows; 0 = no "
                                                              "limit")

    def problems(self) -> list[str]:
        """Every value out of range, one sentence each (empty: the config is good)."""
        problems = self.worker_problems()
        problems += non_negative(self, "poll_seconds", "max_polls", "grid_images", "mask_seed", "max_input_pixels")
        problems += choices(self, lpips_net=LPIPS_NETS, input_format=EVAL_INPUT_FORMATS)
        unknown = [m for m in self.metrics if m not in METRIC_NAMES]
        if unknown or not list(self.metrics):
            problems.append(f"unknown or no metrics {unknown}; known: {', '.join(METRIC_NAMES)}")
        if not list(self.mask_kind):
            problems.append("mask_kind must name at least one mask set")
        if not self.model:
            problems.append("model must name at least one checkpoint")
        return problems
