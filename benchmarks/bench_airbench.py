"""airbench's own code beside our port of it: its accuracy on our data, its training speed against ours.

    python -m benchmarks.bench_airbench [--data data/prepared] [--reference path/to/airbench94.py]
        [--json out.json]                    # the peer's accuracy on our data, its 9.9 epochs
    python -m benchmarks.bench_airbench --peer airbench94_muon [--widths 64 256 256] [--seed 0]
        [--reference path/to/airbench94_muon.py]     # its newest record: Muon, 8 epochs at batch 2,000
    python -m benchmarks.bench_airbench --anchor [--repeats 3]   # airbench94's img/s against our airbench94's

Our models `airbench94` and `airbench94_muon` are Keras ports of Keller Jordan's airbench94.py and
airbench94_muon.py. To know what accuracy the data allows at those recipes, this trains the peer itself
on the arrays that `preprocess` wrote, in its worker process (benchmarks/airbench_peer.py: the file
pinned by commit and SHA-256, changed only where a CPU needs it); docs/fast-model.md sets its result
beside ours, and benchmarks/studies/bench_like_for_like.py trains both sides in turns. `--anchor`
measures its training speed against our airbench94's, both at airbench94's values (AIRBENCH94_ORIGINAL
of benchmarks/recipes.py), the sides interleaved, each sample a fresh process: the peer's worker
(PyTorch) or ours (`--part ours`, TensorFlow), never both in one.
Its precision follows `train.precision: auto`: bfloat16 where the CPU has bfloat16 units (the peer's
float16 on a GPU), float32 elsewhere. PyTorch is an optional extra (`pip install -e .[reference]`),
never a dependency of the pipeline; without it this benchmark says so and exits.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.airbench_peer import (
    AIRBENCH94,
    AIRBENCH94_MUON,
    PEERS,
    ReferenceFileError,
    check_prepared,
    random_arrays,
    reference_path,
    reference_source,
    torch_available,
    worker_command,
    worker_env,
)
from benchmarks.interleave import MIN_REPEATS, images_per_second, interleaved, ratio
from benchmarks.recipes import AIRBENCH94_MUON_ORIGINAL, AIRBENCH94_ORIGINAL

PROJECT = Path(__file__).resolve().parents[1]


class PeerFailed(Exception):
    """The peer's worker process failed (it has said why on its stderr)."""


# The peer's accuracy on our data.


def peer_on_prepared(peer, reference, data, seed=0, epochs=None, batch_size=None, widths=None, precision="auto"):
    """The peer trained on preprocess's arrays in `data`, in its worker process, its table shown as it
    trains: its result (airbench_peer.run_reference's)."""
    with tempfile.TemporaryDirectory(prefix="bench-airbench-") as scratch:
        out = Path(scratch) / "result.json"
        options = dict(data=data, seed=seed, epochs=epochs, batch_size=batch_size, widths=widths)
        command = worker_command("train", peer, reference, **options, precision=precision, json=out)
        if subprocess.run(command, env=worker_env()).returncode != 0:
            raise PeerFailed(f"{peer.name} failed in its worker process (its error above)")
        return json.loads(out.read_text())


def describe(peer, result):
    return (
        f"{peer.name} reference ({result['dtype']}, {result['threads']} threads): test accuracy "
        f"{result['test_accuracy_tta']:.4f} with TTA ({result['test_accuracy']:.4f} without); training "
        f"{result['train_s']:.0f} s, {result['train_images_per_s']:.0f} img/s; wall {result['wall_s']:.0f} s"
    )


# The speed anchor: the peer's training images/s against ours, at airbench94's values.


def ours_images_per_second(count, batch_size=1024, widths=AIRBENCH94_ORIGINAL["widths"]):
    """Our airbench94's training speed at airbench94's values: the train stage's model, optimizer and
    batches on `count` random images, the second epoch timed."""
    import keras

    from cifar import models
    from cifar.core.params import read_params_file
    from cifar.core.runtime import configure_tensorflow
    from cifar.training.batches import training_batches
    from cifar.training.loop import compile_model

    configure_tensorflow()
    airbench94 = models.model("airbench94")
    section = {**read_params_file(PROJECT / "params.yaml")["airbench94"], **AIRBENCH94_ORIGINAL}
    section.update(widths=list(widths), batch_size=batch_size)
    recipe = models.recipe("airbench94", {"airbench94": section})
    arrays = random_arrays(count, 100)
    keras.utils.set_random_seed(0)
    network = airbench94.build(recipe, 10, arrays["x_train"])
    steps = count // batch_size
    compile_model(network, airbench94, recipe, steps)
    y = keras.utils.to_categorical(arrays["y_train"], 10)
    fit = lambda n: network.fit(  # noqa: E731
        training_batches(arrays["x_train"], y, batch_size, 0, 0, n, airbench94.batching(recipe)),
        shuffle=False,  # training_batches shuffles, as in the train stage
        steps_per_epoch=steps,
        epochs=n,
        verbose=0,
    )
    return images_per_second(fit, steps * batch_size, 1)


