"""The values benchmarks share and the docs quote (tests/test_benchmarks.py checks docs/fast-model.md and the
README against them): the quick recipes, airbench94's values, the seeds of whole-training comparisons."""

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


# The fast recipe before Muon (the defaults until issue 34): airbench94's SGD at half its widths in 10
# epochs of batch 256, with lookahead. Where the CPU has no bfloat16 units it is the quicker of the two
# (0.8870 in a 1,757 s repro on 2 AVX2 cores, float32); docs/fast-model.md gives it as one `dvc exp run`.
SGD_RECIPE = {
    "optimizer": "sgd",
    "schedule": "triangle",
    "epochs": 10,
    "batch_size": 256,
    "widths": [32, 128, 128],
    "head_unit_std": False,
    "output_scale": 0.111111,
    "lookahead_every": 5,
}

# airbench94's own values in our SGD recipe's terms (docs/fast-model.md): the speed anchor trains both at these.
AIRBENCH_RECIPE = {**SGD_RECIPE, "widths": [64, 256, 256], "batch_size": 1024, "learning_rate": 1.5}

# The quickest way past the tutorial's accuracy before Muon: the SGD recipe at half its widths (a
# quarter of the arithmetic) in 3 epochs, the triangle's peak at its 23%, every training image. Trials
# (seed 42, AMD EPYC AVX2, full JPEG data): 0.7829 after 188 s; the widths 32/128/128 in 2 epochs
# 0.8005 after 301 s (0.7034 after its first, 158 s); the tutorial's recipe ends near 0.76.
FAST_QUICK_SGD = {**SGD_RECIPE, "epochs": 3, "warmup_epochs": 0.69, "calibration_images": 0, "widths": [16, 64, 64]}

# airbench94_muon.py's values (cifar10-airbench at commit 096d14d: its main(), Muon and CifarNet) in our
# fast recipe's terms; docs/fast-model.md gives them as a `dvc exp run` line.
AIRBENCH_MUON_RECIPE = {
    "optimizer": "muon",
    "batch_size": 2000,
    "epochs": 8,  # total_train_steps = ceil(8 * len(train_loader)): 8 x 25
    "filter_lr": 0.24,  # Muon(filter_params, lr=0.24, momentum=0.6, nesterov=True)
    "filter_momentum": 0.6,
    "newton_schulz_steps": 3,  # zeropower_via_newtonschulz5(G, steps=3)
    "bias_lr": 0.053,
    "head_lr": 0.67,
    "momentum": 0.85,  # SGD(param_configs, momentum=0.85, nesterov=True)
    "muon_weight_decay": 2e-6,  # wd = 2e-6 * batch_size
    "label_smoothing": 0.2,
    "whiten_bias_epochs": 3,  # whiten_bias_train_steps = ceil(3 * len(train_loader))
    "schedule": "linear",  # group["lr"] = group["initial_lr"] * (1 - step / total_train_steps)
    "widths": [64, 256, 256],
    "output_scale": 0.00390625,  # `self.head(x) / x.size(-1)`, 256 inputs
    "head_unit_std": True,  # reset(): `w *= 1 / w.std()`
    "lookahead_every": 0,  # none
    "ema_momentum": None,
    "calibration_images": 0,  # it trains on every image
}

SEEDS = (42, 43)  # train.seed: params.yaml's, and one more; the target must be reached from both

# The quick fast recipe (issue 34): the defaults (airbench94_muon's optimizers and schedule, the head
# divided by 256 as at the full widths) at widths 16/64/64 in 3 epochs of 25 steps, every training
# image used. Its validation accuracy is without test-time augmentation, as the tutorial's.
FAST_QUICK = {"epochs": 3, "calibration_images": 0, "widths": [16, 64, 64]}
QUICK = {"seed_cnn": QUICK_RECIPE, "fast": FAST_QUICK}  # each model's quick recipe
# bench_time_to_accuracy's --quick choices: the model each trains and its recipe over params.yaml's
QUICK_CHOICES = {
    "seed_cnn": ("seed_cnn", QUICK_RECIPE),
    "fast": ("fast", FAST_QUICK),
    "fast_sgd": ("fast", FAST_QUICK_SGD),
}
