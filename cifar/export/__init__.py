"""The trained model in deployable formats: a TensorFlow SavedModel, and TFLite (float32, full-integer int8)."""
