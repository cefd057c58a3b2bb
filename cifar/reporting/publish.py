"""The report as a pull-request comment and a job summary show it: every image uploaded, linked by URL.

A code host renders a comment (and GitHub a job summary) without the repository's files, so
report.md's relative image links would break there. Each local image is handed to an upload
command (in CI, CML's `cml asset publish`, which prints the uploaded file's URL) and its link
rewritten to that URL; report.md itself keeps its relative links, for a clone.
"""

import re
import shlex
import subprocess
from pathlib import Path

from cifar.core.errors import PipelineError

IMAGE = re.compile(r"!\[(?P<alt>[^\]]*)\]\((?P<src>[^)\s]+)\)")


def upload_with(command):
    """An uploader running `command <file>`, which must print the file's URL on its last line."""

    def upload(path):
        result = subprocess.run([*shlex.split(command), str(path)], capture_output=True, text=True)
        lines = result.stdout.strip().splitlines()
        if result.returncode != 0 or not lines:
            raise PipelineError(f"{command} {path} failed: {(result.stderr.strip().splitlines() or ['no URL'])[-1]}")
        return lines[-1].strip()

    return upload


def published(markdown, folder, upload):
    """`markdown` with every relative image link (resolved in `folder`) replaced by its uploaded URL."""
    urls = {}

    def replace(match):
        src = match["src"]
        if "://" in src:
            return match[0]
        if src not in urls:
            urls[src] = upload(Path(folder) / src)
        return f"![{match['alt']}]({urls[src]})"

    return IMAGE.sub(replace, markdown)
