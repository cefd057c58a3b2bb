import keras
import numpy as np
import pytest

from stages import precision
from stages.train import train
from tests.helpers import prepare_workspace


@pytest.mark.parametrize(
    "flags, gpus, expected",
    [
        ({"avx2", "fma"}, [], "float32"),  # this development machine
        ({"avx2", "avx512f", "avx512_bf16"}, [], "mixed_bfloat16"),
        ({"avx2", "amx_bf16", "amx_tile"}, [], "mixed_bfloat16"),
        ({"avx2"}, [(8, 0)], "mixed_bfloat16"),  # A100
        ({"avx512_bf16"}, [(7, 0)], "float32"),  # V100: the GPU trains, and it has no bf16 units
        ({"avx2"}, [(9, 0), (7, 5)], "float32"),  # every GPU must have them
    ],
)
def test_auto_picks_bfloat16_only_where_the_hardware_has_it(flags, gpus, expected):
    assert precision.resolve("auto", flags=flags, gpus=gpus) == expected
    assert precision.resolve("float32", flags=flags, gpus=gpus) == "float32"
    assert precision.resolve("mixed_bfloat16", flags=flags, gpus=gpus) == "mixed_bfloat16"


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 amx_bf16\n\nprocessor\t: 1\n")
    assert precision.cpu_flags(cpuinfo) == {"fpu", "sse", "avx2", "amx_bf16"}
    assert precision.cpu_flags(tmp_path / "missing") == set()


def test_mixed_bfloat16_trains_in_bfloat16_with_a_float32_softmax(tmp_path, monkeypatch):
    params = prepare_workspace(tmp_path, epochs=1, precision="mixed_bfloat16")
    monkeypatch.chdir(tmp_path)
    model, history = train(params, state_root=tmp_path / "state", live_dir=tmp_path / "live")
    assert keras.mixed_precision.global_policy().name == "float32"  # not leaked to later models
    assert np.isfinite(history["loss"]).all()
    saved = keras.models.load_model(tmp_path / "models/model.keras")
    conv = saved.get_layer("conv2d_1")
    assert conv.compute_dtype == "bfloat16" and conv.kernel.dtype == "float32"  # float32 master weights
    assert saved.layers[-1].compute_dtype == "float32"
    probabilities = saved.predict(np.zeros((3, 32, 32, 3), np.uint8), verbose=0)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    logged = (tmp_path / "live/params.yaml").read_text()
    assert "precision: mixed_bfloat16" in logged
