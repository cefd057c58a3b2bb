import shutil
from pathlib import Path

import pytest
import yaml

import cifar  # noqa: F401  (sets TensorFlow's environment before any test imports it)

PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A scratch directory holding a copy of params.yaml, made the current directory."""
    shutil.copy(PROJECT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    return tmp_path


def set_params(path, **sections):
    """Update sections of params.yaml in `path` (a directory): set_params(d, train={"epochs": 2})."""
    params_file = Path(path) / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    for section, values in sections.items():
        params[section].update(values)
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    return params
