# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
LLAMAMAN_NODE_NAME ?= srv1

.PHONY: run test test-unit test-integration test-e2e lint bench venv

$(VENV)/.runtime-stamp: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements.txt
	touch $@

venv: $(VENV)/.runtime-stamp

# Serve the UI/API on :5000 and the Ollama/OpenAI API on :42069 with JSON storage in ./data.
run: venv
	LLAMAMAN_NODE_NAME=$(LLAMAMAN_NODE_NAME) $(VENV)/bin/python app.py

# Provision the real test environment (root; idempotent) and run every test tier.
test:
	bash scripts/test.sh $(ARGS)

# One tier each (provisioning runs as for `make test`; it is fast when warm).
# Unit: pure logic, no sockets or processes. Integration: real components. E2E: the whole app.
test-unit:
	bash scripts/test.sh tests/unit $(ARGS)

test-integration:
	bash scripts/test.sh tests/integration $(ARGS)

test-e2e:
	bash scripts/test.sh tests/e2e $(ARGS)

lint:
	$(VENV)/bin/ruff check llamaman tests bench app.py gunicorn.conf.py

bench:
	$(VENV)/bin/python bench/http_baseline.py
