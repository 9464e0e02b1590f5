# Two commands from a fresh clone: `make demo` runs the demo study, `make test` runs the tests.
# Both create a local virtual environment in .venv the first time.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# PyTorch's OpenMP threads spin while idle unless told not to: many times slower on a small shared CPU.
export OMP_WAIT_POLICY ?= PASSIVE
# pytest-xdist workers for `make test`: one per core of CI's 2-core machine. --dist loadfile keeps a module on one
# worker, so its module fixtures are built once (xdist_group marks are not honoured with pytest 9.2 + xdist 3.8).
# --no-loadscope-reorder: modules start in collection order, longest first (tests/conftest.py SLOW_FIRST); xdist's
# default sorts them by their number of tests, which started the longest modules (few, slow tests) last.
TEST_WORKERS ?= 2

.PHONY: demo test install clean-venv

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,ray,cleanlab,teach]'
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (nbstudy)" > /dev/null
	touch $@

demo: install
	$(VENV)/bin/nbstudy study parameters/demo.yaml --jobs 2

test: install
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15

clean-venv:
	rm -rf $(VENV)
