# Every step of CI is a target here, so a workstation runs the same commands as the workflow
# (.github/workflows/pipeline.yml; docs/ci.md). `make repro` runs the pipeline, `make test` the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
# Stage commands in dvc.yaml call `python`; this makes it the project's interpreter.
export PATH := $(BIN):$(PATH)

.PHONY: install lint test restore repro report publish-report baseline benchmark lock
BASE ?= main
# The uploader of the report's images for a pull-request comment (CML's; docs/ci.md).
PUBLISH_WITH ?= cml asset publish

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
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
baseline: install
	if dvc remote default >/dev/null 2>&1; then dvc push; fi
	cml pr create --squash --skip-ci --title "Baseline results of $$(git rev-parse --short HEAD)" \
		--message "Baseline results of $$(git rev-parse --short HEAD)" dvc.lock reports

# Every benchmark, on real data: make benchmark SOURCE=path/to/cifar-10-python.tar.gz
benchmark: install
	$(if $(SOURCE),,$(error set SOURCE to a CIFAR-10 archive or image folder))
	python -m benchmarks.run_all --source $(SOURCE)

# Re-pin requirements.txt after editing pyproject.toml's dependencies.
lock:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.in
	(echo "# Generated from requirements.in by: make lock"; $(BIN)/pip freeze --exclude-editable) > requirements.txt
