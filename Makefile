# labnotes: two entry points, each sets up its own virtual environment first.
#   make serve   install everything, build the site (English, and Chinese under zh/) and serve it
#                on http://127.0.0.1:8000
#   make test    install everything, then run the whole test suite (offline, CPU)
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.labnotes-installed

.PHONY: install serve build test notebooks clean site-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# A bare torch requirement would pull a multi-GB CUDA build: take the local CPU wheel first.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test,docs,zh]'
	touch $(STAMP)

install: $(STAMP)

test: site-deps
	# Two test processes of one thread each: on a 2-core machine this is about twice as fast as
	# one process, and two processes of two threads each would slow each other down. The tests
	# that need the built site share one process (xdist_group "built-site"), which builds it once.
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --dist loadgroup --durations=25

clean:
	rm -rf $(VENV) site build

# ---- site (owner: site helper) ----------------------------------------------------------
# KaTeX (math) and iframe-worker (search from file://) come from the npm registry at build
# time, pinned by package-lock.json; node_modules/ is never committed.
NODE_STAMP = node_modules/.labnotes-installed
MKDOCS     = NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

# Everything the site and its tests need: the venv, node_modules, and Chromium for the browser tests.
site-deps: install $(NODE_STAMP)
	sh scripts/install_browser.sh

# The English site into site/, then the Chinese edition into site/zh/ (mkdocs.zh.yml; it fails,
# naming page and section, when a translation is missing or stale: `labnotes translations`).
build: install $(NODE_STAMP)
	$(MKDOCS) build --strict
	$(MKDOCS) build --strict -f mkdocs.zh.yml

# Both languages are two mkdocs builds in one folder, so this serves the built folder (run
# `make build` again after editing; `mkdocs serve` still live-reloads the English site alone).
serve: build
	@echo "Serving the site on http://127.0.0.1:8000/ (中文版: http://127.0.0.1:8000/zh/)"
	$(PY) -m http.server --bind 127.0.0.1 --directory site 8000

notebooks: install
	$(PY) scripts/sync_notebooks.py
