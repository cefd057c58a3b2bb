"""The rules of params.yaml's `fetch` and `preprocess` sections (each key is documented in params.yaml)."""

from cifar.core.params import Rule, choice, non_negative_int, positive_int, positive_number

FETCH = {
    "source": Rule((str,), "a path: a download descriptor (data/sources/*.yaml), or a dataset archive or directory"),
    "retries": positive_int("an integer from 1 to 20", maximum=20),
    "timeout": positive_number("seconds, a number > 0"),
}

PREPROCESS = {
    "max_train_images": positive_int("null (all images) or an integer >= 1", nullable=True),
    "max_test_images": positive_int("null (all images) or an integer >= 1", nullable=True),
    "seed": non_negative_int(),
    "labels": choice("fine", "coarse"),
}
