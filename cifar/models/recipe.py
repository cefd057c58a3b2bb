"""Rules shared by the models' recipe sections of params.yaml (`seed_cnn`, `fast`)."""

from cifar.core.params import Rule, non_negative_int, positive_int, positive_number

COMMON = {
    "epochs": positive_int(),
    "batch_size": positive_int(),
    "learning_rate": positive_number(),
    "warmup_epochs": Rule((int, float), "a number of epochs from 0 to 100", minimum=0, maximum=100),
    # training images held out of training to fit the temperature (cifar/calibration); 0 = off
    "calibration_images": non_negative_int("an integer >= 0 (0 = no temperature scaling)"),
}
