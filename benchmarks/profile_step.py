"""Where one training step's time goes: TensorFlow's profiler trace of a model's step, per kind of op.

    python -m benchmarks.profile_step [--model airbench94_muon] [--precision auto] [--steps 2]
        [--set airbench94_muon.widths=[64,256,256] ...] [--json benchmarks/results/profile_step.json]

It builds the model at its params.yaml recipe (the fast default at full widths unless `--set` says
otherwise) on random images drawn by the train stage's own batches, compiles it as the train stage does
(cifar/training/loop.py), runs two steps untraced (the first traces), then records `--steps` steps with
`tf.profiler` and reads the trace (an XSpace protobuf; TensorFlow's bundled oneDNN prints nothing under
ONEDNN_VERBOSE). Not a timing to compare with another run: the profiler itself costs a little.

It prints, per kind of op, its share of the time the CPU threads spent in TensorFlow ops (several ops
run at once on the inter-op threads, so the shares are of busy time, not of the step's wall time):
convolutions forward, backward to their inputs and backward to their filters, BatchNorm, activations,
pooling, casts between float32 and bfloat16, the optimizer's Newton-Schulz and the rest of its update,
the input pipeline; and, for the convolutions, their arithmetic rate. Then the step's wall time and its
achieved TFLOP/s (the convolutions' and the head's multiply-adds, forward and backward) against the
peak this CPU reaches on one large bfloat16 matrix product (and float32's), measured in the same process.
"""

import argparse
import glob
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from benchmarks.recipes import project_model
from benchmarks.settings import settings
from benchmarks.workspace import parse_override

DEFAULT_MODEL = "airbench94_muon"
PEAK_MATRIX = 4096  # the side of the square matrices whose product measures the peak

# The kinds a step's ops are sorted into, in the order printed; `kind_of` says which op goes where.
KINDS = (
    "conv forward",
    "conv backward (inputs)",
    "conv backward (filters)",
    "BatchNorm",
    "activations",
    "pooling",
    "casts float32/bfloat16",
    "Newton-Schulz",
    "optimizer (rest)",
    "head, loss and metrics",
    "augmentation and input layers",
    "input pipeline",
    "other",
)
ACTIVATION_NAMES = ("Sigmoid", "Tanh", "Relu", "Relu6", "Elu", "Selu", "LeakyRelu", "Gelu", "Erf", "Erfc")
ACTIVATION_TYPES = {f"{name}{suffix}" for name in ACTIVATION_NAMES for suffix in ("", "Grad")} | {
    "_MklSwish",
    "_MklLeakyRelu",
    "_MklLeakyReluGrad",
}
# Keras layer names (as cifar/models name them) -> kind; the first part of the name that matches wins.
LAYER_KINDS = (
    ("_bn", "BatchNorm"),
    ("_bias", "BatchNorm"),  # the BatchNorm's bias (ScaledBias), and the whitening bias
    ("whiten_bias", "BatchNorm"),
    ("gelu", "activations"),
    ("silu", "activations"),
    ("relu", "activations"),
    ("activation", "activations"),
    ("pool", "pooling"),
    ("dense", "head, loss and metrics"),
    ("scale", "head, loss and metrics"),
    ("softmax", "head, loss and metrics"),
    ("random_", "augmentation and input layers"),
    ("standardize", "augmentation and input layers"),
    ("rescaling", "augmentation and input layers"),
    ("normalized_input", "augmentation and input layers"),
)


def kind_of(op_name, op_type, optimizer_name):
    """The kind (one of KINDS) of the op `op_name` (its full name scope) of type `op_type`."""
    if "Conv2DBackpropFilter" in op_type:
        return "conv backward (filters)"
    if "Conv2DBackpropInput" in op_type:
        return "conv backward (inputs)"
    if "Conv2D" in op_type:
        return "conv forward"
    scopes = op_name.split("/")
    if any(scope.startswith("newton_schulz") for scope in scopes):  # TensorFlow numbers repeated scopes: _1, _2
        return "Newton-Schulz"
    if op_type == "Cast":
        return "casts float32/bfloat16"
    if op_type.startswith("IteratorGetNext"):
        return "input pipeline"
    if op_type in ACTIVATION_TYPES:  # some activations' gradients (SiLU's) run outside their layer's scope
        return "activations"
    if optimizer_name in scopes:
        return "optimizer (rest)"
    for scope in scopes:
        for part, kind in LAYER_KINDS:
            if part in scope:
                return kind
    if any(scope in ("compile_loss", "compile_metrics", "categorical_crossentropy") for scope in scopes):
        return "head, loss and metrics"
    return "other"


