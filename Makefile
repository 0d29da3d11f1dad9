# Two set-up commands on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench docs clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/miso-xr demo

lint: $(STAMP)
	$(BIN)/ruff check miso_xr tests benchmarks examples
	$(BIN)/ruff format --check miso_xr tests benchmarks examples

test: $(STAMP) lint
	$(BIN)/python -m pytest -q -ra

# the site under site/: the notebook gallery executed (docs/gallery.py), then MkDocs
DOCS_STAMP := $(VENV)/.installed-docs
$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test,docs]"
	touch $(DOCS_STAMP)

# GALLERY=--quick executes the notebooks on CI's small settings (minutes instead of tens of them)
GALLERY ?=
docs: $(DOCS_STAMP)
	$(BIN)/python docs/gallery.py $(GALLERY)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_cube.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache miso_demo site docs/gallery
