"""The whole pipeline on a model trained in mixed_bfloat16, as machines with bfloat16 units run it
(Intel AMX, AMD Zen 4's AVX512-BF16, NVIDIA Ampere and later: `train.precision: auto` picks it there).
bfloat16 is emulated where the CPU lacks those units, so these runs are tiny, and they run on every
machine. A file apart from tests/test_pipeline.py, so that pytest's workers run the two side by side."""

import json

import pytest
import yaml

from cifar.core.artifacts import Artifacts
from cifar.core.cpu import CPUINFO_ENV
from tests.test_pipeline import repro_every_stage

# What /proc/cpuinfo says on a Zen 4 EPYC (AVX512-BF16, no AMX): `train.precision: auto` trains
# in bfloat16 there. The stages read it through CIFAR_CPUINFO, so `auto` is tested on any CPU.
ZEN4_CPUINFO = "processor\t: 0\nmodel name\t: AMD EPYC 9B14\nflags\t\t: fpu sse2 avx2 fma avx512f avx512_bf16\n"


@pytest.mark.slow
def test_dvc_repro_runs_every_stage_on_a_model_trained_in_bfloat16(tmp_path):
    repo = repro_every_stage(tmp_path, "mixed_bfloat16")
    assert (
        yaml.safe_load((Artifacts(repo.path).train_reports / "params.yaml").read_text())["precision"]
        == "mixed_bfloat16"
    )


@pytest.mark.slow
def test_auto_precision_on_a_cpu_with_bfloat16_units_trains_and_runs_every_stage_in_bfloat16(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(ZEN4_CPUINFO)
    repo = repro_every_stage(tmp_path, "auto", env={CPUINFO_ENV: str(cpuinfo)})
    resolved = yaml.safe_load((Artifacts(repo.path).train_reports / "params.yaml").read_text())
    assert resolved["precision"] == "mixed_bfloat16"
    assert resolved["cpu"] == "AMD EPYC 9B14; bfloat16 units: avx512_bf16"
    assert json.loads(Artifacts(repo.path).export_record.read_text())["cpu"] == resolved["cpu"]
