"""Training data: the images of ``input`` split into training and held-out validation
images, decoded and cut into random crops (the Ray Data stage ``TrainingCrops`` for the Ray
job, ``training_images`` for the single-process one), and the fixed validation batch.

Both trainers decode through ``pipelines.records.codecs.decode_image`` with the config's
``max_input_pixels`` (read from the header, before decoding) and cut crops with
``lama_core.augment.crop_function``: an image over the limit or undecodable is skipped and
counted, named on the console (a training set tolerates a few bad files; an inference job
turns each into an error row instead). The Ray job's decode tasks send each skip to a
``pipelines.cluster.progress.SkippedInputs`` actor, whose first names the driver prints.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lama_core.augment import crop_function, random_crop
from lama_core.storage import filesystem_for

from pipelines.common.samples import TRAINING_PHOTOS, VALIDATION_PHOTOS, png_bytes, sample_photos
from pipelines.records.codecs import RecordError, decode_image
from pipelines.records.listing import is_image_file, list_files
from pipelines.train.config import TrainConfig, TrainingOptions

#: Mask indices of the validation batch live far from the training ranges.
VALIDATION_MASK_OFFSET = 10**9
#: Images named when some are skipped (the count covers all).
_NAMED_SKIPS = 5


def list_training_inputs(data: str, endpoint_url: str | None = None) -> tuple[str, list[str]]:
    """``("images" | "parquet", [filesystem paths])`` for the training data at ``data``.
    Raises ``FileNotFoundError`` naming ``data`` when it holds neither images nor shards."""
    fs, root = filesystem_for(data, endpoint_url)
    if not fs.exists(root):
        raise FileNotFoundError(f"training data not found: {data}")
    rel = list_files(fs, root)
    is_file = fs.isfile(root)
    paths = [root if is_file else f"{root.rstrip('/')}/{r}" for r in rel]
    shards = [p for p in paths if p.endswith(".parquet")]
    if shards:
        return "parquet", shards
    images = [p for p in paths if is_image_file(p)]
    if not images:
        raise FileNotFoundError(f"no images (png/jpg/webp) or Parquet shards under {data}")
    return "images", images


def split_held_out(cfg: TrainingOptions, endpoint_url: str | None = None) -> tuple[str, list[str], list[str]]:
    """``(kind, training paths, held-out paths)`` of ``cfg.input`` (``list_training_inputs``).
    Without ``validation_input`` the last ``validation_images`` images (sorted), or the last
    Parquet shard, are held out for validation and never trained on; with it nothing is.
    Raises ``ValueError`` when nothing would be left to train on."""
    kind, paths = list_training_inputs(cfg.input, endpoint_url)
    paths = sorted(paths)
    if cfg.validation_input:
        return kind, paths, []
    held = 1 if kind == "parquet" else min(cfg.validation_images, len(paths))
    if held >= len(paths):
        raise ValueError(f"{cfg.input} has {len(paths)} {'shards' if kind == 'parquet' else 'images'}: too few to "
                         f"hold out {held} for validation and train on the rest (give validation_input=)")
    return kind, paths[:len(paths) - held], paths[len(paths) - held:]


@dataclass(frozen=True)
class TrainingCrops:
    """Ray Data stage (CPU tasks): encoded ``bytes`` column (and optional ``path``) -> ``image``
    column of uint8 ``crop x crop x 3`` training crops, ``crops_per_image`` of them per image
    (decode once, crop many: small datasets then fill an epoch with full batches instead of
    paying a pipeline restart per step). Crops come from fresh OS entropy, so every epoch
    (the stream re-executes this stage) sees new crops; runs are therefore not
    bit-reproducible. Skipped images (over ``max_input_pixels`` or undecodable) go to
    ``skipped`` (a ``SkippedInputs`` actor handle; None: the worker's log only)."""

    crop_size: int
    crops_per_image: int
    augmentation: str
    grayscale_probability: float
    max_input_pixels: int
    skipped: Any = None
    #: Images per task batch; half a CPU per task, so the stage still runs when the
    #: training workers hold all but half a core of a node.
    batch_size: int = 8
    num_cpus: float = 0.5

    @classmethod
    def of(cls, cfg: TrainConfig, skipped: Any = None) -> "TrainingCrops":
        return cls(cfg.crop_size, cfg.crops_per_image, cfg.augmentation, cfg.grayscale_probability,
                   cfg.max_input_pixels, skipped)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cut = crop_function(self.augmentation, self.crop_size, np.random.default_rng(), self.grayscale_probability)
        crops = []
        names = batch["path"] if "path" in batch else [""] * len(batch["bytes"])
        for data, name in zip(batch["bytes"], names):
            try:
                image, _ = decode_image(bytes(data), str(name), self.max_input_pixels, reduce=True)
            except RecordError as exc:
                print(f"skipping training image: {exc}")
                if self.skipped is not None:
                    self.skipped.add.remote(str(exc))
                continue
            crops.extend(cut(image) for _ in range(self.crops_per_image))
        if not crops:
            return {"image": np.zeros((0, self.crop_size, self.crop_size, 3), np.uint8)}
        return {"image": np.stack(crops)}

    def apply(self, ds: Any) -> Any:
        """``ds.map_batches`` of this stage."""
        return ds.map_batches(self, batch_size=self.batch_size, num_cpus=self.num_cpus)


def build_training_dataset(cfg: TrainConfig, skipped: Any = None) -> Any:
    """The Ray Dataset of training crops (column ``image``: uint8 ``crop x crop x 3``);
    ``skipped``: a ``SkippedInputs`` handle told of every image skipped."""
    import ray.data

    from pipelines.cluster.filesystems import pyarrow_filesystem

    if not cfg.input:
        items = [{"bytes": png_bytes(img), "path": f"sample:{name}"}
                 for name, img in sample_photos(TRAINING_PHOTOS).items()]
        ds = ray.data.from_items(items)
    else:
        kind, paths, _ = split_held_out(cfg, cfg.endpoint_url)
        filesystem = pyarrow_filesystem(cfg.input, cfg.endpoint_url)
        if kind == "parquet":
            # The shard's path names a skipped image (a row has no file name of its own).
            ds = ray.data.read_parquet(paths, filesystem=filesystem, columns=["image"], include_paths=True)
            ds = ds.rename_columns({"image": "bytes"})
        else:
            ds = ray.data.read_binary_files(paths, filesystem=filesystem, include_paths=True)
    return TrainingCrops.of(cfg, skipped).apply(ds)


def training_images(cfg: TrainingOptions) -> list[np.ndarray]:
    """The decoded training images (uint8 ``H x W x 3``) of a single-process run (local
    files): ``samples.TRAINING_PHOTOS`` for the default data, else the images of
    ``cfg.input`` that ``split_held_out`` keeps for training. Images over
    ``cfg.max_input_pixels`` or undecodable are skipped: one console line counts them
    and names the first. Raises ``ValueError`` for Parquet input, ``FileNotFoundError``
    when no image is left."""
    if not cfg.input:
        return list(sample_photos(TRAINING_PHOTOS).values())
    kind, paths, _ = split_held_out(cfg)
    if kind != "images":
        raise ValueError("local training reads image folders; use jobs/train.py for Parquet shards")
    images, skipped = [], []
    for path in paths:
        with open(path, "rb") as f:
            try:
                images.append(decode_image(f.read(), path, cfg.max_input_pixels, reduce=True)[0])
            except RecordError as exc:
                skipped.append(str(exc))
    if skipped:
        print(f"skipped {len(skipped)} of {len(paths)} training images: " + "; ".join(skipped[:_NAMED_SKIPS])
              + ("; ..." if len(skipped) > _NAMED_SKIPS else ""))
    if not images:
        raise FileNotFoundError(f"no decodable training image in {cfg.input}")
    return images


def validation_batch(cfg: TrainingOptions, endpoint_url: str | None = None) -> dict[str, np.ndarray]:
    """A fixed validation batch of held-out images (never trained on): the first
    ``validation_images`` of ``validation_input``, else of the images ``split_held_out``
    keeps out of training, else (default data) ``samples.VALIDATION_PHOTOS``; centre crops,
    with masks of fixed indices. The driver builds it once and every rank scores all of it.
    ``{"images": N x 3 x S x S float32 [0,1], "masks": N x 1 x S x S float32 {0,1}}``."""
    size = cfg.crop_size
    if not cfg.input and not cfg.validation_input:
        sources = list(sample_photos(VALIDATION_PHOTOS).values())[: cfg.validation_images]
    else:
        import pyarrow.parquet as pq

        source_uri = cfg.validation_input or cfg.input
        if cfg.validation_input:
            kind, paths = list_training_inputs(cfg.validation_input, endpoint_url)
        else:
            kind, _, paths = split_held_out(cfg, endpoint_url)
        fs, _ = filesystem_for(source_uri, endpoint_url)
        sources = []
        for path in paths:
            if len(sources) >= cfg.validation_images:
                break
            try:
                if kind == "parquet":
                    with fs.open(path, "rb") as f:
                        column = pq.read_table(f, columns=["image"]).column("image").to_pylist()
                    for data in column[: cfg.validation_images - len(sources)]:
                        sources.append(decode_image(data, path, cfg.max_input_pixels, reduce=True)[0])
                else:
                    with fs.open(path, "rb") as f:
                        sources.append(decode_image(f.read(), path, cfg.max_input_pixels, reduce=True)[0])
            except RecordError:
                continue
    if not sources:
        raise FileNotFoundError("no decodable validation image in "
                                f"{cfg.validation_input or cfg.input or 'the sample photos'}")
    rng = np.random.default_rng(cfg.seed)
    crops = []
    for image in sources:
        h, w = image.shape[:2]
        if min(h, w) >= size:  # centre crop; random_crop handles upscaling of small ones
            y, x = (h - size) // 2, (w - size) // 2
            crops.append(np.ascontiguousarray(image[y:y + size, x:x + size]))
        else:
            crops.append(random_crop(image, size, rng, flip=False))
    from lama_core.training import make_mask_batch  # torch: not for the decode tasks that import this module

    images = np.stack(crops).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    masks = make_mask_batch(cfg.mask_kind, cfg.seed, VALIDATION_MASK_OFFSET, len(crops), size, size).numpy()
    return {"images": images, "masks": masks}
