"""What `python -m stages.predict` prints is what each model format computes (issue 31).

For each exported format (Keras, SavedModel, TFLite float32 and int8) of each shared tiny model (seed_cnn
and fast, trained in float32 and in mixed_bfloat16), every probability predict prints, as text and as
JSON, against the Keras model's own probabilities of the same pixels (the test images written as PNG,
lossless), computed here with Keras alone. A model trained in mixed_bfloat16 computes in bfloat16, and
its exports hold a float32 copy of its weights (stages/export.py): every format is compared with a
float32 recomputation from the same weights, the Keras format by a bound from bfloat16's precision.

Measured on AMD EPYC (2 cores; `lscpu`: "AMD EPYC", flags avx512_bf16), 100 test images of each model:
the largest absolute difference from the float32 reference, through the loaders, before predict rounds.
                      keras              saved_model  tflite_float32  tflite_int8 (mean)
  seed_cnn float32    0                  0            1.3e-6          0.045 (0.0015)
  fast float32        0                  0            1.3e-6          0.086 (0.0059)
  seed_cnn bfloat16   0.0077-0.0086 (*)  0            1.3e-6          0.017 (0.0015)
  fast bfloat16       0.133-0.144 (*)    0            3.0e-6          0.143 (0.0062)
(*) computed in bfloat16; two trainings, one alone and one in this file's session, whose bfloat16
weights differ (the float32 ones do not): mean 0.0005-0.0006 (seed_cnn) and 0.0039-0.0043 (fast);
see BF16_* below.
"""

import json
import re
from types import SimpleNamespace

import keras
import numpy as np
import pytest
from PIL import Image

from benchmarks.workspace import PROJECT
from cifar.core import cli
from cifar.core.artifacts import Artifacts
from cifar.core.params import load_params
from cifar.network.trained import float32_copy, load_trained_model
from stages.export import EXPORT
from stages.predict import main as predict

MODELS = [
    ("seed_cnn", "float32"),
    ("airbench94_muon", "float32"),
    ("seed_cnn", "mixed_bfloat16"),
    ("airbench94_muon", "mixed_bfloat16"),
]
FORMATS = ("keras", "saved_model", "tflite_float32", "tflite_int8")

# What predict rounds: JSON to 6 decimals, the text to 3.
JSON_ROUNDING, TEXT_ROUNDING = 5e-7, 5e-4
# float32 formats against the float32 Keras model: measured 0 (Keras, SavedModel) and 3.0e-6 at most
# (TFLite float32, its own kernels), AMD EPYC; 1e-5 leaves room for another CPU's kernels.
FLOAT32_ATOL = 1e-5
# int8 against float32: the output is q/256 (quantisation step 1/256) and every activation is quantised
# on the way. Measured max 0.143 and mean 0.0062 (fast bfloat16's float32 copy), 0.086 and 0.0059 (fast
# float32), 0.045 and 0.0015 (seed_cnn), AMD EPYC: the bounds are about 1.7 and 2 times the largest.
INT8_MAX_ATOL, INT8_MEAN_ATOL = 0.25, 0.0125
# bfloat16 keeps 8 significant bits: each rounding is off by at most u = 2**-8 of the value. The Keras
# format of a mixed_bfloat16 model computes its logits z (the input of its float32 softmax) in bfloat16,
# the float32 copy computes z'. For each image let R = max(z - z') - min(z - z'). Then exactly
# p_i / p'_i = exp(d_i) / sum_j p'_j exp(d_j) (d = z - z') lies in [exp(-R), exp(R)], so
#     |p_i - p'_i| <= p'_i (exp(R) - 1),   and   sum_i |p_i - p'_i| <= exp(R) - 1.
# R comes from bfloat16's roundings along the network: R <= BF16_LOGIT_ROUNDINGS * u * max|z'| per image,
# in units of u; measured 3.96-4.39 (seed_cnn: 19 layers) and 54.8-72.1 (fast: its BatchNorms and its
# temperature amplify them) over two trainings, AMD EPYC. The bound is about twice that.
BF16_UNIT_ROUNDOFF = 2.0**-8
BF16_LOGIT_ROUNDINGS = {"seed_cnn": 10, "airbench94_muon": 150}
# The mean absolute difference over every probability, which one noisy image cannot dominate:
# measured 0.0005-0.0006 (seed_cnn) and 0.0039-0.0043 (fast), AMD EPYC; bounded by 2u = 0.0078, which
# an error of 0.01 in every probability exceeds (measured: 0.0115 and more, fast's).
BF16_MEAN_ATOL = 2 * BF16_UNIT_ROUNDOFF


@pytest.fixture(scope="module", params=MODELS, ids=["-".join(m) for m in MODELS])
def exported(request, trained_workspace, tmp_path_factory):
    """A shared trained model exported once to every format; its test images as PNG files; the references."""
    from stages.export import export

    model, precision = request.param
    artifacts = Artifacts(trained_workspace(model, precision))
    settings = load_params({"export": EXPORT}, PROJECT / "params.yaml")["export"]
    export({**settings, "latency_runs": 1}, artifacts, progress=lambda m: None)
    # how predict fits a picture, kept beside every format
    assert (
        artifacts.load_input(artifacts.export_input)
        == artifacts.load_input(artifacts.model_input)
        == {"aspect": "squash", "background": "white"}
    )
    images = np.load(artifacts.x_test)
    folder = tmp_path_factory.mktemp(f"png-{model}-{precision}")
    paths = []
    for index, image in enumerate(images):
        paths.append(str(folder / f"{index}.png"))
        Image.fromarray(image).save(paths[-1])
    with Image.open(paths[-1]) as last:
        np.testing.assert_array_equal(np.asarray(last), images[-1])  # PNG: the same pixels
    trained = keras.saving.load_model(artifacts.model, compile=False)
    own = trained.predict(images, verbose=0).astype(np.float64)
    reference = {"model": model, "precision": precision, "paths": paths, "artifacts": artifacts, "own": own}
    if precision == "float32":
        return SimpleNamespace(**reference, float32=own)
    copy = float32_copy(load_trained_model(artifacts.model))
    computes_in = [{layer.compute_dtype for layer in m.layers[1:]} for m in (trained, copy)]
    assert "bfloat16" in computes_in[0] and computes_in[1] == {"float32"}
    float32 = copy.predict(images, verbose=0).astype(np.float64)
    assert np.abs(own - float32).max() > 1e-4  # two different computations: the bound below is not 0
    return SimpleNamespace(
        **reference, float32=float32, logits=logits(trained, images), float32_logits=logits(copy, images)
    )


