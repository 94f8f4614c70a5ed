# Two entry points on a fresh machine: `make repro` (the whole pipeline) and `make test`.
# Both create .venv and install the project into it first (once; again when pyproject.toml changes).
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)

.PHONY: repro test install

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

repro: install
	dvc repro

test: install
	python -m pytest
