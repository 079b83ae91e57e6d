"""The one error a job reports to its user instead of a traceback."""


class JobError(RuntimeError):
    """A job could not run (bad config, unreachable storage, missing model, output held by
    another run, settings that differ from the output's earlier runs): the job prints the
    message as one line on stderr and exits 1. Raised anywhere in ``pipelines``; caught
    only by ``pipelines.common.cli.run_job``."""
