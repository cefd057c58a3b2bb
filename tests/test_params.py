import pytest
import yaml

from benchmarks.recipes import SPEEDRUN
from benchmarks.workspace import PROJECT, set_params
from cifar import models
from cifar.core import cli
from cifar.core.params import ListRule, load_params, read_params_file
from stages import evaluate, export, fetch, preprocess, robustness, train, visualize
from tests.datagen import write_cifar_archive


def run_and_capture(main, capsys):
    code = cli.run(main, [])
    err = capsys.readouterr().err.strip()
    return code, err


def test_project_params_are_valid_and_the_tutorials_recipe():
    params = read_params_file(PROJECT / "params.yaml")
    assert load_params({"train": models.TRAIN_RULES}, PROJECT / "params.yaml")["train"]["model"] == "seed_cnn"
    tutorial = models.recipe("seed_cnn", params)
    assert tutorial.epochs == 10 and tutorial.batch_size == 32 and tutorial.schedule == "exponential"
    assert tutorial.learning_rate == 0.005 and tutorial.lr_decay == 0.9


def test_every_model_name_builds_from_its_own_section_which_holds_only_its_recipe_s_keys():
    params = read_params_file(PROJECT / "params.yaml")
    assert list(models.MODELS) == ["seed_cnn", "airbench94", "airbench94_muon"]
    for name, model in models.MODELS.items():
        recipe = models.recipe(name, params)
        assert type(recipe) is model.Recipe and set(params[name]) == set(vars(recipe))
        assert model.build(recipe, 10).name == name
    # the two airbench recipes as docs/fast-model.md measured them (airbench94_muon's network at the speedrun's
    # values in 8 epochs; airbench94's at half widths)
    muon, sgd = models.recipe("airbench94_muon", params), models.recipe("airbench94", params)
    assert {key: getattr(muon, key) for key in SPEEDRUN} == SPEEDRUN
    assert (muon.epochs, muon.widths, muon.calibration_images) == (8, [64, 256, 256], 2000)
    assert (sgd.epochs, sgd.batch_size, sgd.widths, sgd.schedule, sgd.lookahead_every) == (
        10, 256, [32, 128, 128], "triangle", 5
    )  # fmt: skip


@pytest.mark.parametrize(
    "old_params, named",
    [
        ({"train": {"model": "fast"}, "fast": {"epochs": 8}}, "train.model fast, section fast"),
        ({"fast": {"epochs": 8}}, "section fast"),  # a section left behind, train.model already renamed
        ({"tta": {"fast": 2, "seed_cnn": 0}}, "tta.fast"),
    ],
)
def test_a_params_file_that_still_names_fast_is_refused_in_one_line_naming_the_new_models(
    workspace, capsys, old_params, named
):
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    for section, values in old_params.items():
        params[section] = {**params.get(section, {}), **values} if section != "fast" else values
    (workspace / "params.yaml").write_text(yaml.safe_dump(params))
    code, err = run_and_capture(train.main, capsys)
    assert code == 2 and "\n" not in err
    assert err.startswith(f"error: params.yaml: {named}: the model 'fast' is now two models; allowed: ")
    assert "airbench94_muon" in err and "airbench94 (" in err


STAGE_OF = {
    "fetch": fetch,
    "preprocess": preprocess,
    "train": train,
    "seed_cnn": train,
    "airbench94": train,
    "airbench94_muon": train,
    "evaluate": evaluate,
    "tta": evaluate,
    "robustness": robustness,
    "export": export,
    "visualize": visualize,
}


