# segloop: `make demo` and `make test` are the two commands on a fresh machine.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FOOTAGE ?=
DEMO_ARGS := $(if $(FOOTAGE),--footage "$(FOOTAGE)",)

.PHONY: install demo test ui bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/segloop demo $(DEMO_ARGS)

# DB tests run on SQLite and on a throwaway PostgreSQL server on 127.0.0.1 (.ci/postgres.sh starts one;
# without PostgreSQL and outside CI those cases skip with a message).
test: $(STAMP)
	eval "$$(.ci/postgres.sh)"; $(PY) -m pytest $(PYTEST_ARGS)

ui: $(STAMP)
	$(VENV)/bin/segloop ui

bench: $(STAMP)
	$(VENV)/bin/segloop bench ingest

clean:
	rm -rf $(VENV) build dist *.egg-info
