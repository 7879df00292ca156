# The two commands of the README: `make demo` and `make test`. Each sets up .venv from the pinned requirements.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
export nnUNet_compile := f

.PHONY: demo test benchmark clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

demo: $(VENV)/.installed
	$(PY) -m pipeline demo
	$(PY) app.py

test: $(VENV)/.installed
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver)
	$(VENV)/bin/ruff check app.py qa_dashboard pipeline benchmarks tests
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q tests

benchmark: $(VENV)/.installed
	$(PY) -m benchmarks.metric_suite

clean:
	rm -rf $(VENV) var