@pytest.mark.parametrize(
    "section, values, expected",
    [
        ("seed_cnn", {"epochs": 0}, "seed_cnn.epochs is 0; allowed: an integer >= 1"),
        ("seed_cnn", {"epochs": -3}, "seed_cnn.epochs is -3"),
        ("seed_cnn", {"batch_size": "32"}, "seed_cnn.batch_size is '32' (str)"),
        ("seed_cnn", {"epochs": 2.5}, "seed_cnn.epochs is 2.5 (float)"),
        ("seed_cnn", {"epochs": True}, "seed_cnn.epochs is True"),
        (
            "train",
            {"model": "resnet"},
            "train.model is 'resnet'; allowed: one of seed_cnn, airbench94, airbench94_muon",
        ),
        ("train", {"strategy": "gpu"}, "train.strategy is 'gpu'; allowed: one of auto, one_device, mirrored"),
        (
            "airbench94_muon",
            {"widths": [64, 256]},
            "airbench94_muon.widths is [64, 256]; allowed: a list of 3 integers from 1 to 4096",
        ),
        ("airbench94_muon", {"widths": [64, 0, 256]}, "airbench94_muon.widths[1] is 0; allowed: an integer from 1"),
        (
            "airbench94_muon",
            {"newton_schulz_steps": 0},
            "airbench94_muon.newton_schulz_steps is 0; allowed: an integer",
        ),
        ("airbench94_muon", {"learning_rate": 0.1}, "unknown key airbench94_muon.learning_rate"),  # airbench94's
        ("tta", {"airbench94_muon": 3}, "tta.airbench94_muon is 3; allowed: 0 (off), 1 (image and its mirror) or 2"),
        ("airbench94", {"ema_momentum": 1}, "airbench94.ema_momentum is 1; allowed: null (off) or a number from 0"),
        ("airbench94", {"nesterov": "yes"}, "airbench94.nesterov is 'yes' (str); allowed: true or false"),
        ("airbench94", {"label_smoothing": 1.5}, "airbench94.label_smoothing is 1.5; allowed: a number from 0 to 1"),
        ("airbench94", {"schedule": "linear"}, "airbench94.schedule is 'linear'; allowed: one of triangle, cosine"),
        ("airbench94", {"head_unit_std": True}, "unknown key airbench94.head_unit_std"),  # airbench94_muon's
        ("seed_cnn", {"learning_rate": 0}, "seed_cnn.learning_rate is 0; allowed: a number > 0"),
        ("seed_cnn", {"lr_decay": 1.5}, "seed_cnn.lr_decay is 1.5"),
        ("train", {"precision": "bf16"}, "train.precision is 'bf16'; allowed: one of auto, float32, mixed_bfloat16"),
        (
            "seed_cnn",
            {"schedule": "cosine"},
            "seed_cnn.schedule is 'cosine'; allowed: one of exponential, warmup_cosine",
        ),
        ("seed_cnn", {"warmup_epochs": -1}, "seed_cnn.warmup_epochs is -1; allowed: a number of epochs from 0 to 100"),
        ("tta", {"seed_cnn": -1}, "tta.seed_cnn is -1; allowed: 0 (off)"),
        ("preprocess", {"max_train_images": 0}, "preprocess.max_train_images is 0"),
        ("preprocess", {"aspect": "stretch"}, "preprocess.aspect is 'stretch'; allowed: one of squash, crop, pad"),
        (
            "preprocess",
            {"background": "transparent-ish"},
            "preprocess.background is 'transparent-ish'; allowed: a colour",
        ),
        ("preprocess", {"background": 255}, "preprocess.background is 255; allowed: a colour"),
        ("fetch", {"retries": 0}, "fetch.retries is 0; allowed: an integer from 1 to 20"),
        ("fetch", {"source": 3}, "fetch.source is 3 (int); allowed: a path"),
        ("evaluate", {"batch_size": None}, "evaluate.batch_size must not be null"),
        ("visualize", {"iterations": 0}, "visualize.iterations is 0; allowed: an integer from 1 to 10000"),
        ("visualize", {"step": -1.0}, "visualize.step is -1.0; allowed: a number > 0"),
        ("visualize", {"jitter": 40}, "visualize.jitter is 40; allowed: an integer from 0 to 16"),
        ("evaluate", {"mistakes": 0}, "evaluate.mistakes is 0; allowed: an integer from 1 to 64"),
        ("robustness", {"contrast": [0.5, 0.4]}, "robustness.contrast is [0.5, 0.4]; allowed: a list of 5 values"),
        ("robustness", {"jpeg_compression": [80, 65, 58, 50, 0]}, "robustness.jpeg_compression[4] is 0"),
        ("robustness", {"gaussian_noise": [0.1, 0.1, 0.1, 0.1, "x"]}, "robustness.gaussian_noise[4] is 'x' (str)"),
        ("robustness", {"max_images": 0}, "robustness.max_images is 0"),
        ("robustness", {"source": None}, "robustness.source must not be null; allowed: a path: data/sources/generated"),
        ("robustness", {"retries": 0}, "robustness.retries is 0; allowed: an integer from 1 to 20"),
        ("export", {"representative_images": 0}, "export.representative_images is 0; allowed: an integer from 1"),
        ("export", {"latency_runs": 2.5}, "export.latency_runs is 2.5 (float)"),
    ],
)
def test_bad_values_stop_the_stage_reading_them_with_one_line_naming_the_key(
    workspace, capsys, section, values, expected
):
    model_in_use = next(
        (name for name in models.MODELS if section == name or section == "tta" and name in values), "seed_cnn"
    )
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    for key, value in values.items():  # a section's key replaced, added (a misplaced key) or a list's length changed
        params[section][key] = value
    if section != "train":
        params["train"]["model"] = model_in_use
    (workspace / "params.yaml").write_text(yaml.safe_dump(params))
    code, err = run_and_capture(STAGE_OF[section].main, capsys)
    assert code == 2
    assert err.count("\n") == 0
    assert expected in err


