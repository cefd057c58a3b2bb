"""Can the scores be trusted? Expected calibration error and the reliability diagram's bins.

Expected calibration error (ECE), the usual definition (Guo et al., 2017): the test images are
put into BINS equal-width bins by their confidence (the top class's probability; bin b holds
confidences in ((b-1)/BINS, b/BINS], the first bin [0, 1/BINS]); then
    ECE = sum over bins of (images in the bin / all images) * |accuracy in the bin - mean confidence in it|.
A perfectly calibrated model scores 0: of the images it is 80% sure of, 80% are right.
"""

import numpy as np

BINS = 15


def reliability_bins(probabilities, labels, bins=BINS):
    """Per bin: (lower edge, upper edge, images, accuracy, mean confidence); empty bins have None."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    # bin b holds ((b-1)/bins, b/bins]; a confidence of exactly 0 goes to the first bin
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    rows = []
    for b in range(bins):
        members = index == b
        count = int(members.sum())
        accuracy = float(correct[members].mean()) if count else None
        mean_confidence = float(confidence[members].mean()) if count else None
        rows.append((b / bins, (b + 1) / bins, count, accuracy, mean_confidence))
    return rows


def expected_calibration_error(probabilities, labels, bins=BINS):
    total = len(labels)
    return sum(
        count / total * abs(accuracy - confidence)
        for _, _, count, accuracy, confidence in reliability_bins(probabilities, labels, bins)
        if count
    )


def negative_log_likelihood(probabilities, labels, eps=1e-12):
    """Mean -log p(true class): what a calibrated, confident model keeps low."""
    return float(-np.mean(np.log(np.clip(probabilities[np.arange(len(labels)), labels], eps, 1.0))))