def exclusive_times(line, names):
    """(event name, exclusive seconds) of one trace line: each event less the events nested inside it."""
    events = sorted((e.offset_ps, e.offset_ps + e.duration_ps, names[e.metadata_id]) for e in line.events)
    found, stack = [], []  # stack: [end, name, exclusive ps]
    for start, end, name in events:
        while stack and stack[-1][0] <= start:
            found.append(stack.pop())
        if stack:
            stack[-1][2] -= min(end, stack[-1][0]) - start
        stack.append([end, name, end - start])
    found.extend(stack)
    return [(name, ps / 1e12) for _, name, ps in found]


def read_trace(logdir, optimizer_name):
    """(seconds per kind, seconds per op type within each conv kind, [seconds of each step]) from the
    profiler's trace under `logdir`."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    (path,) = glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)
    space = xplane_pb2.XSpace()
    space.ParseFromString(Path(path).read_bytes())
    (plane,) = [plane for plane in space.planes if plane.name == "/host:CPU"]
    names = {key: meta.name for key, meta in plane.event_metadata.items()}
    seconds = Counter()
    steps = []
    for line in plane.lines:
        if line.name.startswith("tf_data"):  # tf.data's own threads, producing batches beside the step
            seconds["input pipeline"] += sum(s for _, s in exclusive_times(line, names))
            continue
        if line.name.startswith("tf_Compute") or line.name.startswith("tf_inter_op"):
            for name, exclusive in exclusive_times(line, names):
                if ":" in name:  # a TensorFlow op: "scope/name:Type"; the rest is the executor's bookkeeping
                    op_name, op_type = name.rsplit(":", 1)
                    seconds[kind_of(op_name, op_type, optimizer_name)] += exclusive
            continue
        # the Python thread: one event per step function executed (Keras's `..._step_on_iterator`)
        for event in line.events:
            name = names[event.metadata_id]
            if name.startswith("EagerLocalExecute") and "step_on_iterator" in name:
                steps.append(event.duration_ps / 1e12)
    return seconds, steps


CONV_KINDS = ("conv forward", "conv backward (filters)", "conv backward (inputs)")


def training_flops(network, batch_size):
    """{kind: FLOPs (multiply-adds x 2) of one training step of `network` on `batch_size` images}: every Conv2D
    forward, backward to its filters (when trainable) and to its inputs (when anything before it trains),
    by conv kind, and the same three for the Dense head together under "head, loss and metrics": airbench's
    count for its nets. The other ops are comparatively free of arithmetic."""
    import keras

    flops = Counter()
    trains_before = False
    for layer in network.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            forward = 2 * batch_size * int(np.prod(layer.output.shape[1:])) * int(np.prod(layer.kernel.shape[:-1]))
            kinds = CONV_KINDS if isinstance(layer, keras.layers.Conv2D) else ("head, loss and metrics",) * 3
            flops[kinds[0]] += forward
            flops[kinds[1]] += forward if layer.trainable_weights else 0
            flops[kinds[2]] += forward if trains_before else 0
        trains_before = trains_before or bool(layer.trainable_weights)
    return flops


def matmul_peak(dtype, side=PEAK_MATRIX, repeats=3):
    """TFLOP/s of the best of `repeats` products of two side x side matrices in `dtype`: the arithmetic
    rate this CPU reaches in TensorFlow (oneDNN) at its easiest."""
    import tensorflow as tf

    a = tf.cast(tf.random.stateless_normal((side, side), seed=(0, 1)), dtype)
    product = tf.function(lambda a: tf.matmul(a, a))
    product(a).numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        product(a).numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * side**3 / best / 1e12


def profile(model_name, overrides=(), precision_setting="auto", steps=2, seed=0, inter_op_threads=1, progress=print):
    """The profile of `steps` training steps of `model_name` (its params.yaml recipe with `overrides`).

    `inter_op_threads` 1: one op at a time, each on every core, so that an op's time in the trace is its
    own, not shared with an op beside it (the step's wall time measured the same as with TensorFlow's
    default, 3.14 s against 3.07 s at the fast default on a 2-core Zen 5); 0: TensorFlow's default."""
    import keras
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)

    from cifar.core.runtime import configure_tensorflow
    from cifar.training import precision
    from cifar.training.batches import training_batches
    from cifar.training.loop import compile_model

    model, recipe = project_model(model_name, overrides)
    policy = precision.resolve(precision_setting)
    configure_tensorflow()
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    images = (2 + steps + 1) * recipe.batch_size  # every step a fresh batch, as in an epoch
    x = rng.integers(0, 256, (images, 32, 32, 3), dtype=np.uint8)
    y = keras.utils.to_categorical(rng.integers(0, 10, images), 10)
    with precision.building_with(policy):
        network = model.build(recipe, 10, x, seed, 1)
    steps_per_epoch = images // recipe.batch_size
    compile_model(network, model, recipe, steps_per_epoch)
    batches = training_batches(x, y, recipe.batch_size, seed, 0, 1, model.batching(recipe))
    progress(f"{model_name} at batch {recipe.batch_size} in {policy}: tracing and two warm-up steps ...")
    iterator = batches.repeat()  # a fresh iterator each fit, as each epoch of the train stage
    network.fit(iterator, steps_per_epoch=2, epochs=1, verbose=0)
    progress(f"profiling {steps} steps ...")
    with tempfile.TemporaryDirectory(prefix="profile-step-") as logdir:
        tf.profiler.experimental.start(logdir)
        network.fit(iterator, steps_per_epoch=steps, epochs=1, verbose=0)
        tf.profiler.experimental.stop()
        seconds, step_s = read_trace(logdir, network.optimizer.name)
    progress("the peak: one large matrix product in bfloat16 and in float32 ...")
    peaks = {"bfloat16": matmul_peak(tf.bfloat16), "float32": matmul_peak(tf.float32)}
    busy = sum(seconds.values())
    step = float(np.median(step_s)) if step_s else None
    per_kind = training_flops(network, recipe.batch_size)
    flops = sum(per_kind.values())
    return {
        "model": model_name,
        "recipe": {"batch_size": recipe.batch_size, "widths": list(getattr(recipe, "widths", []) or [])},
        "policy": policy,
        "settings": settings(),
        "steps": steps,
        "step_s": step,
        "busy_s_per_step": busy / steps,
        "share": {kind: seconds[kind] / busy for kind in KINDS},
        "seconds_per_step": {kind: seconds[kind] / steps for kind in KINDS},
        "conv_tflops": {
            kind: per_kind[kind] * steps / seconds[kind] / 1e12
            for kind in per_kind
            if kind in CONV_KINDS and seconds[kind] and per_kind[kind]
        },
        "tflop_per_step": flops / 1e12,
        "achieved_tflops": flops / step / 1e12 if step else None,
        "peak_tflops": peaks,
    }


