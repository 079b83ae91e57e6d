"""Exporting a model for other runtimes (``jobs/export.py``): its config (``config``). The
export itself is ``lama_core.onnx_export.export_model``."""
