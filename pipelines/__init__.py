"""Ray Data and Ray Train wiring around ``lama_core``: readers, writers, actor-pool stages,
the distributed training loop and the evaluation sweep."""
