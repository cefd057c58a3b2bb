"""airbench's own code, the peer of our airbench models, run on our arrays in a PyTorch worker process.

The peers are two files of Keller Jordan's cifar10-airbench, each at a pinned commit and checked by
SHA-256 (`Peer` below): airbench94.py (airbench94's SGD recipe, our `train.model: airbench94`) and
airbench94_muon.py (its newest record, Muon; our `train.model: airbench94_muon`). A file is downloaded
once through the Keras cache (or given as a path) and changed only as its Peer's `device_changes` say,
each required to match exactly; then it trains on the train/test arrays that `preprocess` wrote, written
as its own cache files, in bfloat16 where `train.precision: auto` would train in it (the peer's float16
on a GPU) and in float32 elsewhere.

PyTorch never shares a process with TensorFlow (a CUDA build of PyTorch crashed on import in a process
that had TensorFlow loaded), so the peer runs in this module's worker process, which loads no
TensorFlow, and the download, which goes through Keras, in a child of its own:

    python -m benchmarks.airbench_peer download --peer airbench94        # prints the cached file's path
    python -m benchmarks.airbench_peer train --peer airbench94 --data data/prepared --json out.json
        [--reference FILE] [--seed 0] [--epochs 9.9] [--batch-size 1024] [--widths 64 256 256]
        [--precision auto]                                               # its accuracy and speed on our data
    python -m benchmarks.airbench_peer speed --images 3072 [--batch-size 1024] [--widths 64 256 256]
        [--reference FILE]                                              # its training images/s, on one line

benchmarks/bench_airbench.py, the command that compares it with our port, starts these. PyTorch is an
optional extra (`pip install -e .[reference]`), never a dependency of the pipeline.
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

PROJECT = Path(__file__).resolve().parents[1]
REPOSITORY = "https://raw.githubusercontent.com/KellerJordan/cifar10-airbench"


# The pinned files and the changes a CPU needs.


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

# airbench94_muon.py's main(): batch_size = 2000, total_train_steps = ceil(8 * len(train_loader))
MUON_BATCH_SIZE, MUON_EPOCHS = 2000, 8


class ReferenceFileError(Exception):
    """The reference file is missing, altered, or no longer matches a device change; or the data is unfit."""


def apply_device_changes(source, peer=AIRBENCH94):
    for old, new, count, why in peer.device_changes:
        found = source.count(old)
        if found != count:
            raise ReferenceFileError(f"device change for {why}: {old!r} occurs {found} times, expected {count}")
        source = source.replace(old, new)
    return source


def torch_available():
    return importlib.util.find_spec("torch") is not None and importlib.util.find_spec("torchvision") is not None


# Fetching the file: from a path, or the Keras cache (downloaded once), always checked by SHA-256.


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
    command = [sys.executable, "-m", "benchmarks.airbench_peer", "download", "--peer", peer.name]
    result = subprocess.run(command, env=worker_env(), capture_output=True, text=True)
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


# Our data, as the peer reads it.


def check_prepared(data_dir):
    """ReferenceFileError unless `data_dir` holds preprocess's arrays of 10 classes (what airbench trains on)."""
    data_dir = Path(data_dir)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        if not (data_dir / f"{name}.npy").is_file():
            raise ReferenceFileError(f"--data {data_dir}: no {name}.npy there (run `dvc repro preprocess` first)")
    classes = json.loads((data_dir / "classes.json").read_text())
    if len(classes) != 10:
        raise ReferenceFileError(f"--data {data_dir}: airbench94 is for 10 classes, the data has {len(classes)}")
    return classes


def load_prepared(data_dir):
    """(arrays, classes) of preprocess's folder `data_dir`, checked by check_prepared."""
    classes = check_prepared(data_dir)
    arrays = {name: np.load(Path(data_dir) / f"{name}.npy") for name in ("x_train", "y_train", "x_test", "y_test")}
    return arrays, classes


def random_arrays(train_count, test_count, seed=0):
    """Random images and labels in preprocess's shapes: what a speed measurement trains on."""
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (train_count, 32, 32, 3), dtype=np.uint8),
        "y_train": rng.integers(0, 10, train_count),
        "x_test": rng.integers(0, 256, (test_count, 32, 32, 3), dtype=np.uint8),
        "y_test": rng.integers(0, 10, test_count),
    }


def write_reference_data(arrays, classes, folder):
    """The prepared arrays as the reference's own cache files, cifar10/train.pt and test.pt."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        images = torch.from_numpy(np.ascontiguousarray(arrays[f"x_{split}"]))
        labels = torch.from_numpy(np.asarray(arrays[f"y_{split}"], dtype=np.int64))
        torch.save({"images": images, "labels": labels, "classes": list(classes)}, folder / f"{split}.pt")


# Running it: the file loaded as a module, its main() timed by its own timer, its printed table parsed.


def reference_dtype(precision="auto"):
    """bfloat16 where `train.precision: <precision>` would train in it (auto: where the CPU has
    bfloat16 units), else float32."""
    import torch

    from cifar.training.precision import resolve

    return torch.bfloat16 if resolve(precision, gpus=[]) == "mixed_bfloat16" else torch.float32


class CpuEvent:
    """torch.cuda.Event's timing interface on the wall clock; every measured interval is kept."""

    intervals_ms = []

    def record(self):
        self.at = time.perf_counter()

    def elapsed_time(self, end):
        CpuEvent.intervals_ms.append(1e3 * (end.at - self.at))
        return CpuEvent.intervals_ms[-1]


