"""Converting the Keras model with TensorFlow's own tools: SavedModel export, then the TFLite converter.

Both TFLite models take raw uint8 pixels (N, 32, 32, 3), as the Keras model does (its first layer
normalises them). The int8 model is fully integer: weights and activations quantised with ranges
measured on a representative set of training images; its output is the class probabilities as
uint8, 0..255 for 0..1 (its details carry the scale).
"""

import tensorflow as tf


def write_saved_model(model, directory):
    """A SavedModel (its `serve` signature: uint8 images -> class probabilities) in `directory`.

    `model.export` traces `model.call` without a `training` argument, which leaves each layer at
    its own default: the airbench models' RandomTranslation then shifts every image at inference and
    its BatchNorm updates its statistics (ops TFLite lacks). The endpoint here says inference.
    """
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    (image,) = model.inputs
    signature = [tf.TensorSpec(image.shape, image.dtype, name=image.name)]
    archive.add_endpoint("serve", lambda images: model(images, training=False), input_signature=signature)
    archive.write_out(str(directory), verbose=False)


def tflite_float(saved_model):
    return tf.lite.TFLiteConverter.from_saved_model(str(saved_model)).convert()


def tflite_int8(saved_model, representative_images):
    """Full-integer quantisation; `representative_images` (uint8) calibrate the activation ranges."""
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([image[None]] for image in representative_images)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
    return converter.convert()
