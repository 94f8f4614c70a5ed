# Two entry points on a fresh machine: `make repro` (the whole pipeline) and `make test`.
# Both create .venv and install the project into it first (once; again when pyproject.toml changes).
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
# TensorFlow's C++ log: warnings and errors only
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: repro repro-offline demo test test-fast docs docs-serve install

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,docs]'
	touch $@

repro: install
	dvc repro

# No network: the local MNIST copy as the mirror and the offline profile of mnist_transfer/params.py (the seeded
# random stand-in backbone at 75 px and its tuned head), as a DVC experiment (`dvc exp show` lists it; its params
# stay in the workspace until `git checkout params.yaml`).
MNIST ?= ../shared/mnist
repro-offline: install
	dvc exp run $$(python scripts/offline_args.py $(MNIST))

# The five-minute tour: the offline pipeline on 300 digits per class in demo/ (its own git + DVC project), then a
# guide to the report, predict, serve and experiments. This workspace's params.yaml is left as it is.
demo: install
	python scripts/demo.py --mnist $(MNIST)

# Every test, one tier after another (fast, slow, cluster, browser, e2e: markers in pyproject.toml), ending with
# a line of seconds per tier; fails if any tier failed.
test: install
	scripts/test_tiers.sh

# The fast tier alone (unmarked tests, under 2 minutes on 2 cores): what to run every few minutes.
test-fast: install
	python -m pytest -m "not e2e and not browser and not cluster and not slow"

# The docs site (MkDocs + Material + mkdocstrings; builds offline): `make docs` writes site/ and fails on any
# warning, broken links included; `make docs-serve` previews it on http://127.0.0.1:8001/ (8000 is serve's).
docs: install
	NO_MKDOCS_2_WARNING=1 mkdocs build --strict

docs-serve: install
	NO_MKDOCS_2_WARNING=1 mkdocs serve --strict -a 127.0.0.1:8001
