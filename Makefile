# Targets used by the README quickstart and by .ci/run.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install main test test-fast test-gpu lint clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU wheel first, so that no dependency pulls a multi-GB CUDA build of torch.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

main: install  ## the main job: the default EDF sweep, then its figures and summary tables
	$(VENV)/bin/stability sweep --model vit_c_4gf --optim sgd
	$(VENV)/bin/stability figures --results results --out figures

test: install  ## the whole suite (CI runs this), with its 25 slowest tests
	$(PY) -m pytest -q -ra --durations=25

test-gpu: install  ## the checks that need real CUDA (skipped elsewhere); run on a GPU machine
	$(PY) -m pytest -q -ra -m gpu

test-fast: install
	$(PY) -m pytest -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) results figures
