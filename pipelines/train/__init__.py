"""LaMa GAN training: its configs (``config``), training data and the validation batch
(``data``), checkpoints of a run (``checkpoints``), the one training loop (``loop``) that
both the Ray Train worker (``ray_job``, ``jobs/train.py``) and the single-process trainer
(``local``, ``jobs/train_local.py``) run through callbacks."""
