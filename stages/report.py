"""Write reports/report.md and the `dvc plots` HTML page, with the diff against a base revision.

report.md holds the metrics table (with the base's values and the change), the params that
differ, the training curves, the confusion matrix, the prediction grid and the stimuli grids,
with relative paths so it renders on a code host. reports/plots/index.html is
`dvc plots diff <base>` drawn with a template that embeds Vega, so the page draws offline too.
"""

import sys

from cifar.core import cli
from cifar.core.artifacts import Artifacts
from cifar.reporting.report import build_report


def main(argv=None):
    parser = cli.parser("stages.report", __doc__)
    parser.add_argument("--base", default="main", help="revision to compare with (default: %(default)s)")
    args = parser.parse_args(argv)
    path = build_report(args.base)
    print(f"wrote {path} and {Artifacts().plots_page_dir / 'index.html'}")


if __name__ == "__main__":
    sys.exit(cli.run(main))
