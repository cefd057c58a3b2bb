"""The recipe values benchmarks and tests share, each over params.yaml's section of its model (keys of
`seed_cnn`, `airbench94` or `airbench94_muon`): the quick recipes the docs quote (tests/test_benchmarks.py
checks docs/fast-model.md and the README against them), airbench's own values, the tiny recipes of the
tests and the benchmarks' smoke runs, and the seeds of whole-training comparisons."""

# The quick recipe: a larger batch, a warm-up to twice the tutorial's rate and a cosine decay to
# zero, in fewer epochs; bfloat16 where `train.precision: auto` finds it. README ("Quick recipe")
# gives the same as `dvc exp run -S`. Trials here (5 epochs, test accuracy): batch 256 at 0.01:
# 0.728; batch 64 at 0.01: 0.750, 0.723 after 3 (the tutorial's recipe: 0.713 after 3).
QUICK_RECIPE = {
    "batch_size": 64,
    "learning_rate": 0.01,
    "schedule": "warmup_cosine",
    "warmup_epochs": 0.5,
    "epochs": 8,
}

# airbench94's own values over our airbench94 defaults (which are half its widths in 10 epochs of batch
# 256; docs/fast-model.md): the speed anchor trains both at these.
AIRBENCH94_ORIGINAL = {"widths": [64, 256, 256], "batch_size": 1024, "learning_rate": 1.5}

# The quickest way past the tutorial's accuracy with airbench94: a quarter of its defaults' arithmetic
# (widths 16/64/64) in 3 epochs, the triangle's peak at its 23%, every training image. Trials (seed 42,
# AMD EPYC AVX2, full JPEG data): 0.7829 after 188 s; the widths 32/128/128 in 2 epochs 0.8005 after
# 301 s (0.7034 after its first, 158 s); the tutorial's recipe ends near 0.76.
AIRBENCH94_QUICK = {"epochs": 3, "warmup_epochs": 0.69, "calibration_images": 0, "widths": [16, 64, 64]}

# airbench94_muon.py's values (cifar10-airbench at commit 096d14d: its main(), Muon and CifarNet) in our
# airbench94_muon section's terms; docs/fast-model.md gives them as a `dvc exp run` line.
AIRBENCH94_MUON_ORIGINAL = {
    "batch_size": 2000,
    "epochs": 8,  # total_train_steps = ceil(8 * len(train_loader)): 8 x 25
    "filter_lr": 0.24,  # Muon(filter_params, lr=0.24, momentum=0.6, nesterov=True)
    "filter_momentum": 0.6,
    "newton_schulz_steps": 3,  # zeropower_via_newtonschulz5(G, steps=3)
    "bias_lr": 0.053,
    "head_lr": 0.67,
    "momentum": 0.85,  # SGD(param_configs, momentum=0.85, nesterov=True)
    "weight_decay": 2e-6,  # wd = 2e-6 * batch_size
    "label_smoothing": 0.2,
    "whiten_bias_epochs": 3,  # whiten_bias_train_steps = ceil(3 * len(train_loader))
    "widths": [64, 256, 256],
    "output_scale": 0.00390625,  # `self.head(x) / x.size(-1)`, 256 inputs
    "head_unit_std": True,  # reset(): `w *= 1 / w.std()`
    "calibration_images": 0,  # it trains on every image
    # where the defaults follow hiverge/cifar10-speedrun instead (SPEEDRUN below)
    "activation": "gelu",  # ConvGroup's nn.GELU()
    "batchnorm_momentum": 0.6,  # BatchNorm(num_features, momentum=0.6)
    "newton_schulz_coefficients": [3.4445, -4.7750, 2.0315],  # a, b, c = (3.4445, -4.7750, 2.0315)
    "renormalise": "every_step",  # p.data.mul_(len(p.data)**0.5 / p.data.norm()) at every step
    "decay_filters": False,  # Muon(filter_params, ...) without weight decay
    "brightness": 0.0,  # no colour jitter
    "contrast": 0.0,
}

