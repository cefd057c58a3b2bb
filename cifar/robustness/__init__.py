"""Accuracy under common corruptions, in the spirit of CIFAR-10-C (Hendrycks & Dietterich, 2019)."""
