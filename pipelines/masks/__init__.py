"""Mask tools: frozen mask sets (``frozen``, ``jobs/make_masks.py``) and mask geometry files
from COCO-style annotations (``coco``, ``jobs/coco_masks.py``), with their configs (``config``)."""
