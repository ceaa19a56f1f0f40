# One obvious command per task. `serve` and `test` create the virtual environment when it is
# missing and reinstall the project whenever pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# `serve` needs only the service's own dependencies (tens of MB, seconds to install), not the
# test and benchmark ones (torch, keras, xgboost: over 1 GB, minutes): a first `make serve`
# answers sooner. Everything else installs both, and satisfies `serve` with it.
SERVE_STAMP := $(VENV)/.installed-serve

.PHONY: serve test test-loss lint openapi docs proto bench bench-scale bench-peers load clean docker-smoke vendor screenshots

$(SERVE_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(SERVE_STAMP)

# The Python client (clients/python) is a package of its own, installed editable beside the
# service, with its dask extra (tests/test_dask.py): the tests and benchmarks import it as users
# do, from the working tree. (A
# `lossd-client @ file:...` requirement in pyproject.toml would need an absolute path.)
$(STAMP): pyproject.toml clients/python/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]' -e 'clients/python[dask]'
	touch $(STAMP) $(SERVE_STAMP)

# The generated-client and /docs tests need node packages and a browser: `npm ci` of the
# TypeScript package (clients/typescript: its generator and compiler serve the tests too) whenever
# its lock changes, and Debian's chromium when it is missing (apt-get, so as root, as CI runs).
TS_CLIENT := clients/typescript
TS_STAMP := $(TS_CLIENT)/node_modules/.installed
CHROMIUM := /usr/bin/chromium

$(TS_STAMP): $(TS_CLIENT)/package-lock.json
	cd $(TS_CLIENT) && npm ci --no-audit --no-fund
	touch $(TS_STAMP)

# The explorer page's plotting library, uPlot, pinned in explorer/package-lock.json: `make vendor`
# copies the locked version's files into the package (service/explorer/static/vendor, committed,
# so the service needs no node to run); tests/test_explorer.py checks that the copy is that
# version's, byte for byte, against this install.
EXPLORER_STAMP := explorer/node_modules/.installed
UPLOT := explorer/node_modules/uplot
VENDOR := service/explorer/static/vendor

$(EXPLORER_STAMP): explorer/package-lock.json
	cd explorer && npm ci --no-audit --no-fund
	touch $(EXPLORER_STAMP)

vendor: $(EXPLORER_STAMP)
	mkdir -p $(VENDOR)
	cp $(UPLOT)/dist/uPlot.iife.min.js $(UPLOT)/dist/uPlot.min.css $(VENDOR)/
	cp $(UPLOT)/LICENSE $(VENDOR)/uPlot.LICENSE

$(CHROMIUM):
	@[ "$$(id -u)" = 0 ] || { echo "tests/test_docs.py needs Debian's chromium: sudo apt-get install -y chromium" >&2; exit 1; }
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium

# tests/test_nginx.py runs deploy/nginx's template in front of lossd processes with Debian's
# nginx, installed when missing (apt-get, so as root, as CI runs). Its service is not started:
# the tests run their own nginx, a foreground process on a free port.
NGINX := /usr/sbin/nginx

$(NGINX):
	@[ "$$(id -u)" = 0 ] || { echo "tests/test_nginx.py needs Debian's nginx: sudo apt-get install -y nginx" >&2; exit 1; }
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx
	-invoke-rc.d nginx stop >/dev/null 2>&1

serve: $(SERVE_STAMP)
	$(BIN)/lossd serve

test: $(STAMP) $(TS_STAMP) $(EXPLORER_STAMP) $(CHROMIUM) $(NGINX)
	$(BIN)/python -m pytest

# docs/explorer/*.png, the README's pictures of the explorer: the curves of each loss family and
# the files' results, taken in headless chromium by the browser tests that check their numbers.
screenshots: $(STAMP) $(CHROMIUM)
	LOSSD_EXPLORER_SCREENSHOTS=docs/explorer $(BIN)/python -m pytest -q tests/test_explorer.py -k "curves or uploaded"

