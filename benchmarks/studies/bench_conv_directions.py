"""The fast default's convolutions alone, in each direction and precision: how fast this CPU runs them.

    python -m benchmarks.studies.bench_conv_directions [--batch-size 2000] [--json path]

For the three conv shapes that hold most of airbench's arithmetic at widths 64/256/256 (31x31 24->64,
15x15 64->256, 7x7 256->256), it times TensorFlow's Conv2D, Conv2DBackpropInput and
Conv2DBackpropFilter (oneDNN's kernels, as in training) in float32 and in bfloat16, best of three
after one untimed run, and prints each one's TFLOP/s. benchmarks/profile_step.py shows the filter
gradient as the step's slowest part; this says whether that is the kernel itself or the step around it.
Run it once per setting to compare (e.g. ONEDNN_DEFAULT_FPMATH_MODE=BF16 in the environment).
"""

import argparse
import json
import time
from pathlib import Path

SHAPES = ((31, 24, 64), (15, 64, 256), (7, 256, 256))  # (side, in-channels, out-channels)


def best_of(function, repeats=3):
    function().numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function().numpy()
        best = min(best, time.perf_counter() - start)
    return best


def directions():
    """{direction: a compiled function of (input, filter, output gradient)}: TensorFlow's three conv ops."""
    import tensorflow as tf

    strides, padding = [1, 1, 1, 1], "SAME"

    def backward_inputs(x, w, dy):
        return tf.raw_ops.Conv2DBackpropInput(
            input_sizes=tf.shape(x), filter=w, out_backprop=dy, strides=strides, padding=padding
        )

    def backward_filters(x, w, dy):
        return tf.raw_ops.Conv2DBackpropFilter(
            input=x, filter_sizes=tf.shape(w), out_backprop=dy, strides=strides, padding=padding
        )

    return {
        "forward": tf.function(lambda x, w, dy: tf.nn.conv2d(x, w, 1, padding)),
        "backward (inputs)": tf.function(backward_inputs),
        "backward (filters)": tf.function(backward_filters),
    }


def measure(batch_size, progress=print):
    import tensorflow as tf

    from benchmarks.settings import settings
    from cifar.core.runtime import configure_tensorflow

    configure_tensorflow()
    compiled = directions()
    rows = []
    for side, cin, cout in SHAPES:
        flops = 2 * batch_size * side * side * cout * 9 * cin
        for dtype in (tf.float32, tf.bfloat16):
            x = tf.cast(tf.random.stateless_normal((batch_size, side, side, cin), seed=(0, 1)), dtype)
            w = tf.cast(tf.random.stateless_normal((3, 3, cin, cout), seed=(0, 2)) * 0.05, dtype)
            dy = tf.cast(tf.random.stateless_normal((batch_size, side, side, cout), seed=(0, 3)), dtype)
            for direction, function in compiled.items():
                seconds = best_of(lambda function=function, x=x, w=w, dy=dy: function(x, w, dy))
                rows.append({"shape": f"{side}x{side} {cin}->{cout}", "dtype": dtype.name, "direction": direction,
                             "seconds": seconds, "tflops": flops / seconds / 1e12})  # fmt: skip
                progress(f"{rows[-1]['shape']:>16} {dtype.name:>8} {direction:>18}: {seconds:.3f} s, "
                         f"{rows[-1]['tflops']:.2f} TFLOP/s")  # fmt: skip
    return {"benchmark": "conv_directions", "batch_size": batch_size, "settings": settings(), "rows": rows}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)
    result = measure(args.batch_size)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
