import pytest
import yaml

from stages import fetch, preprocess
from stages.errors import run_stage
from stages.params import MODEL_NAMES, load_params
from tests.conftest import PROJECT, set_params
from tests.datagen import write_cifar_archive


def run_and_capture(main, capsys):
    code = run_stage(main)
    err = capsys.readouterr().err.strip()
    return code, err


def test_project_params_are_valid():
    params = load_params(PROJECT / "params.yaml")
    assert params["train"]["model"] == "seed_cnn"
    assert params["train"]["epochs"] == 10 and params["train"]["batch_size"] == 32
    assert params["train"]["learning_rate"] == 0.005 and params["train"]["lr_decay"] == 0.9


def test_every_model_name_builds():
    from stages.models import build_model

    recipe = load_params(PROJECT / "params.yaml")["fast"]
    for name in MODEL_NAMES:
        assert build_model(name, 10, recipe).name == name


@pytest.mark.parametrize(
    "section, values, expected",
    [
        ("train", {"epochs": 0}, "train.epochs is 0; allowed: an integer >= 1"),
        ("train", {"epochs": -3}, "train.epochs is -3"),
        ("train", {"batch_size": "32"}, "train.batch_size is '32' (str)"),
        ("train", {"epochs": 2.5}, "train.epochs is 2.5 (float)"),
        ("train", {"epochs": True}, "train.epochs is True"),
        ("train", {"model": "resnet"}, "train.model is 'resnet'; allowed: one of seed_cnn, fast"),
        ("train", {"strategy": "gpu"}, "train.strategy is 'gpu'; allowed: one of auto, one_device, mirrored"),
        ("fast", {"widths": [64, 256]}, "fast.widths is [64, 256]; allowed: a list of 3 integers from 1 to 4096"),
        ("fast", {"widths": [64, 0, 256]}, "fast.widths[1] is 0; allowed: an integer from 1 to 4096"),
        ("fast", {"tta_level": 3}, "fast.tta_level is 3; allowed: 0 (off), 1 (image and its mirror) or 2"),
        ("fast", {"ema_momentum": 1}, "fast.ema_momentum is 1; allowed: null (off) or a number from 0 to less than 1"),
        ("fast", {"nesterov": "yes"}, "fast.nesterov is 'yes' (str); allowed: true or false"),
        ("fast", {"label_smoothing": 1.5}, "fast.label_smoothing is 1.5; allowed: a number from 0 to 1"),
        ("train", {"learning_rate": 0}, "train.learning_rate is 0; allowed: a number > 0"),
        ("train", {"lr_decay": 1.5}, "train.lr_decay is 1.5"),
        ("train", {"precision": "bf16"}, "train.precision is 'bf16'; allowed: one of auto, float32, mixed_bfloat16"),
        ("train", {"schedule": "cosine"}, "train.schedule is 'cosine'; allowed: one of exponential, warmup_cosine"),
        ("train", {"warmup_epochs": -1}, "train.warmup_epochs is -1; allowed: a number of epochs from 0 to 100"),
        ("preprocess", {"max_train_images": 0}, "preprocess.max_train_images is 0"),
        ("fetch", {"checksum": "md5:xyz"}, "fetch.checksum is 'md5:xyz'"),
        ("evaluate", {"batch_size": None}, "evaluate.batch_size must not be null"),
        ("visualize", {"iterations": 0}, "visualize.iterations is 0; allowed: an integer from 1 to 10000"),
        ("visualize", {"step": -1.0}, "visualize.step is -1.0; allowed: a number > 0"),
        ("visualize", {"jitter": 40}, "visualize.jitter is 40; allowed: an integer from 0 to 16"),
    ],
)
def test_bad_values_stop_with_one_line_naming_the_key(workspace, capsys, section, values, expected):
    set_params(workspace, **{section: values})
    code, err = run_and_capture(preprocess.main, capsys)
    assert code == 2
    assert err.count("\n") == 0
    assert expected in err


def test_unknown_key_suggests_nearest(workspace, capsys):
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["train"]["epoch"] = params["train"].pop("epochs")
    (workspace / "params.yaml").write_text(yaml.safe_dump(params))
    code, err = run_and_capture(fetch.main, capsys)
    assert code == 2
    assert "unknown key train.epoch; did you mean 'epochs'?" in err


def test_missing_section_and_unparsable_yaml(workspace, capsys):
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    del params["evaluate"]
    (workspace / "params.yaml").write_text(yaml.safe_dump(params))
    code, err = run_and_capture(fetch.main, capsys)
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
