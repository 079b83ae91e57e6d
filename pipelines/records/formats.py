"""The input and output forms of the bulk job, by name (light: the configs import it)."""

#: ``input_format`` of ``jobs/inpaint.py``: ``auto`` picks one from the listing
#: (``pipelines.records.listing.detect_format``, ``pipelines.records.webdataset.is_webdataset_input``).
INPUT_FORMATS = ("auto", "folder", "parquet", "webdataset")
#: ``input_format`` of ``jobs/evaluate.py`` (ground truth: images, no masks).
EVAL_INPUT_FORMATS = ("auto", "folder", "parquet")
#: ``output_format`` of ``jobs/inpaint.py``.
OUTPUT_FORMATS = ("png", "jpg", "webdataset")
#: Image files a folder listing takes (any case).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
#: Images over this many pixels are refused from their header, before decoding: the default
#: ``max_input_pixels`` of the inpainting job. 8192² (67 MP) takes a 50 MP camera photo at
#: its own resolution (peak memory of the job in benchmarks/RESULTS.md, "Native resolution").
DEFAULT_MAX_INPUT_PIXELS = 8192 * 8192
#: The training job's default: its images are cut into 256² crops, so an image over it is
#: decoded reduced (JPEG) rather than held whole in every decode task.
TRAINING_MAX_INPUT_PIXELS = 4096 * 4096
