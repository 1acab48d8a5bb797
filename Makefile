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

# the environment takes about 8 GB (PyTorch's CUDA build among it)
NEED_GB ?= 9

$(VENV)/.installed: setup.cfg setup.py pyproject.toml
	@free_gb=$$(df -Pk . | awk 'NR==2 {print int($$4 / 1048576)}'); \
	if [ "$$free_gb" -lt $(NEED_GB) ]; then \
	  echo "warning: $$free_gb GB free on this disk; the environment needs about 8 GB" \
	       "(PyTorch's CUDA build): pip may stop with 'No space left on device'" >&2; fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,openvino,litert,fleet]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/ofa-latency demo --out runs/demo $(if $(wildcard $(ACC_PREDICTOR)),--accuracy-predictor $(ACC_PREDICTOR))

test: $(VENV)/.installed
	OFA_LATENCY_SHARED_DATA=$(SHARED_DATA) $(BIN)/python -m pytest -q --durations=10

clean-venv:
	rm -rf $(VENV)
