# Two entry points: `make demo` (the whole path on this machine: profile, fine-tune, search,
# verify, export; a few minutes) and `make test`.
# Both create the virtual environment .venv and install the package on first use.
PYTHON ?= python3
# public reference data beside this checkout (HELP, OFA's LUT and accuracy predictor), passed
# to the tests explicitly; tests that need it skip where it is absent
SHARED_DATA ?= $(abspath ../shared/data)
ACC_PREDICTOR ?= $(SHARED_DATA)/ofa_acc_predictor/acc_predictor.pth
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test clean-venv

$(VENV)/.installed: setup.cfg setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,openvino,litert,fleet]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/ofa-latency demo --out runs/demo $(if $(wildcard $(ACC_PREDICTOR)),--accuracy-predictor $(ACC_PREDICTOR))

test: $(VENV)/.installed
	OFA_LATENCY_SHARED_DATA=$(SHARED_DATA) $(BIN)/python -m pytest -q

clean-venv:
	rm -rf $(VENV)
