# The commands a person types. `make test` and `make serve` do all the set-up themselves.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Exact versions for the local environment; pyproject.toml keeps ranges for other images.
TORCH_PINS := torch==2.14.1 torchaudio==2.11.0
EXTRAS := serve,train,dev
STAMP := $(VENV)/.installed
# Debian packages, installed only when one is missing (needs root, as on CI):
# recorded speech (asterisk prompts, klettres letters), speech synthesisers in several
# languages and sox for the corpus, chromium for the demo page test.
RECORDED_SPEECH := $(foreach l,en es fr it ru,asterisk-core-sounds-$(l)-g722) klettres-data
SYNTHETIC_VOICES := flite festival festvox-kallpc16k festvox-us-slt-hts festvox-czech-dita \
	festvox-suopuhe-mv festvox-suopuhe-lj festvox-italp16k festvox-itapc16k festvox-ru \
	festvox-ca-ona-hts
DEBIAN_PACKAGES := $(RECORDED_SPEECH) $(SYNTHETIC_VOICES) sox chromium
MODEL ?= models/default/student

.PHONY: install system-packages test lint format serve clean

install: system-packages $(STAMP)

system-packages:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# Re-installs only when the dependency list or this file changes.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check $(TORCH_PINS) numpy 2>&1 | { grep -v "is ignored" || true; }
	$(BIN)/python -c "import torch, torchaudio"
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[$(EXTRAS)]" $(TORCH_PINS) 2>&1 | { grep -v "is ignored" || true; }
	$(BIN)/python -c "import wavenet"
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

serve: install
	$(BIN)/wavenet serve --model $(MODEL)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
