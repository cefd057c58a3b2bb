"""airbench's own reference code (PyTorch) on this project's prepared data, on this machine's CPU.

    python -m benchmarks.bench_airbench [--data data/prepared] [--reference path/to/airbench94.py]
        [--json out.json]                    # the peer's accuracy on our data, its 9.9 epochs
    python -m benchmarks.bench_airbench --peer airbench94_muon [--widths 64 256 256] [--seed 0]
        [--reference path/to/airbench94_muon.py]     # its newest record: Muon, 8 epochs at batch 2,000
    python -m benchmarks.bench_airbench --anchor [--repeats 3]   # airbench94's img/s against our fast model's

The fast model (`train.model: fast`) is a Keras port of airbench94, and with `fast.optimizer: muon`
of airbench94_muon. To know what accuracy the data allows at those recipes, and how fast the peer
trains here, this runs the peer itself: the file airbench94.py or airbench94_muon.py of Keller
Jordan's cifar10-airbench at a pinned commit (downloaded once through the Keras cache and checked by
SHA-256, or given with --reference), with only the changes a CPU needs (each Peer's device_changes
below, each required to match), on the train/test arrays that `preprocess` wrote.
Its precision follows `train.precision: auto`: bfloat16 where the CPU has bfloat16 units (the
reference's float16 on a GPU), float32 elsewhere.

PyTorch runs in processes of its own, never beside TensorFlow (a CUDA build of PyTorch crashed on
import in a process that had TensorFlow loaded). It is an optional extra (`pip install -e
.[reference]`), never a dependency of the pipeline; without it this benchmark says so and exits.
"""

import argparse
import hashlib
import importlib.util
import io
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import types
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.interleave import MIN_REPEATS, interleaved, ratio
from benchmarks.recipes import AIRBENCH_RECIPE

PROJECT = Path(__file__).resolve().parents[1]
REPOSITORY = "https://raw.githubusercontent.com/KellerJordan/cifar10-airbench"


@dataclass(frozen=True)
class Peer:
    """One of cifar10-airbench's record files, pinned: its commit, its SHA-256 and the only changes a
    CPU needs, each (text in the file, its replacement, how many times it occurs, why)."""

    name: str
    commit: str
    sha256: str
    device_changes: tuple

    @property
    def url(self):
        return f"{REPOSITORY}/{self.commit}/{self.name}.py"

    @property
    def filename(self):  # in the Keras cache
        return f"{self.name}-{self.commit[:7]}.py"


AIRBENCH94 = Peer(
    "airbench94",
    "01a2367af6ab0586cfaedced4b63c53807d3643c",
    "3491d724b70d4879bcefa8af967a45c83e9ab6c92bec947e4230fcce436b0633",
    (
        ("map_location=torch.device(gpu)", "map_location=DEVICE", 1, "the data stays on the CPU"),
        (".half()", ".to(DTYPE)", 2, "float16 is a GPU's; bfloat16 or float32 on a CPU"),
        (".cuda()", ".to(DEVICE)", 1, "the network stays on the CPU"),
        ("(torch.half, torch.float)", "(torch.half, torch.bfloat16, torch.float)", 1, "lookahead on bfloat16 weights"),
        ("torch.cuda.Event(enable_timing=True)", "CpuEvent()", 2, "a wall clock for CUDA's event timer"),
        ("torch.cuda.synchronize()", "pass", 3, "CPU work is synchronous"),
    ),
)
# Its newest record: Muon for the filters, 8 epochs at batch 2,000. Its batch, epochs and rates are
# constants of main(); only the widths (a dict in CifarNet) are opened, so that a CPU can run it smaller.
AIRBENCH94_MUON = Peer(
    "airbench94_muon",
    "096d14d9aa92dcc837ab4f1f288dffea2bbe41b7",
    "704e29251a5207d8aed8a35adf13f772ff386b90a712aaddc2a28854385b536e",
    (
        ('map_location=torch.device("cuda")', "map_location=DEVICE", 1, "the data stays on the CPU"),
        (".half()", ".to(DTYPE)", 2, "float16 is a GPU's; bfloat16 or float32 on a CPU"),
        ("torch.cuda.Event(enable_timing=True)", "CpuEvent()", 2, "a wall clock for CUDA's event timer"),
        ("torch.cuda.synchronize()", "pass", 1, "CPU work is synchronous"),
        # Eager PyTorch rounds every bfloat16 operation of the Newton-Schulz steps, as our port does;
        # torch.compile would also need a C++ toolchain and minutes of compiling on 2 cores.
        ("@torch.compile\n", "", 1, "eager Newton-Schulz: no compiler on a CPU"),
        ("widths = dict(block1=64, block2=256, block3=256)", "widths = WIDTHS", 1, "the widths of the comparison"),
    ),
)
PEERS = {peer.name: peer for peer in (AIRBENCH94, AIRBENCH94_MUON)}


