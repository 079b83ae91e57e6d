"""Evaluation sweeps (``jobs/evaluate.py``): its config (``config``), which checkpoints
(``checkpoints``), the ground truth and mask sets (``data``), the output layout and tables
(``layout``), the Ray Data stages (``stage``), one sweep (``sweep``), plots (``plots``) and
the driver (``job``)."""