def load_reference(source, dtype, peer=AIRBENCH94, **names):
    """The peer's file as a module, with the device changes and `names` (WIDTHS) defined; its
    `if __name__ == "__main__"` block does not run."""
    import torch

    module = types.ModuleType(f"{peer.name}_reference")
    module.__dict__.update(DEVICE=torch.device("cpu"), DTYPE=dtype, CpuEvent=CpuEvent, **names)
    exec(compile(apply_device_changes(source, peer), peer.filename, "exec"), module.__dict__)
    return module


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


def reference_images_per_second(source, count, batch_size=1024, widths=(64, 256, 256)):
    """airbench94's training speed: two epochs of `count` random images, the second timed by its own timer."""
    arrays = random_arrays(count, 100)
    hyp = {"opt": {"train_epochs": 2, "batch_size": batch_size}, "net": {"base_width": widths[0]}}
    with redirect_stdout(io.StringIO()):
        run_reference(arrays, [str(i) for i in range(10)], source, hyp=hyp)
    second_epoch_s = CpuEvent.intervals_ms[2] / 1e3  # [whitening, epoch 1, epoch 2, TTA]
    return count // batch_size * batch_size / second_epoch_s


def train_on_prepared(peer, source, data_dir, seed=0, epochs=None, batch_size=None, widths=None, precision="auto"):
    """The peer trained on preprocess's arrays in `data_dir`: its result (run_reference's). airbench94 takes
    `epochs`, `batch_size` and `widths` (its base width, `widths[0]`) over its hyp; airbench94_muon only
    `widths` (its main() fixes the rest)."""
    arrays, classes = load_prepared(data_dir)
    dtype = reference_dtype(precision)
    if peer is AIRBENCH94_MUON:
        return run_muon_reference(arrays, classes, source, seed, widths or (64, 256, 256), dtype)
    hyp = {"opt": {}, "net": {}}
    if batch_size:
        hyp["opt"]["batch_size"] = batch_size
    if epochs:
        hyp["opt"]["train_epochs"] = epochs
    if widths:
        hyp["net"]["base_width"] = widths[0]
    return run_reference(arrays, classes, source, seed=seed, hyp=hyp, dtype=dtype)


# The worker process.


def worker_env():
    """This environment, with the project importable: a worker started from any directory."""
    return {**os.environ, "PYTHONPATH": str(PROJECT)}


def worker_command(part, peer=AIRBENCH94, reference=None, **options):
    """The command line of a worker doing `part` (download, train, speed); `options` by their flag's name
    (batch_size -> --batch-size), a list for --widths."""
    command = [sys.executable, "-m", "benchmarks.airbench_peer", part, "--peer", peer.name]
    if reference:
        command += ["--reference", str(reference)]
    for name, value in options.items():
        if value is not None:
            values = value if isinstance(value, (list, tuple)) else [value]
            command += [f"--{name.replace('_', '-')}", *map(str, values)]
    return command


def worker_parser():
    """The worker's command line: what worker_command writes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["download", "train", "speed"], help="what this worker does")
    parser.add_argument("--peer", choices=list(PEERS), default=AIRBENCH94.name)
    parser.add_argument("--reference", help="the peer's file at its pinned commit (default: download it once)")
    parser.add_argument("--data", default="data/prepared", help="train: the folder preprocess wrote")
    parser.add_argument("--json", help="train: write the result here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=float, help="train, airbench94: its train_epochs (default: its 9.9)")
    parser.add_argument("--batch-size", type=int, help="airbench94's batch (default: its 1024)")
    parser.add_argument("--widths", type=int, nargs=3, help="the conv groups' widths (default: 64 256 256)")
    parser.add_argument("--images", type=int, default=3072, help="speed: random images per timed epoch")
    parser.add_argument("--precision", choices=["auto", "float32", "mixed_bfloat16"], default="auto")
    return parser


def main():
    parser = worker_parser()
    args = parser.parse_args()
    peer = PEERS[args.peer]
    if args.part == "speed" and peer is not AIRBENCH94:
        parser.error("speed: airbench94 only (the speed anchor's peer)")
    if args.part == "download":
        print(download_reference(peer))
        return
    if not torch_available():
        sys.exit("airbench_peer: PyTorch is not installed; it is an optional extra: pip install -e .[reference]")
    try:
        source = reference_source(args.reference, peer)
        if args.part == "speed":
            widths = args.widths or (64, 256, 256)
            images_per_s = reference_images_per_second(source, args.images, args.batch_size or 1024, widths)
            print(json.dumps({"images_per_s": images_per_s}))
            return
        result = train_on_prepared(
            peer, source, args.data, args.seed, args.epochs, args.batch_size, args.widths, args.precision
        )
    except ReferenceFileError as error:
        sys.exit(f"airbench_peer: {error}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
