# The README's two commands: `make demo` and `make test`. Both create or reuse .venv.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install test test-all demo parity bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	rm -f $(VENV)/.installed-*; touch $(STAMP)

install: $(STAMP)

## Fast test suite (slow tests excluded); what CI runs. TEST_JOBS worker processes (pytest-xdist), one test file
## per worker at a time (module fixtures are built once); TEST_JOBS=0 runs everything in this process.
TEST_JOBS ?= 2
test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" -n $(TEST_JOBS) --dist loadfile tests

## Everything, slow tests included.
test-all: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_JOBS) --dist loadfile tests

## Demo: MLIP's reference outputs recomputed by mtpjax and compared digit by digit (when ../shared is there), then
## the quickstart study: generate -> fit -> verify -> report (demo_out/quickstart/report.md; ~3 min on 2 cores from a fresh clone, install included).
SHARED ?= ../shared
demo: $(STAMP)
	@mkdir -p demo_out
	@if [ -d $(SHARED)/golden ]; then $(MAKE) --no-print-directory parity; else echo "($(SHARED) absent: MLIP parity check skipped)"; fi
	$(VENV)/bin/mtpjax run configs/quickstart.toml --out demo_out/quickstart
	@echo "report: demo_out/quickstart/report.md"

parity: $(STAMP)
	@mkdir -p demo_out
	$(VENV)/bin/mtpjax efs $(SHARED)/golden/mlip/pub_l16_s1_rc6p5.almtp $(SHARED)/golden/mlip/pub_l16_s1_rc6p5_in.cfg demo_out/golden_l16.cfg
	$(PY) scripts/compare_cfg.py demo_out/golden_l16.cfg $(SHARED)/golden/mlip/pub_l16_s1_rc6p5_out.cfg
	$(VENV)/bin/mtpjax efs $(SHARED)/bench/fit/mlip3_l16_rc6p5.almtp $(SHARED)/bench/fit/test.cfg demo_out/mlip3_test.cfg
	$(PY) scripts/compare_cfg.py demo_out/mlip3_test.cfg $(SHARED)/bench/fit/test_mlip3_efs.cfg

## Speed benchmark against motep (writes docs/benchmarks/efs.md).
bench: $(STAMP)
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) scripts/bench_efs.py --out docs/benchmarks/efs.md

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info demo_out
