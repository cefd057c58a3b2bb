"""The rules of params.yaml's `export` section (each key is documented in params.yaml)."""

from cifar.core.params import positive_int

EXPORT = {
    "representative_images": positive_int("an integer from 1 to 10000", maximum=10_000),
    "latency_runs": positive_int("an integer from 1 to 10000", maximum=10_000),
}
