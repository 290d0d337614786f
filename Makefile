# The two commands: `make run` and `make test`. Everything else is a convenience.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install install-dev run test lint format bench worker clean screenshots

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.runtime: $(BIN)/python requirements.txt requirements-nodeps.txt
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -r requirements-nodeps.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.runtime
install-dev: $(VENV)/.dev

run: install
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py migrate --noinput
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py seed_demo --base-url http://$(HOST):$(PORT)
	# Uvicorn with timeouts and limits (glassbox/serve.py; README "Deploying" lists them)
	DEBUG=$${DEBUG:-1} HOST=$(HOST) PORT=$(PORT) MALLOC_ARENA_MAX=$${MALLOC_ARENA_MAX:-2} \
		$(BIN)/python -m glassbox.serve

test: install-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# mypy runs with DEBUG=1: the django-stubs plugin imports the settings, which refuse DEBUG=0
# without production secrets, and type checking needs none of them.
lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DEBUG=1 $(BIN)/mypy

format: install-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Density bench (issue #15): the server as `make run` serves it (glassbox/serve.py), pinned
# to one core; 3 turns per call with every call's turn ending at once (--burst), py-spy CPU
# by part; then steady load with CPU per talking call and 1,000 sequential calls for
# memory; then the media-route micro-bench (issue #4). ~25 minutes on 2 cores. Results in
# bench/results/$(BENCH_NAME)*.json; see docs/benchmarks.md. Extra flags: BENCH_ARGS=...
# Compare with another tree in the same run: BENCH_ARGS="--trees before=/path/to/old:uvloop
# after=."
BENCH_NAME ?= latest
BENCH_ARGS ?=
bench: install-dev
	$(BIN)/python -m bench.loadtest --name $(BENCH_NAME) --servers serve --n 1 25 60 100 150 \
		--turns 3 --burst --profile $(BENCH_ARGS)
	$(BIN)/python -m bench.loadtest --name $(BENCH_NAME)-steady --servers serve --n 25 60 100 \
		--turns 3 --memory-calls 1000 --memory-lanes 25 $(BENCH_ARGS)
	$(BIN)/python -m bench.media_route

# Dashboard screenshots for the docs (needs Debian's chromium: apt-get install chromium).
screenshots: install-dev
	GLASSBOX_SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest tests/browser/test_screenshots.py -q

worker: install
	$(BIN)/celery -A glassbox worker -l info

clean:
	rm -rf $(VENV) var staticfiles
