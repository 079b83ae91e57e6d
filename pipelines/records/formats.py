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
#: Images over this many pixels are refused from their header, before decoding (JPEGs are
#: decoded reduced to fit): the default of every job's ``max_input_pixels``.
DEFAULT_MAX_INPUT_PIXELS = 4096 * 4096
