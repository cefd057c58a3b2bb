# Every step of CI is a target here, so a workstation runs the same commands as the workflow
# (.github/workflows/pipeline.yml; docs/ci.md). `make repro` runs the pipeline, `make test` the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
# GPU=1: the NVIDIA GPU lock (Linux x86_64: TensorFlow with CUDA from pip) instead of the CPU one.
# An environment installed with GPU=1 stays the GPU one for later targets; `GPU=` goes back.
GPU ?= $(if $(wildcard $(VENV)/.installed-requirements-gpu.txt),1)
LOCK := requirements$(if $(GPU),-gpu).txt
# Stage commands in dvc.yaml call `python`; this makes it the project's interpreter.
export PATH := $(BIN):$(PATH)

.PHONY: install lint test restore repro report publish-report push baseline benchmark lock
BASE ?= main
# The uploader of the report's images for a pull-request comment (CML's; docs/ci.md).
PUBLISH_WITH ?= cml asset publish

install: $(VENV)/.installed-$(LOCK)

# A fresh environment for each lock (and each change of it): the GPU lock's TensorFlow and the
# CPU build install the same modules, so one must never be installed over the other.
$(VENV)/.installed-$(LOCK): $(LOCK)
	@$(PYTHON) -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))' || \
		{ echo "error: Python 3.11, 3.12 or 3.13 is needed (TensorFlow 2.21's wheels); $(PYTHON) is $$($(PYTHON) -V)" >&2; exit 1; }
	$(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r $(LOCK)
	touch $@

# Style and the workflow files: ruff, and jactionlint with actionlint's own checks.
lint: install
	ruff check .
	ruff format --check .
	jactionlint --profile correctness --no-hints .github/workflows/*.yml

test: install
	python -m pytest

# The outputs DVC's cache holds for the committed dvc.lock (after CI restored the cache): the stages
# whose code, data and params did not change then need not rerun.
restore: install
	dvc checkout --allow-missing

repro: install
	dvc repro

# reports/report.md and reports/plots/index.html, compared with $(BASE) (make report BASE=origin/main).
report: install
	python -m stages.report --base $(BASE)

# The report as a pull-request comment (and the job summary) shows it: images uploaded by CML, then
# posted with CML (it needs REPO_TOKEN); in GitHub Actions, also the run's summary.
publish-report: install
	python -m stages.report --base $(BASE) --publish-with "$(PUBLISH_WITH)"
	cml comment update --publish=false --watermark-title="{workflow} report" reports/report.published.md
	if [ -n "$$GITHUB_STEP_SUMMARY" ]; then cat reports/report.published.md >> "$$GITHUB_STEP_SUMMARY"; fi

# On main, after `make repro`: propose the results (dvc.lock, reports/) to main as a pull request
# that merges itself, so every later pull request's report has a base; push data and model to the
# DVC remote when one is configured.
baseline: push
	cml pr create --squash --skip-ci --title "Baseline results of $$(git rev-parse --short HEAD)" \
		--message "Baseline results of $$(git rev-parse --short HEAD)" dvc.lock reports

# Data, prepared arrays and models to the DVC remote, when one is configured (docs/outputs.md); none: nothing
push: install
	if dvc remote default >/dev/null 2>&1; then dvc push; else echo "no DVC remote configured: nothing pushed"; fi

# Every benchmark, on real data: make benchmark SOURCE=path/to/cifar-10-python.tar.gz
benchmark: install
	$(if $(SOURCE),,$(error set SOURCE to a CIFAR-10 archive or image folder))
	python -m benchmarks.run_all --source $(SOURCE)

# Re-pin after editing pyproject.toml's dependencies: one lock for every platform and Python version
# (uv's universal resolution, keeping the current pins where they still fit; `uv pip compile
# --upgrade` moves them), the GPU lock with the same pins; then check both on every supported platform.
lock: install
	uv pip compile pyproject.toml --universal --extra s3 --extra ssh --extra test --extra dev --quiet -o requirements.txt
	uv pip compile pyproject.toml --universal --extra gpu --extra s3 --extra ssh --extra test --extra dev \
		--override requirements-gpu.in --constraint requirements.txt --quiet -o requirements-gpu.txt
	python -m pytest -n 0 tests/test_install.py
