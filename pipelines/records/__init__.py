"""Records from storage: image/mask codecs (``codecs``), listing a job's input into records
(``listing``: folders; ``webdataset``: tar shards; ``shard_plan``: Parquet shards, planned in
Ray tasks), the decode options and decoder every input form goes through (``decode``),
column batches (``batches``), and what earlier runs left in ``OUTPUT/records/``
(``resume``). Imports ``common`` (and Ray only inside the functions that plan on it)."""