# Everything one loss needs (a name or an alias): its contract tests, conventions and references,
# e.g. `make test-loss NAME=huber` (tests/conftest.py's --loss option; under a minute when warm).
test-loss: $(STAMP)
	@test -n "$(NAME)" || { echo 'usage: make test-loss NAME=huber' >&2; exit 2; }
	$(BIN)/python -m pytest --loss $(NAME) -q

lint: $(STAMP)
	$(BIN)/ruff check service tests clients/python
	$(BIN)/ruff format --check service clients/python
	$(BIN)/mypy --strict service
	cd clients/python && ../../$(BIN)/mypy --strict lossd_client

# Every section, the peers' included (benchmarks/peers.py: MLServer and FastAPI + PyTorch, each
# installed on first use into its own venv under .bench/peers from benchmarks/peer_servers/*.txt,
# never into .venv), written to docs/benchmarks.md. `make bench-peers` runs that section alone
# (its tables printed, the report left as it is).
bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

# Replicas behind nginx on 127.0.0.1 (deploy/nginx's template, as tests/test_nginx.py runs it):
# req/s and p99 straight to one replica, through nginx to it, and through nginx to two, for
# small and large requests at concurrency 1 and 8, in rounds; what nginx adds. Writes
# docs/scaling.md (README, "Scaling out", gives its figures). About 5 minutes.
bench-scale: $(STAMP) $(NGINX)
	$(BIN)/python -m benchmarks.run --only scale --report docs/scaling.md

bench-peers: $(STAMP)
	$(BIN)/python -m benchmarks.run --only peers

# 64 clients, mixed losses, sizes and encodings, every answer checked against the same batch
# evaluated in-process: 60 s alone, then 60 s beside attackers (slow readers, abandoned requests,
# header trickles, floods of unknown keys: benchmarks/_attack.py) against a server with 2 s header
# and send timeouts. Fails on any error or wrong answer, RSS growth of 10% within a phase, a p99
# latency under attack over twice the baseline's, or an attack the server never ended
# (benchmarks/load.py; --no-attack for the first phase alone).
load: $(STAMP)
	$(BIN)/python -m benchmarks.load --clients 64 --duration 60 --attack

openapi: $(STAMP)
	$(BIN)/lossd openapi > openapi/openapi.json

# The gRPC messages (service/protos/lossd_inference_pb2.py) from their .proto, by grpcio-tools'
# protoc; tests/test_grpc.py fails when the committed file drifts. The generated protobuf runtime
# check pins pyproject.toml's protobuf to that protoc's version or newer.
proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -Iservice/protos --python_out=service/protos service/protos/lossd_inference.proto

# docs/losses.md from the registry (service/catalogue_doc.py); tests/test_losses_doc.py fails
# when it drifts. Written through a temporary file so that a failed run leaves the old one.
docs: $(STAMP)
	$(BIN)/lossd docs > docs/losses.md.tmp
	mv docs/losses.md.tmp docs/losses.md

# Build the image from the Dockerfile with podman and run it read-only: healthy, one right answer,
# every kernel from the baked cache, exit 0 on SIGTERM. Needs root (installs podman when missing);
# independent of the venv.
docker-smoke:
	scripts/docker-smoke.sh

# The venv, and numba's kernel caches that no start will read again: this checkout's keyed
# directories (~/.cache/lossd/numba-<key>) for sources it no longer has, the current one kept
# (`lossd clean-cache`; `lossd clean-cache --all` removes every checkout's, the current one
# too), and the *.nbi/*.nbc files numba wrote under service/ before its cache was keyed. The
# leading `-`: a broken venv, the usual reason for `make clean`, must not stop it.
clean:
	-test ! -x $(BIN)/python || $(BIN)/python -m service clean-cache
	rm -rf $(VENV)
	find service \( -name '*.nbi' -o -name '*.nbc' \) -delete
