# Two entry points on a fresh machine: `make repro` (the whole pipeline) and `make test`.
# Both create .venv and install the project into it first (once; again when pyproject.toml changes).
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
# TensorFlow's C++ log: warnings and errors only
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: repro repro-offline test install

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

repro: install
	dvc repro

# No network: the local MNIST copy as the mirror and the seeded random stand-in backbone at 75 px,
# as a DVC experiment (`dvc exp show` lists it; its params stay in the workspace until `git checkout params.yaml`).
# The head params are the winner of the README's queued sweep (chosen by validation accuracy on the stand-in's features).
MNIST ?= ../shared/mnist
OFFLINE_HEAD := -S train.hidden_units=512 -S train.dropout=0.5 -S train.label_smoothing=0.1 \
	-S train.batch_size=1024 -S train.epochs=60 -S train.patience=10
repro-offline: install
	dvc exp run -S 'data.mirrors=["$(abspath $(MNIST))"]' -S backbone.source=keras \
		-S backbone.weights=random -S backbone.image_size=75 $(OFFLINE_HEAD)

test: install
	python -m pytest