class ReferenceFileError(Exception):
    """The reference file is missing, altered, or no longer matches a device change."""


def apply_device_changes(source, peer=AIRBENCH94):
    for old, new, count, why in peer.device_changes:
        found = source.count(old)
        if found != count:
            raise ReferenceFileError(f"device change for {why}: {old!r} occurs {found} times, expected {count}")
        source = source.replace(old, new)
    return source


class CpuEvent:
    """torch.cuda.Event's timing interface on the wall clock; every measured interval is kept."""

    intervals_ms = []

    def record(self):
        self.at = time.perf_counter()

    def elapsed_time(self, end):
        CpuEvent.intervals_ms.append(1e3 * (end.at - self.at))
        return CpuEvent.intervals_ms[-1]


def torch_available():
    return importlib.util.find_spec("torch") is not None and importlib.util.find_spec("torchvision") is not None


def cached_reference(peer=AIRBENCH94):
    """The reference file in the Keras cache, or None: what a run without network can use."""
    path = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets" / peer.filename
    return path if path.is_file() else None


def download_reference(peer=AIRBENCH94):
    """The pinned file through the Keras cache (downloaded once, checked by SHA-256); its path."""
    import keras

    return keras.utils.get_file(peer.filename, peer.url, file_hash=peer.sha256, hash_algorithm="sha256")


def reference_path(path=None, peer=AIRBENCH94):
    """`path`, or the cached file, or one downloaded by a child process (Keras loads TensorFlow, which
    must not share a process with PyTorch)."""
    if path is not None:
        return Path(path)
    command = [sys.executable, "-m", "benchmarks.bench_airbench", "--part", "download", "--peer", peer.name]
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise ReferenceFileError(f"cannot download {peer.url}: {result.stderr.strip().splitlines()[-1:]}")
    return Path(result.stdout.strip().splitlines()[-1])


