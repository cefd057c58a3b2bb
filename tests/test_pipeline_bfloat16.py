"""The whole pipeline through `train.precision: auto` shown the other kind of CPU than the one running
the suite (through CIFAR_CPUINFO): on a CPU with bfloat16 units, an AVX2-only one, where `auto` must
train in float32; elsewhere a Zen 4 (AVX512-BF16), where it must train in bfloat16. With
tests/test_pipeline.py's run of `auto` on the machine itself, every stage runs on a model trained
in each precision on every machine. bfloat16 is emulated, slowly, where the CPU lacks the units, so
the data are tiny. A file apart from tests/test_pipeline.py, so that pytest's workers run the two
side by side."""

import json
from pathlib import Path

import pytest
import yaml

from cifar.core.artifacts import Artifacts
from cifar.core.cpu import CPUINFO_ENV
from tests.pipeline_outputs import precision_for, repro_every_stage

# What /proc/cpuinfo says on a Zen 4 EPYC (AVX512-BF16, no AMX), and on an AVX2-only EPYC
CPUINFO = {
    "mixed_bfloat16": (
        "processor\t: 0\nmodel name\t: AMD EPYC 9B14\nflags\t\t: fpu sse2 avx2 fma avx512f avx512_bf16\n",
        "AMD EPYC 9B14; bfloat16 units: avx512_bf16",
    ),
    "float32": (
        "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx2 fma\n",
        "AMD EPYC 7B13; bfloat16 units: none (emulated)",
    ),
}


@pytest.mark.slow
def test_auto_precision_on_the_other_kind_of_cpu_trains_in_its_precision_and_runs_every_stage(tmp_path):
    here = precision_for(Path("/proc/cpuinfo").read_text())
    other = "float32" if here == "mixed_bfloat16" else "mixed_bfloat16"
    cpuinfo, described = CPUINFO[other]
    assert precision_for(cpuinfo) == other
    shown = tmp_path / "cpuinfo"
    shown.write_text(cpuinfo)
    repo = repro_every_stage(tmp_path, "auto", other, env={CPUINFO_ENV: str(shown)})
    resolved = yaml.safe_load((Artifacts(repo.path).train_reports / "params.yaml").read_text())
    assert resolved["precision"] == other and resolved["cpu"] == described
    assert json.loads(Artifacts(repo.path).export_record.read_text())["cpu"] == described
