# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8050

.PHONY: run test install install-dev system-deps bench demo clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Re-install only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# Debian's Chromium for the browser tests (never `playwright install`: no downloads at test time).
system-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian chromium"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

run: install
	HOST=$(HOST) PORT=$(PORT) $(PY) app.py

test: install-dev system-deps
	$(PY) -m pytest -q

# Speed and accuracy against the reference libraries, printed side by side (figures for the issue notes).
bench: install-dev system-deps
	$(PY) benchmarks/bench_iv.py
	$(PY) benchmarks/bench_iv_cli.py
	$(PY) benchmarks/bench_slices.py
	$(PY) benchmarks/bench_heston.py
	$(PY) benchmarks/bench_dashboard.py

demo: install
	$(PY) -m calibration demo

clean:
	rm -rf $(VENV) .cache .pytest_cache tests/artifacts
