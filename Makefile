# `make repro` installs everything and runs the whole pipeline; `make test` installs everything and runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
# Stage commands in dvc.yaml call `python`; this makes it the project's interpreter.
export PATH := $(BIN):$(PATH)

.PHONY: install repro test report benchmark lock
BASE ?= main

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

repro: install
	dvc repro

test: install
	python -m pytest

# reports/report.md and reports/plots/index.html, compared with $(BASE) (make report BASE=origin/main).
report: install
	python -m stages.report --base $(BASE)

# Every benchmark, on real data: make benchmark SOURCE=path/to/cifar10-archive-or-folder
benchmark: install
	$(if $(SOURCE),,$(error set SOURCE to a CIFAR-10 archive or image folder))
	python -m benchmarks.run_all --source $(SOURCE)

# Re-pin requirements.txt after editing requirements.in.
lock:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.in
	(echo "# Generated from requirements.in by: make lock"; $(BIN)/pip freeze --exclude-editable) > requirements.txt
