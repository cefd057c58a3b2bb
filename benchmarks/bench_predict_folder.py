"""`predict` on folders of photos: its speed and its peak memory against the straightforward way.

Generates folders of photos of mixed sizes and formats (phone-sized JPEGs, a few of 12 megapixels,
PNG, WebP, HEIC, transparent PNG, thumbnails), then classifies each folder twice, each side a
process of its own, taking turns:
  ours:     python -m stages.predict FOLDER --csv (bounded batches, JPEG decoded at a reduced
            scale, threads decoding)
  baseline: what a Keras tutorial does: keras.utils.load_img(path, target_size=(32, 32)) for every
            file, the arrays stacked, one model.predict (memory grows with the number of files)
It prints images per second and peak RSS of each side for each folder size, and the ratios; the
peak RSS of ours must not grow with the number of files.

    python -m benchmarks.bench_predict_folder [--counts 200 2000] [--model models/model.keras]
        [--repeats 3] [--json out.json]
"""

import argparse
import io
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.interleave import MIN_REPEATS, interleaved, ratio
from benchmarks.workspace import PROJECT, stage_env, timed
from cifar.core.cpu import describe_cpu

# (share of the files, size, format, mode): photos as a camera roll and a downloads folder hold them
MIX = [
    (0.05, (4000, 3000), "JPEG", "RGB"),  # 12 megapixels: a phone's main camera
    (0.35, (1600, 1200), "JPEG", "RGB"),
    (0.15, (1024, 768), "PNG", "RGB"),  # a screenshot
    (0.15, (800, 600), "WEBP", "RGB"),
    (0.10, (640, 480), "HEIF", "RGB"),  # an iPhone photo, resized
    (0.10, (400, 300), "PNG", "RGBA"),  # a graphic with transparency
    (0.10, (64, 48), "JPEG", "RGB"),  # a thumbnail
]
SUFFIX = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "HEIF": "heic"}


def generate_photos(folder, count, seed=0, progress=print):
    """`count` photos of MIX's kinds in `folder` (a few subfolders), each different; returns their paths."""
    import pillow_heif

    pillow_heif.register_heif_opener()
    rng = np.random.default_rng(seed)
    kinds = rng.choice(len(MIX), size=count, p=[share for share, *_ in MIX])
    bases = {}
    paths = []
    for index, kind in enumerate(kinds):
        _, (width, height), fmt, mode = MIX[kind]
        if kind not in bases:  # smooth colour fields with texture: what photos compress like
            rows, columns = np.mgrid[0:height, 0:width]
            base = np.stack([columns * 255 / width, rows * 255 / height, (rows + columns) * 127 / (width + height)], -1)
            bases[kind] = (base + rng.normal(0, 12, base.shape)).clip(0, 255).astype(np.uint8)
        shift = rng.integers(0, 256, 3, dtype=np.uint8)
        pixels = bases[kind] + shift  # wraps around: another picture each time
        image = Image.fromarray(pixels)
        if mode == "RGBA":
            image.putalpha(Image.fromarray(np.uint8(rng.integers(0, 256)) + bases[kind][..., 0]))
        path = Path(folder) / f"album{index % 4}" / f"photo{index:05d}.{SUFFIX[fmt]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        out = io.BytesIO()
        image.save(out, fmt, quality=85)
        path.write_bytes(out.getvalue())
        paths.append(path)
        if (index + 1) % 500 == 0:
            progress(f"  generated {index + 1}/{count} photos")
    return paths


def baseline(folder, model_file):
    """The Keras tutorial's way: load_img every file (a full decode), stack them all, one predict."""
    import pillow_heif

    import cifar  # noqa: F401  (TensorFlow's environment, as predict has it)

    pillow_heif.register_heif_opener()
    import keras

    from cifar.network.trained import load_trained_model

    paths = sorted(path for path in Path(folder).rglob("*") if path.is_file())
    images = np.stack([keras.utils.img_to_array(keras.utils.load_img(p, target_size=(32, 32))) for p in paths])
    probabilities = load_trained_model(model_file).predict(images.astype(np.uint8), batch_size=256, verbose=0)
    for path, p in zip(paths, probabilities):
        print(f"{path},{int(np.argmax(p))}")


