import keras
import numpy as np
import pytest
import yaml

from cifar.core import cpu
from cifar.core.artifacts import Artifacts
from cifar.training import precision
from tests.helpers import prepare_workspace, train_in_workspace


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
    assert cpu.cpu_flags(cpuinfo) == {"fpu", "sse", "avx2", "amx_bf16"}
    assert cpu.cpu_flags(tmp_path / "missing") == set()


def test_the_cpu_is_described_with_its_bfloat16_units(tmp_path):
    xeon, epyc = tmp_path / "xeon", tmp_path / "epyc"
    xeon.write_text(
        "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz\n"
        "flags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
    )
    epyc.write_text("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: avx2 fma\n")
    assert cpu.describe_cpu(xeon) == (
        "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz; bfloat16 units: amx_bf16, avx512_bf16"
    )
    assert cpu.describe_cpu(epyc) == "AMD EPYC 7B13; bfloat16 units: none (emulated)"


def test_mixed_bfloat16_trains_in_bfloat16_with_a_float32_softmax(tmp_path):
    prepare_workspace(tmp_path, epochs=1, precision="mixed_bfloat16")
    model, history = train_in_workspace(tmp_path)
    assert keras.mixed_precision.global_policy().name == "float32"  # not leaked to later models
    assert np.isfinite(history["loss"]).all()
    saved = keras.models.load_model(Artifacts(tmp_path).model)
    conv = saved.get_layer("conv2d_1")
    assert conv.compute_dtype == "bfloat16" and conv.kernel.dtype == "float32"  # float32 master weights
    assert saved.layers[-1].compute_dtype == "float32"
    probabilities = saved.predict(np.zeros((3, 32, 32, 3), np.uint8), verbose=0)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    logged = yaml.safe_load((Artifacts(tmp_path).train_reports / "params.yaml").read_text())
    resolved = {"precision": "mixed_bfloat16", "strategy": "one device"}
    assert logged == {**resolved, "cpu": cpu.describe_cpu()}


def test_cifar_cpuinfo_shows_auto_another_cpu(tmp_path, monkeypatch):
    zen4 = tmp_path / "cpuinfo"
    zen4.write_text("processor\t: 0\nmodel name\t: AMD EPYC 9B14\nflags\t\t: avx2 avx512f avx512_bf16\n")
    monkeypatch.setenv(cpu.CPUINFO_ENV, str(zen4))
    assert precision.resolve("auto", gpus=[]) == "mixed_bfloat16"
    assert cpu.describe_cpu() == "AMD EPYC 9B14; bfloat16 units: avx512_bf16"
    avx2 = tmp_path / "avx2"
    avx2.write_text("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: avx2 fma\n")
    monkeypatch.setenv(cpu.CPUINFO_ENV, str(avx2))
    assert precision.resolve("auto", gpus=[]) == "float32"


def test_auto_is_float32_on_a_mac_whatever_the_cpuinfo_says(tmp_path, monkeypatch):
    """macOS has no /proc/cpuinfo: a Mac is told apart by its platform, and float32 is the choice there,
    even where a file claims bfloat16 units (TensorFlow sees no CUDA GPU on a Mac: `gpus` empty)."""
    zen4 = tmp_path / "cpuinfo"
    zen4.write_text("processor\t: 0\nflags\t\t: avx2 avx512_bf16 amx_bf16\n")
    monkeypatch.setenv(cpu.CPUINFO_ENV, str(zen4))
    monkeypatch.setattr(precision.platform, "system", lambda: "Darwin")
    assert precision.resolve("auto", gpus=[]) == "float32"
    assert precision.resolve("auto", gpus=[], system="Linux") == "mixed_bfloat16"
    monkeypatch.setenv(cpu.CPUINFO_ENV, str(tmp_path / "missing"))  # as on a real Mac
    monkeypatch.setattr(precision.platform, "system", lambda: "Linux")
    assert precision.resolve("auto", gpus=[]) == "float32"
    assert precision.resolve("mixed_bfloat16", gpus=[], system="Darwin") == "mixed_bfloat16"


def test_auto_is_float32_on_linux_arm_even_with_bf16_features(tmp_path, monkeypatch):
    """An AWS Graviton3's cpuinfo: Arm lists `Features` (bf16 among them), not x86 `flags`."""
    graviton = tmp_path / "cpuinfo"
    graviton.write_text("processor\t: 0\nBogoMIPS\t: 2100.00\nFeatures\t: fp asimd sve bf16 i8mm\nCPU part\t: 0xd40\n")
    monkeypatch.setenv(cpu.CPUINFO_ENV, str(graviton))
    assert cpu.cpu_flags() == set()
    assert precision.resolve("auto", gpus=[], system="Linux") == "float32"
