"""``jobs/inpaint.py``'s typed config: every key with its default, its ``--help`` line and its
check, in one place (light: no torch, no Ray)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from lama_core.backends import backend_problem
from lama_core.choices import DEFAULT_HD_STRATEGY, HD_STRATEGIES, MASK_KINDS

from pipelines.common.config_kit import (DEFAULT_MODEL, WorkerOptions, at_least_one, choices, finite, non_negative,
                                         setting)
from pipelines.common.output_lease import MAX_LEASE_SECONDS
from pipelines.records.formats import DEFAULT_MAX_INPUT_PIXELS, INPUT_FORMATS, OUTPUT_FORMATS

#: Default input: scikit-image's bundled photos, written there as a Parquet shard on first use.
DEFAULT_INPUT = "outputs/samples"
#: Mask set drawn for Parquet and WebDataset records without a mask when ``mask_kind`` is unset.
DEFAULT_MASK_KIND = "thick_512"


@dataclass
class InpaintConfig(WorkerOptions):
    """``jobs/inpaint.py``: inpaint every record of ``input`` into ``output``."""

    precision: str = setting("auto", "auto (bf16 where the actors' hardware computes bf16 natively: CPUs with "
                                     "AVX512-BF16/AMX, GPUs with bf16; else fp32; records say which ran) | fp32 "
                                     "(bit-faithful runs) | bf16 | fp16 (GPUs); FFTs stay fp32")
    input: str = setting(DEFAULT_INPUT, "images to inpaint: a LaMa folder (x.png + x_mask000.png), "
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
                                             + " | ".join(MASK_KINDS) + f"; null = {DEFAULT_MASK_KIND} for Parquet "
                                             "and WebDataset records, and a folder image without a mask file is an "
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
    input_format: str = setting("auto", " | ".join(INPUT_FORMATS))
    output_format: str = setting("png", "png | jpg | webdataset (OUTPUT/shards/*.tar of ID.png + ID.json, the "
                                        "record, instead of OUTPUT/images/)")
    records_per_shard: int = setting(64, "records per output shard with output_format=webdataset")
    png_compress_level: int = setting(1, "zlib level 0-9 of output PNGs (1 is ~3x faster than 6, ~10% larger)")
    jpeg_quality: int = setting(95, "quality 1-100 of output JPEGs")
    write_masks: bool = setting(True, "true: write each record's mask (0/255 PNG) under output/masks/")
    preview: int = setting(16, "records drawn in OUTPUT/preview.png, a contact sheet of the run (input with the "
                               "hole | output) of its first ok records by id; 0 = none")
    max_pixels: int = setting(2048 * 2048, "pixel budget per image: larger images are inpainted downscaled "
                                           "and pasted back at the hole (flag `resized`); 0 = no budget")
    backend: str = setting("torch", "inference engine of the model actors: torch | onnxruntime (fp32; the graph is "
                                    "exported once per model into OUTPUT/_models/, needs the onnx extra) | openvino "
                                    "(fp32 or bf16, CPU; the openvino extra); README \"Export\"")
    hd_strategy: str = setting(DEFAULT_HD_STRATEGY, "windows: images over 800 px are inpainted in a "
                                                    "native-resolution context window around each hole region "
                                                    "(lama_core/hd_strategy.py); full: the whole frame always")
    records_per_file: int = setting(1000, "rows per records/*.parquet file")
    seed: int = setting(0, "weight seed when `model` is a preset name")
    max_input_pixels: int = setting(DEFAULT_MAX_INPUT_PIXELS, "images over this many pixels (read from the header, before "
                                                 "decoding) are input errors (8192² takes 50 MP photos at full "
                                                 "size); 0 = no limit")
    resize_over_limit: bool = setting(False, "true: a JPEG over max_input_pixels is decoded at 1/2, 1/4 or 1/8 "
                                             "scale to fit (flag `resized`, processed_width/processed_height "
                                             "recorded) instead of being an input error")
    storage_attempts: int = setting(6, "tries per storage request on transient faults (connection refused or "
                                       "reset, timeouts, 5xx, throttling)")
    storage_backoff_seconds: float = setting(1.0, "first wait between storage tries; doubles each try")
    storage_backoff_max_seconds: float = setting(30.0, "longest wait between storage tries")
    lease_seconds: float = setting(120.0, "the output's one-writer lease: renewed every third of this; a "
                                          "killed run's lease expires after it")

    def problems(self) -> list[str]:
        """Every value out of range, one sentence each (empty: the config is good)."""
        problems = self.worker_problems()
        problems += non_negative(self, "max_pixels", "mask_seed", "seed", "max_input_pixels", "mask_dilate", "preview",
                                 "storage_backoff_seconds", "storage_backoff_max_seconds")
        problems += at_least_one(self, "records_per_file", "storage_attempts", "records_per_shard")
        problems += finite(self, "storage_backoff_seconds", "storage_backoff_max_seconds")
        if 0 < self.max_pixels < 64 * 64:
            problems.append(f"max_pixels must be 0 (no budget) or >= 4096 (64x64), got {self.max_pixels}")
        if not 5 <= self.lease_seconds <= MAX_LEASE_SECONDS:
            problems.append(f"lease_seconds must be a number in [5, {MAX_LEASE_SECONDS:.0f}], got {self.lease_seconds}")
        problems += choices(self, input_format=INPUT_FORMATS, hd_strategy=HD_STRATEGIES, output_format=OUTPUT_FORMATS)
        if not 0 <= self.png_compress_level <= 9:
            problems.append(f"png_compress_level must be 0-9, got {self.png_compress_level}")
        if not 1 <= self.jpeg_quality <= 100:
            problems.append(f"jpeg_quality must be 1-100, got {self.jpeg_quality}")
        if self.mask_kind is not None:
            problems += choices(self, mask_kind=MASK_KINDS)
        if problem := backend_problem(self.backend, self.precision, "cuda" if self.gpus_per_worker else "cpu"):
            problems.append(problem)
        if not self.input or not self.output:
            problems.append("input and output must not be empty")
        return problems

    @property
    def drawn_mask_kind(self) -> str:
        """The mask set drawn for a Parquet or WebDataset record without a mask."""
        return self.mask_kind or DEFAULT_MASK_KIND


#: Options that change the pixels or numbers written: remembered in OUTPUT/_settings.json
#: (``pipelines.common.run_settings``) with the model id; a rerun with other values is
#: refused. Input locations (``input``, ``mask_dir``) are not settings: fixing a forgotten
#: ``mask_dir`` and rerunning with ``retry_errors=true`` is the way to repair records.
RESULT_KEYS = ("mask_kind", "mask_seed", "precision", "max_pixels", "max_input_pixels", "output_format",
               "jpeg_quality", "hd_strategy", "mask_dilate", "backend", "resize_over_limit")
#: What outputs written before a key of ``RESULT_KEYS`` existed did, for comparing with
#: their ``_settings.json``: JPEGs over ``max_input_pixels`` were always decoded reduced;
#: the model always ran on torch.
RESULT_KEYS_BEFORE = {"resize_over_limit": True, "backend": "torch"}
