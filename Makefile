# geossl: `make demo` (pretrain + evaluate on the built-in EuroSAT sample) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO_RUN ?= runs/demo
DEMO_EPOCHS ?= 15

.PHONY: demo test install install-test clean-demo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

demo: $(VENV)/.installed
	@start=$$(date +%s); \
	$(BIN)/geossl pretrain --method simclr --data eurosat-sample --epochs $(DEMO_EPOCHS) --batch-size 128 --run-dir $(DEMO_RUN) && \
	$(BIN)/geossl evaluate $(DEMO_RUN) --protocol knn,linear --with-baseline && \
	echo "demo took $$(( $$(date +%s) - start )) s (pretraining + evaluation)"

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

clean-demo:
	rm -rf $(DEMO_RUN)
