"""Test-set metrics and test-time augmentation."""
