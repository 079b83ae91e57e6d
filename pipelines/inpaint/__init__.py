"""The bulk inpainting job (``jobs/inpaint.py``): its config (``config``), the input plan
and the driver (``job``), the model stage (``model_stage``) and the two writer stages
(``record_writer``: images + records; ``webdataset_writer``: tar shards)."""
