"""Stage fetch: bring the dataset named by `fetch.source` into data/raw/dataset, verified and checked.

Reads params.yaml's `fetch` section. `fetch.source` is a download descriptor (data/sources/*.yaml:
a URL and its checksum, downloaded through the Keras cache) or a dataset on disk: an archive, or a
directory of image folders (packed as a tar). Every member is read and checked here.
Writes data/raw/dataset.
"""

import sys

from cifar.core import cli
from cifar.core.artifacts import Artifacts
from cifar.core.params import load_params
from cifar.data.fetching import fetch
from cifar.data.params import FETCH


def main(argv=None):
    cli.parser("stages.fetch", __doc__).parse_args(argv)
    settings = load_params({"fetch": FETCH})["fetch"]
    fetch(settings, Artifacts())


if __name__ == "__main__":
    sys.exit(cli.run(main))