def reference_source(path=None, peer=AIRBENCH94):
    """The peer's file's text: from `path`, else from the Keras cache (downloading it once); checked by SHA-256."""
    path = reference_path(path, peer)
    data = Path(path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != peer.sha256:
        raise ReferenceFileError(
            f"--reference {path}: SHA-256 {digest} is not {peer.name}.py at commit {peer.commit[:7]} "
            f"({peer.sha256}); download {peer.url}"
        )
    return data.decode()


def reference_dtype(precision="auto"):
    """bfloat16 where `train.precision: <precision>` would train in it (auto: where the CPU has
    bfloat16 units), else float32."""
    import torch

    from cifar.training.precision import resolve

    return torch.bfloat16 if resolve(precision, gpus=[]) == "mixed_bfloat16" else torch.float32


def load_reference(source, dtype, peer=AIRBENCH94, **names):
    """The peer's file as a module, with the device changes and `names` (WIDTHS) defined; its
    `if __name__ == "__main__"` block does not run."""
    import torch

    module = types.ModuleType(f"{peer.name}_reference")
    module.__dict__.update(DEVICE=torch.device("cpu"), DTYPE=dtype, CpuEvent=CpuEvent, **names)
    exec(compile(apply_device_changes(source, peer), peer.filename, "exec"), module.__dict__)
    return module


def write_reference_data(arrays, classes, folder):
    """The prepared arrays as the reference's own cache files, cifar10/train.pt and test.pt."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        images = torch.from_numpy(np.ascontiguousarray(arrays[f"x_{split}"]))
        labels = torch.from_numpy(np.asarray(arrays[f"y_{split}"], dtype=np.int64))
        torch.save({"images": images, "labels": labels, "classes": list(classes)}, folder / f"{split}.pt")


def load_prepared(data_dir):
    data_dir = Path(data_dir)
    names = ("x_train", "y_train", "x_test", "y_test")
    missing = [name for name in names if not (data_dir / f"{name}.npy").is_file()]
    if missing:
        raise ReferenceFileError(f"--data {data_dir}: no {missing[0]}.npy there (run `dvc repro preprocess` first)")
    arrays = {name: np.load(data_dir / f"{name}.npy") for name in names}
    classes = json.loads((data_dir / "classes.json").read_text())
    if len(classes) != 10:
        raise ReferenceFileError(f"--data {data_dir}: airbench94 is for 10 classes, the data has {len(classes)}")
    return arrays, classes


def parse_rows(printed):
    """The reference's printed table as dicts ({'epoch': '1', 'val_acc': 0.61, ...})."""
    rows, header = [], None
    for line in printed.splitlines():
        if not line.startswith("|"):
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if header is None:
            header = cells
            continue
        rows.append({key: _number_or_text(value) for key, value in zip(header, cells) if value})
    return rows


def _number_or_text(text):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def run_reference(arrays, classes, source, seed=0, hyp=None, dtype=None):
    """One training run of airbench94 on `arrays`: its accuracies, per-epoch table and timings."""
    dtype = dtype or reference_dtype()
    reference = load_reference(source, dtype)
    for section, values in (hyp or {}).items():
        reference.hyp[section].update(values)
    opt = reference.hyp["opt"]
    steps = math.ceil(len(arrays["y_train"]) // opt["batch_size"] * opt["train_epochs"])
    result = timed_main(AIRBENCH94, reference, lambda: reference.main(0), arrays, classes, seed, dtype)
    return {**result, "hyp": reference.hyp, **speed(steps * opt["batch_size"])}


# airbench94_muon.py's main(): batch_size = 2000, total_train_steps = ceil(8 * len(train_loader))
MUON_BATCH_SIZE, MUON_EPOCHS = 2000, 8


def run_muon_reference(arrays, classes, source, seed=0, widths=(64, 256, 256), dtype=None):
    """One training run of airbench94_muon on `arrays`, at `widths`: as run_reference. Its __main__ builds
    the network once (CifarNet().cuda(), channels last) and passes it to main(run, model), which resets it."""
    import torch

    dtype = dtype or reference_dtype()
    block = dict(zip(("block1", "block2", "block3"), widths))
    reference = load_reference(source, dtype, AIRBENCH94_MUON, WIDTHS=block)
    model = reference.CifarNet().to(torch.device("cpu")).to(memory_format=torch.channels_last)
    result = timed_main(AIRBENCH94_MUON, reference, lambda: reference.main(0, model), arrays, classes, seed, dtype)
    steps = math.ceil(MUON_EPOCHS * (len(arrays["y_train"]) // MUON_BATCH_SIZE))
    return {**result, "widths": list(widths), **speed(steps * MUON_BATCH_SIZE)}


def timed_main(peer, reference, main, arrays, classes, seed, dtype):
    """Run the loaded peer's `main` on `arrays` from its own cache files, its table shown and parsed."""
    import torch

    torch.manual_seed(seed)
    CpuEvent.intervals_ms = []
    printed = io.StringIO()
    with tempfile.TemporaryDirectory(prefix="airbench-") as scratch:
        write_reference_data(arrays, classes, Path(scratch) / "cifar10")
        cwd = os.getcwd()
        os.chdir(scratch)  # the reference reads ./cifar10/{train,test}.pt
        try:
            with redirect_stdout(_Tee(printed, sys.stdout)):
                reference.print_columns(reference.logging_columns_list, is_head=True)
                start = time.perf_counter()
                tta_accuracy = main()
                wall = time.perf_counter() - start
        finally:
            os.chdir(cwd)
    rows = parse_rows(printed.getvalue())
    epochs = [row for row in rows if row.get("epoch") != "eval"]
    return {
        "benchmark": f"{peer.name}_reference",
        "reference": peer.url,
        "dtype": str(dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "train_images": len(arrays["y_train"]),
        "test_images": len(arrays["y_test"]),
        "test_accuracy_tta": round(tta_accuracy, 4),
        "test_accuracy": epochs[-1].get("val_acc") if epochs else None,
        "epochs": epochs,
        "timed_s": round(sum(CpuEvent.intervals_ms) / 1e3, 1),
        "wall_s": round(wall, 1),
    }


def speed(images_trained):
    """Training seconds by the peer's own timer (the whitening set-up, one interval per epoch's
    training, then the TTA evaluation: the epochs' intervals) and images per second."""
    train_s = sum(CpuEvent.intervals_ms[1:-1]) / 1e3
    return {"train_s": round(train_s, 1), "train_images_per_s": round(images_trained / train_s, 1)}


class _Tee(io.TextIOBase):
    """Writes to several streams: the reference's table is both shown (progress) and parsed."""

    def __init__(self, *streams):
        self.streams = streams

    def write(self, text):
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self):
        for stream in self.streams:
            stream.flush()


def random_arrays(train_count, test_count, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (train_count, 32, 32, 3), dtype=np.uint8),
        "y_train": rng.integers(0, 10, train_count),
        "x_test": rng.integers(0, 256, (test_count, 32, 32, 3), dtype=np.uint8),
        "y_test": rng.integers(0, 10, test_count),
    }


def reference_images_per_second(source, count, batch_size=1024, widths=AIRBENCH_RECIPE["widths"]):
    """The reference's training speed: two epochs of `count` random images, the second timed by its own timer."""
    arrays = random_arrays(count, 100)
    hyp = {"opt": {"train_epochs": 2, "batch_size": batch_size}, "net": {"base_width": widths[0]}}
    with redirect_stdout(io.StringIO()):
        run_reference(arrays, [str(i) for i in range(10)], source, hyp=hyp)
    second_epoch_s = CpuEvent.intervals_ms[2] / 1e3  # [whitening, epoch 1, epoch 2, TTA]
    return count // batch_size * batch_size / second_epoch_s


def ours_images_per_second(count, batch_size=1024, widths=AIRBENCH_RECIPE["widths"]):
    """Our fast model's training speed at the same values: the train stage's loop, second epoch timed."""
    import keras

    from benchmarks.interleave import images_per_second
    from cifar.core.params import load_params
    from cifar.core.runtime import configure_tensorflow
    from cifar.models import build_model, model_definition
    from cifar.models.fast import RECIPE
    from cifar.training.batches import training_batches
    from cifar.training.loop import compile_model

    configure_tensorflow()
    recipe = {**load_params({"fast": RECIPE}, PROJECT / "params.yaml")["fast"], **AIRBENCH_RECIPE}
    recipe.update(widths=widths, batch_size=batch_size)
    arrays = random_arrays(count, 100)
    keras.utils.set_random_seed(0)
    model = build_model("fast", 10, recipe, arrays["x_train"])
    steps = count // batch_size
    compile_model(model, model_definition("fast"), recipe, steps)
    y = keras.utils.to_categorical(arrays["y_train"], 10)
    fit = lambda n: model.fit(  # noqa: E731
        training_batches(arrays["x_train"], y, batch_size, 0, 0, n, alternating_flip=True),
        steps_per_epoch=steps,
        epochs=n,
        verbose=0,
    )
    return images_per_second(fit, steps * batch_size, 1)


def in_subprocess(part, count, reference=None, batch_size=1024, widths=AIRBENCH_RECIPE["widths"]):
    """One sample in a fresh process: TensorFlow and PyTorch never share one (nor their thread pools)."""
    command = [sys.executable, "-m", "benchmarks.bench_airbench", "--part", part, "--images", str(count)]
    command += ["--batch-size", str(batch_size), "--widths", *map(str, widths)]
    if reference:
        command += ["--reference", str(reference)]
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"bench_airbench --part {part} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])["images_per_s"]


def speed_anchor(count=3072, reference=None, repeats=MIN_REPEATS, batch_size=1024, widths=None, progress=print):
    """The reference's training images/s against our fast model's at airbench94's values, interleaved."""
    widths = widths or AIRBENCH_RECIPE["widths"]
    progress(f"speed anchor: airbench94 vs ours, widths {widths}, batch {batch_size}, {count} images, {repeats} rounds")
    sides = {
        "airbench94": lambda: in_subprocess("reference", count, reference, batch_size, widths),
        "ours": lambda: in_subprocess("ours", count, None, batch_size, widths),
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
    progress("the fast model's training speed against airbench94's reference ...")
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
    parser.add_argument("--part", choices=["reference", "ours", "download"], help=argparse.SUPPRESS)  # a child
    parser.add_argument(
        "--precision", choices=["auto", "float32", "mixed_bfloat16"], default="auto", help="as train.precision"
    )
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args()
    peer = PEERS[args.peer]
    batch_size = args.batch_size or AIRBENCH_RECIPE["batch_size"]
    widths = args.widths or AIRBENCH_RECIPE["widths"]
    if peer is AIRBENCH94 and widths[1:] != [4 * widths[0]] * 2:
        sys.exit(f"bench_airbench: --widths {' '.join(map(str, widths))}: airbench94's are w 4w 4w")
    if peer is AIRBENCH94_MUON and (args.batch_size or args.epochs or args.anchor):
        sys.exit("bench_airbench: --peer airbench94_muon: its batch and epochs are fixed (2,000 and 8); no --anchor")
    if args.part == "download":
        print(download_reference(peer))
        return
    if args.part == "ours":
        import cifar  # noqa: F401  (the train stage's TensorFlow environment)

        print(json.dumps({"images_per_s": ours_images_per_second(args.images, batch_size, widths)}))
        return
    if not torch_available():
        sys.exit("bench_airbench: PyTorch is not installed; it is an optional extra: pip install -e .[reference]")
    try:
        source = reference_source(args.reference, peer)
        if args.part == "reference":
            speed = reference_images_per_second(source, args.images, batch_size, widths)
            print(json.dumps({"images_per_s": speed}))
            return
        if args.anchor:
            path = reference_path(args.reference)  # fetched once, not by every sample
            result = speed_anchor(args.images, path, args.repeats, batch_size, widths)
            return write_json(result, args.json)
        arrays, classes = load_prepared(args.data)
    except ReferenceFileError as error:
        sys.exit(f"bench_airbench: {error}")
    dtype = reference_dtype(args.precision)
    if peer is AIRBENCH94_MUON:
        result = run_muon_reference(arrays, classes, source, args.seed, widths, dtype)
    else:
        hyp = {"opt": {"batch_size": batch_size}, "net": {"base_width": widths[0]}}
        if args.epochs:
            hyp["opt"]["train_epochs"] = args.epochs
        result = run_reference(arrays, classes, source, seed=args.seed, hyp=hyp, dtype=dtype)
    print(
        f"{peer.name} reference ({result['dtype']}, {result['threads']} threads): test accuracy "
        f"{result['test_accuracy_tta']:.4f} with TTA ({result['test_accuracy']:.4f} without); training "
        f"{result['train_s']:.0f} s, {result['train_images_per_s']:.0f} img/s; wall {result['wall_s']:.0f} s"
    )
    write_json(result, args.json)


def write_json(result, path):
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