# hiverge/cifar10-speedrun's record (94.01% in 2.0-2.1 s on an A100), pinned: its file and main()'s values
# in our airbench94_muon section's terms (tests/test_speedrun_port.py compares each piece with a
# transcription of its code). Not expressible here: its 7.59 epochs (ceil(7.59 x 32) = 243 steps; 8 whole
# epochs here), its whitening from its first 960 images, its float16 (bfloat16 here, as airbench's).
SPEEDRUN_COMMIT = "5cd49b1e586f473b535cdeee69fe8ad5b6e9618b"
SPEEDRUN_SHA256 = "d1e1f6991cc3e1758c0bbc0e728c86a4b3119dd42a9233075b2edb9735d0ba91"  # cifar10_speedrun.py
SPEEDRUN = {
    "batch_size": 1536,  # training_batch_size = 1536
    "filter_lr": 0.205,  # Muon(filter_params, lr=0.205, momentum=0.655, nesterov=True, ...)
    "filter_momentum": 0.655,
    "newton_schulz_coefficients": [3.4576, -4.7391, 2.0843],  # a, b, c = (3.4576, -4.7391, 2.0843)
    "renormalise": "speedrun",  # group["norm_freq"] = 2 + int(15 * progress)
    "decay_filters": True,  # weight_decay_factor = 1 - group["lr"] * group["weight_decay"]
    "bias_lr": 0.0573,
    "head_lr": 0.5415,
    "momentum": 0.825,  # torch.optim.SGD(param_configs, momentum=0.825, nesterov=True)
    "weight_decay": 1.0418e-06,  # wd = 1.0418e-06 * training_batch_size
    "label_smoothing": 0.09,  # F.cross_entropy(..., label_smoothing=0.09)
    "whiten_bias_epochs": 0.19,  # whiten_bias_train_steps = ceil(0.19 * len(train_loader))
    "batchnorm_momentum": 0.5566,  # BatchNorm(num_features, momentum=0.5566): PyTorch's 1 - 0.5566
    "activation": "silu",  # ConvGroup's nn.SiLU()
    "brightness": 0.1399,  # "color_jitter": {"brightness_range": 0.1399, "contrast_range": 0.1308}
    "contrast": 0.1308,
}

# The quick airbench94_muon (issue 34): its defaults (the head divided by 256 as at the full widths) at
# widths 16/64/64 in 3 epochs of 25 steps, every training image used. Its validation accuracy is without
# test-time augmentation, as the tutorial's.
AIRBENCH94_MUON_QUICK = {"epochs": 3, "calibration_images": 0, "widths": [16, 64, 64]}

QUICK = {"seed_cnn": QUICK_RECIPE, "airbench94": AIRBENCH94_QUICK, "airbench94_muon": AIRBENCH94_MUON_QUICK}

SEEDS = (42, 43)  # train.seed: params.yaml's, and one more; the target must be reached from both

# Each model shrunk to train in seconds on the tests' generated images (tens to hundreds of them) and in
# the benchmarks' smoke runs: what it does, not how well. airbench's hold out a few images for the
# temperature, as their defaults' 2,000 of 50,000.
TINY = {
    "seed_cnn": {"epochs": 2, "batch_size": 16, "learning_rate": 0.005, "lr_decay": 0.9},
    "airbench94": {
        "epochs": 2,
        "batch_size": 32,
        "widths": [8, 16, 16],
        "warmup_epochs": 0.5,
        "calibration_images": 10,
    },
    "airbench94_muon": {"epochs": 2, "batch_size": 32, "widths": [8, 16, 16], "calibration_images": 10},
}


def project_model(model_name, overrides=()):
    """(model module, Recipe) of `model_name` at the project's params.yaml with `overrides` over it
    ((section, key, value) triples, as `--set` parses them)."""
    from pathlib import Path

    import yaml

    from cifar.models import model as model_of
    from cifar.models import recipe as recipe_of

    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    for section, name, value in overrides:
        params.setdefault(section, {})[name] = value
    return model_of(model_name), recipe_of(model_name, params)
