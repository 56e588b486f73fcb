# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8050

.PHONY: run worker test install install-dev system-deps bench demo clean

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

# Debian's Chromium for the browser tests (never `playwright install`: no downloads at test time) and Debian's
# redis-server for the scale-out tests (they start their own on a free port); each only when missing.
system-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi

run: install
	HOST=$(HOST) PORT=$(PORT) $(PY) app.py

# A Celery worker of the scale-out mode (README "Production layout"): same code and SMILESCOPE_REDIS_URL as the
# web app; start as many as wanted, on any machine that reaches Redis.
WORKER_CONCURRENCY ?= 2
worker: install
	@test -n "$$SMILESCOPE_REDIS_URL" || { echo "set SMILESCOPE_REDIS_URL, e.g. redis://127.0.0.1:6379/0" >&2; exit 2; }
	$(PY) -m celery -A components.scaleout.worker:celery_app worker --loglevel=INFO \
	  --concurrency=$(WORKER_CONCURRENCY) --without-gossip --without-mingle

test: install-dev system-deps
	$(PY) -m pytest -q

# Speed and accuracy against the reference libraries, printed side by side (figures for the issue notes).
bench: install-dev system-deps
	$(PY) benchmarks/bench_iv.py
	$(PY) benchmarks/bench_iv_cli.py
	$(PY) benchmarks/bench_slices.py
	$(PY) benchmarks/bench_heston.py
	$(PY) benchmarks/bench_dashboard.py
	$(PY) benchmarks/bench_backtest.py
	$(PY) benchmarks/bench_scaleout.py

demo: install
	$(PY) -m calibration demo

clean:
	rm -rf $(VENV) .cache .pytest_cache tests/artifacts
