# Two commands for a newcomer:  `make run` (set up + start the station)  and  `make test`.
# Both create the virtual environment when it is missing, and refresh it when pyproject.toml changes.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch pinned to the build this project is developed and tested with; override for another build,
# e.g. TORCH_SPEC="torch==2.14.1 torchvision==0.29.1 --index-url <your CPU wheel index>".
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed

.PHONY: run test setup lint bench clean-venv

# A new environment takes about 7 GiB (torch and its CUDA libraries): said plainly up front, not as
# pip's "No space left on device" half-way through an install.
define NEED_SPACE
import os, shutil, sys
venv = os.path.abspath(sys.argv[1])
parent = os.path.dirname(venv)
while not os.path.isdir(parent):  # the folders venv creates on its way
    parent = os.path.dirname(parent)
need = 8.0
free = shutil.disk_usage(parent).free / 2**30
if free < need:
    sys.exit(
        f"setting up {venv} needs about {need:.0f} GiB free on its disk (torch and its CUDA "
        f"libraries take about 7), found {free:.1f} GiB: free some space there, or give another "
        "folder, e.g. make VENV=/bigdisk/station-venv test"
    )
endef
export NEED_SPACE

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is needed, found " + sys.version.split()[0]'
	@test -x $(PY) || $(PYTHON) -c "$$NEED_SPACE" $(VENV)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e '.[dev,postgres]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/station run --demo

# One worker per core (pytest-xdist); a file's tests stay together on one worker, so the scratch
# PostgreSQL database and a file's shared fixtures are used by one process at a time.
# 16.5 minutes on one process on the 2-core development machine, 10.6 on two.
test: $(STAMP)
	$(PY) -m pytest -n auto --dist loadfile

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy db model review station

clean-venv:
	rm -rf $(VENV)
