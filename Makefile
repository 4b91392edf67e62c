# wsgraph: `make demo` and `make test` each set up .venv when missing, then run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# A CPU build of this torch lies on the development machines' disk; a GPU machine keeps its own torch.
TORCH_PIN ?= torch==2.13.0
WHEEL_CACHE ?= $(HOME)/.cache/wsgraph/wheels
STAMP := $(VENV)/.wsgraph-installed

.PHONY: setup demo test lint format bench scatter clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@if [ ! -x $(PY) ]; then \
	  if $(PYTHON) -c "import torch" 2>/dev/null; then \
	    echo "wsgraph: keeping the torch installed for $(PYTHON)"; \
	    $(PYTHON) -m venv --system-site-packages $(VENV); \
	  else \
	    $(PYTHON) -m venv $(VENV); \
	  fi; \
	fi
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e ".[dev]"
	@tv=$$($(PY) -c "import torch; print(torch.__version__)"); \
	for wheel in $(WHEEL_CACHE)/torch-$$tv/torch_scatter-*.whl; do \
	  [ -f "$$wheel" ] && $(PY) -m pip install -q --no-deps "$$wheel" && echo "wsgraph: installed cached $$wheel"; \
	done; true
	@touch $@

demo: $(STAMP)
	$(PY) -m wsgraph demo

test: $(STAMP)
	$(PY) -m ruff check wsgraph tests examples benchmarks
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check wsgraph tests examples benchmarks
	$(PY) -m ruff format --check wsgraph tests examples benchmarks

format: $(STAMP)
	$(PY) -m ruff format wsgraph tests examples benchmarks
	$(PY) -m ruff check --fix wsgraph tests examples benchmarks

bench: $(STAMP)
	$(PY) benchmarks/bench_convert.py
	$(PY) benchmarks/bench_layers.py

# Optional: build torch-scatter once (about 4 minutes), cache the wheel per torch version, install it.
scatter: $(STAMP)
	@tv=$$($(PY) -c "import torch; print(torch.__version__)"); dir=$(WHEEL_CACHE)/torch-$$tv; \
	ls $$dir/torch_scatter-*.whl >/dev/null 2>&1 || \
	  $(PY) -m pip wheel --no-build-isolation --no-deps torch-scatter -w $$dir; \
	$(PY) -m pip install -q --no-deps $$dir/torch_scatter-*.whl

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
