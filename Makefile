# Two commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv demo test lint bench gpu-check lock sample clean browser

LOCK   := requirements.lock

# Installs the exact versions of requirements.lock, then cxrlab itself: the same commit
# installs the same packages next month.
$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e '.[dev]'
	touch $(STAMP)

# Refresh requirements.lock from pyproject.toml's ranges in a fresh virtual environment.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet -e '.[dev]'
	(echo "# Exact versions \`make\` installs (pyproject.toml holds the ranges). Refresh with \`make lock\`."; \
	 .lock-venv/bin/python -m pip freeze --exclude-editable) > $(LOCK)
	rm -rf .lock-venv

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/cxrlab demo

test: $(STAMP) browser
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/python -m pytest -q

# Headless Chromium (Debian's package) renders the HTML report in a test; the test
# skips, with this reason in its summary, where it cannot be installed.
browser:
	@command -v chromium >/dev/null 2>&1 || \
	  (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1)) || \
	  echo "warning: could not install chromium (apt-get as root); the report's browser test will be skipped"

lint: $(STAMP)
	$(BIN)/ruff check --fix src tests benchmarks scripts
	$(BIN)/ruff format src tests benchmarks scripts

# SCALE_N: images of bench_scale's synthetic source tree (its baseline: SCALE_N/10);
# BENCH: run only these benchmarks, e.g. `make bench BENCH=scale SCALE_N=3000`.
SCALE_N ?= 30000
BENCH   ?=
bench: $(STAMP)
	SCALE_N=$(SCALE_N) $(BIN)/python benchmarks/run_all.py $(BENCH)

# On a machine with a CUDA GPU, every speed figure in under 8 minutes (--dry: tiny, on CPU).
gpu-check: $(STAMP)
	$(BIN)/python benchmarks/gpu_check.py --out gpu-check.json

# Rebuild the bundled sample from a local copy of the ieee8023 collection.
sample: $(STAMP)
	$(BIN)/python scripts/make_sample.py --source ../shared/data/ieee8023-2020-06 --out src/cxrlab/assets/sample

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .ruff_cache
