# The two commands of the README. `make test` is also exactly what CI runs (.ci/run).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: test deps venv lint unit demo

# Install what the tests need (Debian's mosquitto, influxdb, socat, mbpoll; the Python test extras), then run the
# linters and the whole suite, integration tests included.
test: deps venv lint
	$(BIN)/pytest

deps:
	bash deploy/install-test-deps.sh

venv:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'

lint:
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

# Unit tests only: no services needed.
unit: venv
	$(BIN)/pytest -m "not integration"

demo: venv
	$(BIN)/sinkwatch demo --duration 30