def test_unknown_key_suggests_nearest(workspace, capsys):
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["seed_cnn"]["epoch"] = params["seed_cnn"].pop("epochs")
    (workspace / "params.yaml").write_text(yaml.safe_dump(params))
    code, err = run_and_capture(train.main, capsys)
    assert code == 2
    assert "unknown key seed_cnn.epoch; did you mean 'epochs'?" in err


def test_missing_section_and_unparsable_yaml(workspace, capsys):
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    del params["evaluate"]
    (workspace / "params.yaml").write_text(yaml.safe_dump(params))
    code, err = run_and_capture(evaluate.main, capsys)
    assert (code, err) == (2, "error: params.yaml: missing section 'evaluate'")

    (workspace / "params.yaml").write_text("- train\n")  # train first looks for the renamed `fast`
    assert run_and_capture(train.main, capsys) == (2, "error: params.yaml: the top level must be a mapping of sections")
    (workspace / "params.yaml").write_text("train: [seed_cnn]\n")
    code, err = run_and_capture(train.main, capsys)
    assert code == 2 and err.startswith("error: params.yaml: section 'train' must be a mapping of keys")

    (workspace / "params.yaml").write_text("train: [epochs: 3\n")
    code, err = run_and_capture(fetch.main, capsys)
    assert code == 2 and "YAML does not parse at line" in err and "\n" not in err


def test_a_bad_param_stops_the_stage_before_any_work(workspace, capsys):
    """The source is good and the old output in place: a bad `retries` must stop fetch before it copies."""
    archive = workspace / "source.tar.gz"
    write_cifar_archive(archive)
    out = workspace / "data" / "raw" / "dataset"
    out.parent.mkdir(parents=True)
    out.write_bytes(b"good earlier output")
    set_params(workspace, fetch={"source": str(archive), "retries": 0})
    code, err = run_and_capture(fetch.main, capsys)
    assert code == 2 and "fetch.retries is 0" in err
    assert out.read_bytes() == b"good earlier output"
    set_params(workspace, fetch={"retries": 1})  # the same run with the param fixed does the work
    assert run_and_capture(fetch.main, capsys)[0] == 0
    assert out.read_bytes() == archive.read_bytes()


def other_value(value, rule):
    """A value `rule` allows that differs from `value`."""
    if isinstance(rule, ListRule):
        return [item + 1 for item in value]
    if rule.choices:
        return next(choice for choice in rule.choices if choice != value)
    if bool in rule.kinds:
        return not value
    if value is None:
        return 0.5 if float in rule.kinds else 1
    if float in rule.kinds and value:
        return value / 2
    return value + 1 if rule.maximum is None or value + 1 <= rule.maximum else value - 1


