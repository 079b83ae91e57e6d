"""Ray plumbing shared by the jobs: connecting to (or starting) Ray (``ray_setup``), fsspec
URIs as pyarrow filesystems for Ray's readers and Ray Train (``filesystems``), the model
actor plan and pool (``actor_pool``), what every model actor does (``model_actor``), the
``map_batches`` specification of a stage (``stages``) and progress display
(``progress``). Imports ``common``; never a job room."""
