# Set-up, main job and tests for twostream. `make demo` and `make test` are the README's two commands.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
WORKDIR ?= runs/demo

.PHONY: setup system-deps demo lint typecheck check test test-random bench mutants image docker-test clean

setup: $(STAMP)

# Re-runs only when a requirement changes; Horovod's wheel is cached per TensorFlow version (scripts/build_horovod.sh).
$(STAMP): requirements.txt requirements-dev.txt setup.cfg scripts/build_horovod.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip setuptools wheel
	# opencv-contrib-python-headless replaced the plain wheel: both share cv2/, so an older venv's plain one goes first.
	$(PY) -m pip uninstall --quiet --yes opencv-python-headless
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	PY=$(PY) scripts/build_horovod.sh
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(VENV)/bin/horovodrun --check-build
	touch $@

# The main job: synthesise a motion-defined dataset, precompute its flow, train, evaluate on held-out videos, export.
demo: setup
	$(VENV)/bin/twostream synth $(WORKDIR)/videos
	$(VENV)/bin/twostream prepare --preset demo --data $(WORKDIR)/videos --set data.flow_cache_dir=$(WORKDIR)/flow_cache
	$(VENV)/bin/twostream train --preset demo --data $(WORKDIR)/videos --workdir $(WORKDIR) \
		--set data.flow_cache_dir=$(WORKDIR)/flow_cache
	$(VENV)/bin/twostream evaluate --workdir $(WORKDIR)

# Lint, import order and format of the whole tree (ruff; rules in pyproject.toml).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Types of the product's code (mypy; pyproject.toml [tool.mypy]), checked as the installed namespace twostream.*.
typecheck: setup
	mkdir -p build/typecheck/twostream && touch build/typecheck/twostream/__init__.py
	for folder in data trainer models launch; do ln -sfn ../../../$$folder build/typecheck/twostream/$$folder; done
	$(VENV)/bin/mypy -p twostream

# The inner loop: lint, types, and the tests that start no TensorFlow process. On PYTHONPATH, tests/helpers/no_tensorflow
# makes any process that imports TensorFlow fail, naming the marker its test module lacks.
check: lint typecheck
	TWOSTREAM_CHECK=1 PYTHONPATH=$(CURDIR)/tests/helpers/no_tensorflow $(PY) -m pytest tests -m "not tensorflow" -q

# The Debian packages of the tests' real daemons (SLURM, munge, iproute2), installed before any test runs.
system-deps:
	scripts/test_system_deps.sh

# Two pytest workers, each test module kept on one (its module fixtures built once), modules handed out in the order
# tests/conftest.py puts them (the longest first; xdist's default reorders by test count, which put them last).
test: setup system-deps
	$(PY) -m pytest tests -n 2 --dist loadfile --no-loadscope-reorder

# The suite in a random order of modules and of the tests in each (pytest-random-order; SEED=N repeats an order).
test-random: setup system-deps
	$(PY) -m pytest tests --random-order-bucket=module $(if $(SEED),--random-order-seed=$(SEED))

# Mutation testing of the pure modules with their fast tests (scripts/mutants.sh; MODULES=data/distributed/sharding.py for one).
mutants: setup
	scripts/mutants.sh $(MODULES)

# The Dockerfile built for real by a private Docker daemon on a Debian base (root; scripts/docker_image.sh):
# 14 min cold here (Horovod's compile), under a minute once the daemon's layer cache holds it.
image:
	scripts/docker_image.sh image

# That image run as the MPI operator runs a `twostream launch k8s` job's pods, on a network-namespace bed
# (tests/test_docker_image.py, scripts/docker_mpijob.sh): 2 ranks on 2 worker pods, then a SIGTERM stop.
docker-test: setup
	TWOSTREAM_DOCKER=1 $(PY) -m pytest tests/test_docker_image.py -v

bench: setup
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) runs .pytest_cache
