# Quick start: `make run` (server with embedded defaults) and `make test` (whole suite).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
DATA    ?= ./var
STAMP   := $(VENV)/.installed
export PYTHONPATH := $(CURDIR)/src:$(CURDIR)

.PHONY: run test images sysdeps venv lint bench clean readme

$(STAMP): setup.cfg setup.py pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel
	$(BIN)/pip install -q -e '.[test]'
	# the editable install does not put twisted/plugins/ on twistd's plugin path
	echo "$(CURDIR)" > "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/sealskin-plugin-dev.pth"
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/twistd --nodaemon --pidfile= sealskin --data-dir $(DATA)

# Debian packages the tests and images need (debootstrap, chromium, ...);
# installs only what is missing, so it is quick on a prepared machine.
sysdeps:
	./images/sysdeps.sh

images: sysdeps
	./images/build.sh

test: $(STAMP) images lint
	$(BIN)/python -m pytest

# Import-linter contracts (layers, independence; setup.cfg) and mypy --strict.
lint: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/mypy src twisted/plugins

readme: $(STAMP)
	$(BIN)/python -m sealskin.config --update-readme README.md

bench: $(STAMP)
	$(BIN)/python bench/api_bench.py

clean:
	rm -rf $(VENV) build *.egg-info
