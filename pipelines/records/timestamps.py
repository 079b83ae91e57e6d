"""Column types shared by every table the jobs write (``OUTPUT/records``, ``per_image``,
``summary``); the README's "Output tables" section documents every column."""
from __future__ import annotations

from datetime import datetime, timezone

import pyarrow as pa

#: When a row was written: UTC, millisecond precision.
UTC_TIMESTAMP = pa.timestamp("ms", tz="UTC")


def utc_now() -> datetime:
    """The current time in UTC (timezone-aware), for a ``timestamp`` column."""
    return datetime.now(timezone.utc)
