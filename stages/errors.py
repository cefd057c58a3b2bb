"""One clear error line and a non-zero exit for every expected failure."""

import sys


class PipelineError(Exception):
    """An error the user can fix (bad param, bad file); printed as one line."""


EXIT_USER_ERROR = 2


def run_stage(main, argv=None):
    """Run a stage's main(); turn PipelineError into one line on stderr and exit 2."""
    try:
        main(argv)
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0