def sample(command, side):
    """One images/s sample of `side`, in a fresh process running `command` (its last line: JSON)."""
    result = subprocess.run(command, env=worker_env(), capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"bench_airbench: the {side} sample failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])["images_per_s"]


def speed_anchor(count=3072, reference=None, repeats=MIN_REPEATS, batch_size=1024, widths=None, progress=print):
    """airbench94's training images/s against our airbench94's at its values, interleaved."""
    widths = widths or AIRBENCH94_ORIGINAL["widths"]
    progress(f"speed anchor: airbench94 vs ours, widths {widths}, batch {batch_size}, {count} images, {repeats} rounds")
    size = dict(images=count, batch_size=batch_size, widths=widths)
    ours = [sys.executable, "-m", "benchmarks.bench_airbench", "--part", "ours", "--images", str(count)]
    ours += ["--batch-size", str(batch_size), "--widths", *map(str, widths)]
    sides = {
        "airbench94": lambda: sample(worker_command("speed", AIRBENCH94, reference, **size), "airbench94"),
        "ours": lambda: sample(ours, "ours"),
    }
    summaries = interleaved(sides, repeats, progress)
    row = {
        "benchmark": "airbench94_speed_anchor",
        "images": count,
        "batch_size": batch_size,
        "widths": widths,
        "images_per_s": summaries,
        "ratio": ratio(summaries["ours"], summaries["airbench94"], "higher"),
    }
    print(
        f"training speed at airbench94's values, medians of {repeats}: ours {summaries['ours']['median']:.0f} img/s "
        f"(spread {summaries['ours']['spread']:.0%}), airbench94 {summaries['airbench94']['median']:.0f} img/s "
        f"(spread {summaries['airbench94']['spread']:.0%}); ours / airbench94 = {row['ratio']:.2f}x"
    )
    return row


def run_if_available(repeats=MIN_REPEATS, progress=print, **anchor):
    """speed_anchor where PyTorch and airbench94.py (pinned; downloaded once) are at hand; else None, said why."""
    if not torch_available():
        progress("skipped the airbench94 anchor: PyTorch is not installed (pip install -e .[reference])")
        return None
    try:
        reference = reference_path()
        reference_source(reference)
    except Exception as error:  # offline and not cached, or altered: the other rows stand
        progress(f"skipped the airbench94 anchor: airbench94.py unavailable ({error})")
        return None
    progress("our airbench94's training speed against airbench94's own code ...")
    return speed_anchor(**anchor, reference=reference, repeats=repeats, progress=progress)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/prepared", help="the folder preprocess wrote (default %(default)s)")
    parser.add_argument(
        "--peer", choices=list(PEERS), default=AIRBENCH94.name, help="which record file (default %(default)s)"
    )
    parser.add_argument("--reference", help="the peer's file at its pinned commit (default: download it once)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=float, help="airbench94's train_epochs (default: its 9.9)")
    parser.add_argument(
        "--anchor", action="store_true", help="measure airbench94's training speed against ours instead"
    )
    parser.add_argument("--images", type=int, default=3072, help="--anchor: random images per timed epoch")
    parser.add_argument("--batch-size", type=int, help="airbench94's batch (default: its 1024)")
    parser.add_argument("--widths", type=int, nargs=3, help="the conv groups' widths (default: 64 256 256)")
    parser.add_argument("--repeats", type=int, default=MIN_REPEATS, help="--anchor: rounds of the interleaved sides")
    parser.add_argument("--part", choices=["ours"], help=argparse.SUPPRESS)  # the anchor's sample of ours
    parser.add_argument(
        "--precision", choices=["auto", "float32", "mixed_bfloat16"], default="auto", help="as train.precision"
    )
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args()
    peer = PEERS[args.peer]
    original = AIRBENCH94_MUON_ORIGINAL if peer is AIRBENCH94_MUON else AIRBENCH94_ORIGINAL
    batch_size = args.batch_size or AIRBENCH94_ORIGINAL["batch_size"]
    widths = args.widths or original["widths"]
    if peer is AIRBENCH94 and widths[1:] != [4 * widths[0]] * 2:
        sys.exit(f"bench_airbench: --widths {' '.join(map(str, widths))}: airbench94's are w 4w 4w")
    if peer is AIRBENCH94_MUON and (args.batch_size or args.epochs or args.anchor):
        sys.exit("bench_airbench: --peer airbench94_muon: its batch and epochs are fixed (2,000 and 8); no --anchor")
    if args.part == "ours":
        import cifar  # noqa: F401  (the train stage's TensorFlow environment)

        print(json.dumps({"images_per_s": ours_images_per_second(args.images, batch_size, widths)}))
        return
    if not torch_available():
        sys.exit("bench_airbench: PyTorch is not installed; it is an optional extra: pip install -e .[reference]")
    try:
        reference = reference_path(args.reference, peer)  # fetched once, not by every sample
        reference_source(reference, peer)  # checked by SHA-256 before any work
        if args.anchor:
            return write_json(speed_anchor(args.images, reference, args.repeats, batch_size, widths), args.json)
        check_prepared(args.data)
        if peer is AIRBENCH94_MUON:  # its main() fixes its batch and epochs
            result = peer_on_prepared(peer, reference, args.data, args.seed, widths=widths, precision=args.precision)
        else:
            result = peer_on_prepared(
                peer, reference, args.data, args.seed, args.epochs, batch_size, widths, args.precision
            )
    except (ReferenceFileError, PeerFailed) as error:
        sys.exit(f"bench_airbench: {error}")
    print(describe(peer, result))
    write_json(result, args.json)


def write_json(result, path):
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
