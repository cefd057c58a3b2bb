import pytest
import yaml

from benchmarks.workspace import PROJECT, set_params
from cifar.core import cli
from cifar.core.params import load_params
from cifar.models import MODEL_NAMES, MODELS, TRAIN_RULES, build_model, model_definition
from stages import evaluate, export, fetch, preprocess, robustness, train, visualize
from tests.datagen import write_cifar_archive


def run_and_capture(main, capsys):
    code = cli.run(main, [])
    err = capsys.readouterr().err.strip()
    return code, err


def test_project_params_are_valid_and_the_tutorials_recipe():
    schema = {"train": TRAIN_RULES, **{name: definition.RECIPE for name, definition in MODELS.items()}}
    params = load_params(schema, PROJECT / "params.yaml")
    assert params["train"]["model"] == "seed_cnn"
    tutorial = params["seed_cnn"]
    assert tutorial["epochs"] == 10 and tutorial["batch_size"] == 32 and tutorial["schedule"] == "exponential"
    assert tutorial["learning_rate"] == 0.005 and tutorial["lr_decay"] == 0.9


def test_every_model_name_builds_from_its_own_section():
    for name in MODEL_NAMES:
        recipe = load_params({name: model_definition(name).RECIPE}, PROJECT / "params.yaml")[name]
        assert build_model(name, 10, recipe).name == name


STAGE_OF = {
    "fetch": fetch,
    "preprocess": preprocess,
    "train": train,
    "seed_cnn": train,
    "fast": train,
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
        ("train", {"model": "resnet"}, "train.model is 'resnet'; allowed: one of seed_cnn, fast"),
        ("train", {"strategy": "gpu"}, "train.strategy is 'gpu'; allowed: one of auto, one_device, mirrored"),
        ("fast", {"widths": [64, 256]}, "fast.widths is [64, 256]; allowed: a list of 3 integers from 1 to 4096"),
        ("fast", {"widths": [64, 0, 256]}, "fast.widths[1] is 0; allowed: an integer from 1 to 4096"),
        ("tta", {"fast": 3}, "tta.fast is 3; allowed: 0 (off), 1 (image and its mirror) or 2"),
        ("fast", {"ema_momentum": 1}, "fast.ema_momentum is 1; allowed: null (off) or a number from 0 to less than 1"),
        ("fast", {"nesterov": "yes"}, "fast.nesterov is 'yes' (str); allowed: true or false"),
        ("fast", {"label_smoothing": 1.5}, "fast.label_smoothing is 1.5; allowed: a number from 0 to 1"),
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
    model_in_use = "fast" if section == "fast" or "fast" in values and section == "tta" else "seed_cnn"
    set_params(workspace, **{section: values}, **({"train": {"model": "fast"}} if model_in_use == "fast" else {}))
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