def logits(model, images):
    """The input of the model's final softmax layer (both models of the zoo end in one)."""
    assert model.layers[-1].get_config()["activation"] == "softmax"
    return keras.Model(model.inputs, model.layers[-1].input).predict(images, verbose=0).astype(np.float64)


def model_file(exported, name):
    """The file (or SavedModel folder) of format `name`, as stages/export.py names them in reports/export.json."""
    paths = ("model", "saved_model", "tflite_float", "tflite_int8")
    return getattr(exported.artifacts, dict(zip(FORMATS, paths))[name])


def printed(exported, name, capsys, as_json):
    """predict's probabilities of every test image, [image, class] in the model's class order."""
    classes = exported.artifacts.load_classes(exported.artifacts.model_classes)
    args = ["--model", str(model_file(exported, name)), "--top", str(len(classes)), *(["--json"] if as_json else [])]
    assert cli.run(predict, [*args, *exported.paths]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    ranked = json.loads(captured.out)["predictions"] if as_json else parse_text(captured.out, exported.paths)
    assert list(ranked) == exported.paths
    table = np.full((len(exported.paths), len(classes)), np.nan)
    for row, path in enumerate(exported.paths):
        assert sorted(r["class"] for r in ranked[path]) == sorted(classes)  # each class once
        probabilities = [r["probability"] for r in ranked[path]]
        assert probabilities == sorted(probabilities, reverse=True)
        for r in ranked[path]:
            table[row, classes.index(r["class"])] = r["probability"]
    return table


TEXT_ENTRY = re.compile(r"(?P<class>\S(?:.*\S)?) (?P<probability>[01]\.\d{3})")


def parse_text(out, paths):
    """{path: [{class, probability}]} from the plain output: `path: class 0.123, class 0.045, ...` per line."""
    lines = out.splitlines()
    assert len(lines) == len(paths)
    ranked = {}
    for line, path in zip(lines, paths):
        assert line.startswith(f"{path}: "), line
        entries = [TEXT_ENTRY.fullmatch(entry) for entry in line[len(path) + 2 :].split(", ")]
        assert all(entries), line
        ranked[path] = [{"class": m["class"], "probability": float(m["probability"])} for m in entries]
    return ranked


def close(values, expected, atol):
    return bool(np.all(np.abs(values - expected) <= atol))


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "text"])
@pytest.mark.parametrize("name", FORMATS)
def test_predict_prints_each_formats_probabilities(exported, name, as_json, capsys):
    values = printed(exported, name, capsys, as_json)
    rounding = JSON_ROUNDING if as_json else TEXT_ROUNDING + JSON_ROUNDING  # the text rounds JSON's figure
    reference = exported.float32
    if name == "tflite_int8":
        difference = np.abs(values - reference)
        assert difference.max() <= INT8_MAX_ATOL + rounding, difference.max()
        assert difference.mean() <= INT8_MEAN_ATOL + rounding, difference.mean()
        if as_json:  # dequantised as q * 1/256, q in 0..255: each printed figure is such a multiple
            steps = np.round(values * 256)
            assert close(values, steps / 256, 2 * JSON_ROUNDING) and steps.max() <= 255
        assert np.mean(values.argmax(axis=1) == reference.argmax(axis=1)) >= 0.9  # flips near ties only
    elif name == "keras" and exported.precision != "float32":
        # computed in bfloat16: as the model computes it here, and within bfloat16's bound of float32
        assert close(values, exported.own, FLOAT32_ATOL + rounding)
        assert within_bfloat16_bound(exported, values, rounding)
        assert not within_bfloat16_bound(exported, values + 0.01, rounding)
        assert not within_bfloat16_bound(exported, values - 0.01, rounding)
    else:
        assert close(values, reference, FLOAT32_ATOL + rounding), np.abs(values - reference).max()
        assert not close(values + 0.01, reference, FLOAT32_ATOL + rounding)  # a probability off by 0.01 fails
        assert not close(values - 0.01, reference, FLOAT32_ATOL + rounding)


def within_bfloat16_bound(exported, values, rounding):
    """Probabilities `values` computed in bfloat16 against the float32 recomputation, by the bounds above."""
    difference = exported.logits - exported.float32_logits
    spread = difference.max(axis=1) - difference.min(axis=1)  # R of each image
    roundings = BF16_LOGIT_ROUNDINGS[exported.model] * BF16_UNIT_ROUNDOFF
    assert np.all(spread <= roundings * np.abs(exported.float32_logits).max(axis=1)), spread.max()
    bound = exported.float32 * np.expm1(spread)[:, None] + rounding
    error = np.abs(values - exported.float32)
    return bool(np.all(error <= bound) and error.mean() <= BF16_MEAN_ATOL + rounding)
