# The two commands of the README. `make test` is also exactly what CI runs (.ci/run).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: test deps venv bytecode lint unit demo lock

# Install what the tests need (Debian's mosquitto, influxdb, socat, mbpoll; the Python test extras), then run the
# linters and the whole suite, integration tests included.
# Three workers (`-n 3`, work stealing for the few long end-to-end tests) on CI's two cores: much of the suite's time
# is spent waiting on real brokers, databases, serial lines and the demo's clock, and a third worker fills those
# waits (8 % faster than two on a quiet 2-core machine; docs/reliability.md, "Suite time"). The VictoriaMetrics
# failure three workers first brought out was a real bug, fixed (same file).
# The linters run beside the suite, not before it: the suite leaves about a fifth of two cores idle while it waits on
# services, and mypy's cold run (a fresh clone has no cache) fills it instead of adding a minute and a half in front.
# Their output is shown after the suite's; either failing fails `make test`.
test: deps venv bytecode
	$(MAKE) --no-print-directory lint > $(VENV)/lint.log 2>&1 & linting=$$!; \
	$(BIN)/pytest -n 3 --dist worksteal --durations=25; tested=$$?; \
	wait $$linting; linted=$$?; \
	echo "--- make lint (ran beside the suite) ---"; cat $(VENV)/lint.log; \
	if [ $$linted -ne 0 ]; then echo "make lint failed (its output above)"; fi; \
	[ $$tested -eq 0 ] && [ $$linted -eq 0 ]

deps:
	bash deploy/install-test-deps.sh

# pip compiles every installed module to bytecode here (half of this step's time). Not skipped: where Python may not
# write bytecode itself (PYTHONDONTWRITEBYTECODE is set on this project's VM), every interpreter the suite starts would
# compile numpy, scipy, pydantic and the rest again from source.
venv:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]' -c requirements/ci.lock

# Our own modules compiled once, in parallel, before the suite: where Python does not write bytecode itself
# (PYTHONDONTWRITEBYTECODE) each of the hundreds of interpreters the suite starts (the CLI, daemons, workers) would
# otherwise compile them again (0.3-0.5 s of CPU each for the central and station imports on this VM). It still
# reads bytecode that is there and up to date.
bytecode: venv
	$(BIN)/python -m compileall -q -j 0 gateway drivers firmware_bridge tests bench

lint:
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

# Unit tests only: no services needed.
unit: venv
	$(BIN)/pytest -m "not integration"

demo: venv
	$(BIN)/sinkwatch demo --duration 30

# Regenerate requirements/ci.lock (every package the test extra resolves to, pinned) after changing dependencies in
# pyproject.toml; uv runs from a throwaway venv and is not a dependency of the project.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv && .lock-venv/bin/pip install --quiet uv==0.13.8
	.lock-venv/bin/uv pip compile pyproject.toml --extra test --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 --custom-compile-command "make lock" -o requirements/ci.lock
	rm -rf .lock-venv
