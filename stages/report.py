"""Write reports/report.md and the `dvc plots` HTML page, with the diff against a base revision.

report.md holds the test metrics, per-class figures and stimuli (each with the base's value and
the change), the params that differ, both runs' training curves, the confusion matrix, the
prediction grid and the stimuli grids, with relative image paths so it renders in a clone.
When the base has no results, it says so and shows this run alone. reports/plots/index.html is
`dvc plots diff <base>`, drawn with Vega embedded so the page works offline.
With --publish-with, reports/report.published.md is report.md with every image uploaded by
that command (in CI: `cml asset publish`, which prints the URL), for a pull-request comment.
"""

import sys

from cifar.core import cli
from cifar.core.artifacts import Artifacts
from cifar.core.atomic import write_text
from cifar.reporting.publish import published, upload_with
from cifar.reporting.report import build_report


def main(argv=None):
    parser = cli.parser("stages.report", __doc__)
    parser.add_argument("--base", default="main", help="revision to compare with (default: %(default)s)")
    parser.add_argument(
        "--publish-with", metavar="COMMAND", help="upload command for the images, e.g. 'cml asset publish'"
    )
    args = parser.parse_args(argv)
    artifacts = Artifacts()
    report = build_report(args.base, artifacts)
    print(f"wrote {report} and {artifacts.plots_page_dir / 'index.html'}")
    if args.publish_with:
        text = published(report.read_text(), report.parent, upload_with(args.publish_with))
        write_text(artifacts.published_report, text)
        print(f"wrote {artifacts.published_report}, its images uploaded by `{args.publish_with}`")


if __name__ == "__main__":
    sys.exit(cli.run(main))
