"""Ray Data and Ray Train wiring around ``lama_core``, one room per concern:

* ``common``: what every job shares and no Ray: typed configs and the command line,
  ``JobError`` and error kinds, storage access and retries, remembered run settings,
  the output lease, the sample photos.
* ``cluster``: Ray plumbing: connecting to Ray, pyarrow filesystems for Ray's readers,
  the model actor plan and pool, what a model actor does first, progress display.
* ``records``: records from storage: codecs, input listing (folder, Parquet,
  WebDataset), decoding into rows, column batches, resume state of ``records/``.
* ``inpaint``, ``evaluate``, ``train``: one room per job (its config, stages, driver).
* ``masks``: mask sets and mask geometry files (``jobs/make_masks.py``, ``jobs/coco_masks.py``).

Imports run one way: a job room may import ``records``, ``cluster`` and ``common``;
``records`` and ``cluster`` import ``common``; ``common`` imports only ``lama_core``.
"""
