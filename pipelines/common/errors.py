"""The one error a job reports to its user instead of a traceback."""


class JobError(RuntimeError):
    """A job could not run (bad config, unreachable storage, missing model, output held by
    another run, settings that differ from the output's earlier runs): the job prints the
    message as one line on stderr and exits 1. Raised anywhere in ``pipelines``; caught
    only by ``pipelines.common.cli.run_job``."""


class ConfigError(JobError):
    """A bad setting found before any work (a value out of range, a local path that does not
    exist): exit code 2, like a bad key on the command line."""