def behaviour(model, recipe, steps_per_epoch=10):
    """All a model does with `recipe`, built through the model's own functions, as {aspect: comparable value}:
    "network.<layer class>.<config key>" (every such layer's value, in order) and "network.layers" (the
    layer classes), "weights" (the initial weights' sums), "optimizer.<config key>" and "optimizer.rates"
    (the rate at every step), "loss.<config key>", "batching.<field>", "callbacks.<class>.<setting>"."""
    import json

    import keras
    import numpy as np

    def text(value):
        return json.dumps(value, sort_keys=True, default=str)

    keras.utils.set_random_seed(0)
    images = np.random.default_rng(0).integers(0, 256, (50, 32, 32, 3), dtype=np.uint8)
    network = model.build(recipe, 10, images, 0)
    found = {"network.layers": [type(layer).__name__ for layer in network.layers]}
    for layer in network.layers:
        for key, value in layer.get_config().items():
            if key != "name":
                found.setdefault(f"network.{type(layer).__name__}.{key}", []).append(text(value))
    found["weights"] = [round(float(weights.astype(float).sum()), 6) for weights in network.get_weights()]
    optimizer = model.optimizer(recipe, steps_per_epoch)
    for key, value in optimizer.get_config().items():
        if key not in ("name", "learning_rate"):  # the rate: as it is at every step, below
            found[f"optimizer.{key}"] = text(value)
    rate = optimizer._learning_rate
    steps = range(recipe.epochs * steps_per_epoch + 1)
    found["optimizer.rates"] = [float(rate(step)) for step in steps] if callable(rate) else [float(rate)]
    found.update({f"loss.{key}": text(value) for key, value in model.loss(recipe).get_config().items()})
    batching = model.batching(recipe)
    found.update({f"batching.{key}": getattr(batching, key) for key in vars(batching)})
    for callback in model.callbacks(recipe, steps_per_epoch):
        kind = type(callback).__name__
        if isinstance(callback, keras.callbacks.LearningRateScheduler):
            found[f"callbacks.{kind}.schedule"] = [callback.schedule(epoch) for epoch in range(recipe.epochs)]
        else:
            for key, value in vars(callback).items():
                if isinstance(value, (int, float, str, bool, type(None))):
                    found[f"callbacks.{kind}.{key}"] = value
    return found


def changed_aspects(before, after):
    """The aspects that differ; a layer class present on one side only shows as "network.layers" alone."""
    both = set(before["network.layers"]) & set(after["network.layers"])
    keys = set(before) | set(after)
    keys = {k for k in keys if not k.startswith("network.") or k == "network.layers" or k.split(".")[1] in both}
    return {key for key in keys if before.get(key) != after.get(key)}


# Keys that act only under another key's value (params.yaml says so): the base they are changed from
ONLY_WITH = {("seed_cnn", "warmup_epochs"): {"schedule": "warmup_cosine"}}

