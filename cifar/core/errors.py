"""Errors a user can fix, reported as one line."""

EXIT_USER_ERROR = 2


class PipelineError(Exception):
    """An error the user can fix (bad param, bad file); printed as one line, exit status 2."""
