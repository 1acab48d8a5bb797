# Two entry points: `make demo` (profile a handful of subnets on this machine) and `make test`.
# Both create the virtual environment .venv and install the package on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test clean-venv

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/ofa-latency profile --space ofa_mbv3_w1.2 --backend onnxruntime --threads 1 \
		--n 5 --seed 0 --out runs/demo.csv

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

clean-venv:
	rm -rf $(VENV)
