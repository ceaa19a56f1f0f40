# One obvious command per task. `serve` and `test` create the virtual environment when it is
# missing and reinstall the project whenever pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test lint openapi bench load clean docker-smoke

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

# The generated-client and /docs tests need node packages and a browser: `npm ci` whenever the
# lock changes, and Debian's chromium when it is missing (apt-get, so as root, as CI runs).
TS_CLIENT := tests/clients/ts
TS_STAMP := $(TS_CLIENT)/node_modules/.installed
CHROMIUM := /usr/bin/chromium

$(TS_STAMP): $(TS_CLIENT)/package-lock.json
	cd $(TS_CLIENT) && npm ci --no-audit --no-fund
	touch $(TS_STAMP)

$(CHROMIUM):
	@[ "$$(id -u)" = 0 ] || { echo "tests/test_docs.py needs Debian's chromium: sudo apt-get install -y chromium" >&2; exit 1; }
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium

serve: $(STAMP)
	$(BIN)/lossd serve

test: $(STAMP) $(TS_STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check service tests
	$(BIN)/ruff format --check service
	$(BIN)/mypy --strict service

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

# 64 clients for 60 s, mixed losses, sizes and encodings, every answer checked against the
# references; fails on any error, wrong answer or RSS growth of 10% (benchmarks/load.py).
load: $(STAMP)
	$(BIN)/python -m benchmarks.load --clients 64 --duration 60

openapi: $(STAMP)
	$(BIN)/lossd openapi > openapi/openapi.json

# Build the image from the Dockerfile with podman and run it read-only: healthy, one right answer,
# every kernel from the baked cache, exit 0 on SIGTERM. Needs root (installs podman when missing);
# independent of the venv.
docker-smoke:
	scripts/docker-smoke.sh

clean:
	rm -rf $(VENV)
