"""Calibration: temperature scaling, fitted on held-out training images and held by the saved model."""
