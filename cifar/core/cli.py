"""The command line of every stage and command: --help, one error line, exit statuses.

`--help` prints the usage and the module's docstring and runs nothing (exit 0); an
unknown flag, or any PipelineError, is one line on stderr and exit status 2.
"""

import argparse
import sys

from cifar.core.errors import EXIT_USER_ERROR, PipelineError


class CommandParser(argparse.ArgumentParser):
    """argparse, with its usage errors on one line."""

    def error(self, message):
        self.exit(EXIT_USER_ERROR, f"error: {self.prog}: {message} (see --help)\n")


def parser(module, doc):
    """The parser of `python -m <module>`: its first docstring line as description, the rest after the options."""
    summary, _, details = doc.strip().partition("\n")
    return CommandParser(
        prog=f"python -m {module}",
        description=summary,
        epilog=details.strip() or None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def run(main, argv=None):
    """Run a command's main(argv); a PipelineError becomes one line on stderr and exit status 2."""
    try:
        main(argv)
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0
