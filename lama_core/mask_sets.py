"""Mask file names: LaMa's folder convention and frozen mask sets.

Two naming conventions, each defined here once:

* LaMa's folder convention: the mask of image ``x.png`` is ``x_mask000.png`` beside it
  (``x_mask<digits>.<ext>``; several masks per image are numbered). The official loader
  globs ``*mask*.png`` and splits at the last ``_mask``; requiring digits (or nothing) after
  ``_mask`` keeps images such as ``face_masked.png`` from being taken for masks.
* A frozen mask set (``jobs/make_masks.py``): a folder of ``000000_mask000.png``,
  ``000001_mask000.png``, ... (0/255 single-channel PNGs); mask ``i`` pairs with image ``i``
  of an evaluation set.
"""
from __future__ import annotations

import re

#: A LaMa-convention mask's file stem (the relative path without extension):
#: ``group("base")`` is the stem of its image (``sub/x_mask000`` -> ``sub/x``).
MASK_STEM = re.compile(r"^(?P<base>.+)_mask\d*$")
#: A file name in a frozen mask set; ``group(1)`` is the zero-padded index.
FROZEN_MASK_NAME = re.compile(r"^(\d{6})_mask000\.png$")


def mask_image_stem(stem: str) -> str | None:
    """The image stem a LaMa-convention mask stem belongs to (``sub/x_mask000`` ->
    ``sub/x``), or None when ``stem`` (a relative path without extension) is not a mask's."""
    match = MASK_STEM.match(stem)
    return match["base"] if match else None


def frozen_mask_name(index: int) -> str:
    """File name of mask ``index`` (an int >= 0) in a frozen set: ``000042_mask000.png``."""
    return f"{index:06d}_mask000.png"


def is_frozen_mask_name(name: str) -> bool:
    """Whether the file name ``name`` (no folder) is a frozen set's mask name."""
    return FROZEN_MASK_NAME.match(name) is not None