# What each key of a model's section changes, as its comment in params.yaml says, and nothing else. A key
# added to a Recipe without an entry here fails the test below.
EFFECTS = {
    "seed_cnn": {
        "learning_rate": {"callbacks.LearningRateScheduler.schedule", "optimizer.rates"},  # the starting rate
        "schedule": {"callbacks.LearningRateScheduler.schedule", "optimizer.rates"},  # per epoch, or per step
        "lr_decay": {"callbacks.LearningRateScheduler.schedule"},  # the per-epoch factor
        "warmup_epochs": {"optimizer.rates"},  # warmup_cosine's warm-up, per step
    },
    **{
        name: {
            "momentum": {"optimizer.momentum"},
            "label_smoothing": {"loss.label_smoothing"},
            "widths": {"network.Conv2D.filters", "weights"},  # channels of the conv groups
            "init": {"network.Conv2D.kernel_initializer", "network.Dense.kernel_initializer", "weights"},
            "batchnorm_momentum": {"network.FusedBatchNormalization.momentum"},
            "output_scale": {"network.Rescaling.scale"},  # multiplies the class scores
            "flip": {"batching.alternating_flip", "network.layers"},  # alternating: batches; random: a layer
            "translate": {"network.RandomShift.reach"},
            "drop_last_batch": {"batching.drop_last_batch"},
            "activation": {"network.Activation.activation"},  # the conv groups' (the whitening's stays GELU)
        }
        for name in ("airbench94", "airbench94_muon")
    },
}
EFFECTS["airbench94"].update(
    brightness={"network.layers"},  # its default 0 -> on: a ColourJitter layer
    contrast={"network.layers"},
    whiten_bias_epochs={"callbacks.FreezeAfter.epochs"},
    learning_rate={"optimizer.rates"},
    schedule={"optimizer.rates"},
    warmup_epochs={"optimizer.rates"},
    initial_lr_fraction={"optimizer.rates"},
    final_lr_fraction={"optimizer.rates"},
    nesterov={"optimizer.nesterov"},
    weight_decay={"optimizer.weight_decay"},
    ema_momentum={"optimizer.ema_momentum", "optimizer.use_ema"},  # null: no averaging
    bias_lr_scale={"network.ScaledBias.scale"},  # the biases' rate, as a scale of their parameter
    lookahead_every={"callbacks.Lookahead.every"},
    lookahead_start_epoch={"callbacks.Lookahead.start_epoch"},
    lookahead_decay={"callbacks.Lookahead.decay"},
    lookahead_power={"callbacks.Lookahead.power"},
)
EFFECTS["airbench94_muon"].update(
    brightness={"network.ColourJitter.brightness"},  # the speedrun's jitter, on by default
    contrast={"network.ColourJitter.contrast"},
    # frozen after these epochs, and its own rate falling to 0 over them
    whiten_bias_epochs={"callbacks.FreezeAfter.epochs", "optimizer.whiten_bias_steps"},
    filter_lr={"optimizer.filter_lr"},
    filter_momentum={"optimizer.filter_momentum"},
    newton_schulz_steps={"optimizer.newton_schulz_steps"},
    bias_lr={"optimizer.bias_lr"},
    head_lr={"optimizer.head_lr"},
    # per image: x batch_size in the optimizer, for the SGD groups and (decay_filters, on by default) the filters
    weight_decay={"optimizer.weight_decay", "optimizer.filter_decay"},
    head_unit_std={"weights"},  # the last layer's initial weights
    newton_schulz_coefficients={"optimizer.newton_schulz_coefficients"},
    renormalise={"optimizer.renormalise_steps"},  # every_step: None; speedrun: the steps it rescales on
    decay_filters={"optimizer.filter_decay"},  # weight_decay x batch_size, or 0
)
# The optimizer's setting of the same name holds the key's value (weight_decay: per image of the batch there)
SCALED = {("airbench94_muon", "weight_decay"): lambda value, recipe: value * recipe.batch_size}


@pytest.mark.parametrize("name", list(models.MODELS))
def test_every_key_of_a_models_section_changes_what_its_comment_says_and_nothing_else(name):
    """Each key of the section (read from the model's Recipe, so a new key needs an entry in EFFECTS), changed
    alone to another allowed value, changes exactly its aspects of the network, optimizer, loss, batches or
    callbacks, built through the model's own functions; a setting named like the key holds its value."""
    import dataclasses
    import json

    from cifar.training.recipe import TrainingRecipe
    from tests.helpers import tiny_recipe

    model = models.MODELS[name]
    common = {item.name for item in dataclasses.fields(TrainingRecipe)}
    keys = [item for item in dataclasses.fields(model.Recipe) if item.name not in common]
    assert sorted(item.name for item in keys) == sorted(EFFECTS[name]), "a key without its effect in EFFECTS"
    for item in keys:
        base = tiny_recipe(name, **ONLY_WITH.get((name, item.name), {}))
        value = other_value(getattr(base, item.name), item.metadata["rule"])
        changed = dataclasses.replace(base, **{item.name: value})
        after = behaviour(model, changed)
        assert changed_aspects(behaviour(model, base), after) == EFFECTS[name][item.name], f"{name}.{item.name}"
        if f"optimizer.{item.name}" in after:
            expected = SCALED.get((name, item.name), lambda v, r: v)(value, changed)
            assert json.loads(after[f"optimizer.{item.name}"]) == pytest.approx(expected), f"{name}.{item.name}"