def model_for_benchmark(model_file, scratch):
    """The trained model if there is one; else an untrained seed_cnn (the same cost) with class names."""
    if Path(model_file).is_file():
        return Path(model_file)
    import cifar  # noqa: F401
    from cifar.models import seed_cnn

    print(f"{model_file} not found: an untrained seed_cnn (the same cost)")
    path = Path(scratch) / "model.keras"
    seed_cnn.build(num_classes=10).save(path)
    (path.parent / "classes.json").write_text(json.dumps([f"class{i}" for i in range(10)]))
    return path


def run(counts, model_file, repeats=MIN_REPEATS, progress=print):
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        model = model_for_benchmark(model_file, scratch)
        for count in counts:
            folder = Path(scratch) / f"photos-{count}"
            progress(f"{count} photos of mixed sizes and formats:")
            generate_photos(folder, count, progress=progress)
            commands = {
                "ours": [sys.executable, "-m", "stages.predict", "--model", str(model), "--csv", str(folder)],
                "baseline": [
                    sys.executable,
                    "-m",
                    "benchmarks.bench_predict_folder",
                    "--baseline",
                    str(folder),
                    "--model",
                    str(model),
                ],
            }
            rss_mb = {side: [] for side in commands}

            def classified(side, count=count, commands=commands, rss_mb=rss_mb):
                def once():
                    wall, peak, stdout = timed(commands[side], cwd=PROJECT, env=stage_env())
                    lines = len(stdout.splitlines()) - (side == "ours")  # ours writes a header row
                    if lines != count:
                        raise RuntimeError(f"{side} classified {lines} of {count} photos")
                    rss_mb[side].append(round(peak, 1))
                    return wall

                return once

            seconds = interleaved({side: classified(side) for side in commands}, repeats, progress)
            row = {
                "photos": count,
                "images_per_s": {side: round(count / seconds[side]["median"], 1) for side in commands},
                "peak_rss_mb": {side: round(max(rss_mb[side])) for side in commands},
                "speed_ratio": ratio(seconds["ours"], seconds["baseline"], "lower"),
                "seconds": seconds,
                "rss_mb": rss_mb,
            }
            rows.append(row)
    print(f"predict on folders of photos, medians of {repeats} (CPU: {describe_cpu()}):")
    print(
        f"{'photos':>7} {'ours img/s':>11} {'baseline img/s':>15} {'speed ratio':>12} "
        f"{'ours RSS MB':>12} {'baseline RSS MB':>16}"
    )
    for row in rows:
        print(
            f"{row['photos']:>7} {row['images_per_s']['ours']:>11} {row['images_per_s']['baseline']:>15} "
            f"{row['speed_ratio']:>11}x {row['peak_rss_mb']['ours']:>12} {row['peak_rss_mb']['baseline']:>16}"
        )
    growth = {
        side: round(rows[-1]["peak_rss_mb"][side] / rows[0]["peak_rss_mb"][side], 2) for side in ("ours", "baseline")
    }
    print(
        f"peak RSS, {rows[-1]['photos']} photos / {rows[0]['photos']}: "
        f"ours {growth['ours']}x, baseline {growth['baseline']}x"
    )
    return {"benchmark": "predict_folder", "cpu": describe_cpu(), "rows": rows, "rss_growth": growth}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[200, 2000], help="folder sizes (default: 200 2000)")
    parser.add_argument("--model", default="models/model.keras", help="trained model (an untrained seed_cnn if absent)")
    parser.add_argument("--repeats", type=int, default=MIN_REPEATS, help="rounds of the alternating sides")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--baseline", metavar="FOLDER", help=argparse.SUPPRESS)  # the baseline's own process
    args = parser.parse_args()
    if args.baseline:
        return baseline(args.baseline, args.model)
    result = run(args.counts, args.model, args.repeats)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
