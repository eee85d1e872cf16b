# The two commands of the README: `make demo` (main job, end to end) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

$(STAMP): setup.py setup.cfg constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) tools/demo.py --out runs/demo

# two test processes: the tests run single-threaded, so they use both cores; a file's tests stay in one
# process (its module fixtures run once)
test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile tests

clean:
	rm -rf $(VENV) runs