def table(result):
    """The profile as the text benchmarks/results/ keeps."""
    machine = result["settings"]
    lines = [
        f"CPU: {machine['cpu']} ({machine['cpus']} cores), TensorFlow {machine['tensorflow']}",
        f"{result['model']} at batch {result['recipe']['batch_size']}, widths {result['recipe']['widths']}, "
        f"in {result['policy']}; {result['steps']} steps profiled, inter-op threads: "
        f"{result['settings']['inter_op_threads']}",
        "",
        "| kind of op | share of busy time | s per step | TFLOP/s |",
        "|---|---:|---:|---:|",
    ]
    for kind in KINDS:
        rate = result["conv_tflops"].get(kind)
        lines.append(
            f"| {kind} | {result['share'][kind]:.1%} | {result['seconds_per_step'][kind]:.3f} | "
            f"{f'{rate:.2f}' if rate else ''} |"
        )
    peak = result["peak_tflops"]
    lines += [
        "",
        f"busy time {result['busy_s_per_step']:.2f} s per step over {result['settings']['cpus']} cores; "
        f"the step's wall time {result['step_s']:.2f} s",
        f"arithmetic {result['tflop_per_step']:.3f} TFLOP per step: {result['achieved_tflops']:.2f} TFLOP/s, "
        f"{result['achieved_tflops'] / peak['bfloat16']:.0%} of the bfloat16 peak measured here "
        f"({peak['bfloat16']:.2f} TFLOP/s; float32's {peak['float32']:.2f})",
    ]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--precision", default="auto", help="auto, float32 or mixed_bfloat16 (train.precision's)")
    parser.add_argument("--steps", type=int, default=2, help="steps profiled (after two untraced ones)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        type=parse_override,
        help="section.key=value over params.yaml, e.g. airbench94_muon.batch_size=500",
    )
    parser.add_argument(
        "--inter-op-threads",
        type=int,
        default=1,
        help="1 (default): ops one at a time, each op's time its own; 0: TensorFlow's default",
    )
    parser.add_argument("--json", help="also write the result here")
    parser.add_argument("--text", help="also write the printed table here (benchmarks/results/profile_step-*.txt)")
    args = parser.parse_args(argv)
    result = profile(args.model, args.overrides, args.precision, args.steps, inter_op_threads=args.inter_op_threads)
    text = table(result)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if args.text:
        Path(args.text).write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
