"""What every job shares, without Ray or torch: the typed-config kit and the command line
(``config_kit``, ``cli``), ``JobError`` and the error kinds of a record, storage access and
bounded retries (``storage``, ``retry``), the settings remembered in an output
(``run_settings``), the one-writer lease (``output_lease``) and the sample photos that
make every job run with zero config (``samples``). Imports only ``lama_core`` (light parts)."""
