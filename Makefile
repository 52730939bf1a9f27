# One entry point for set-up, the demo and the tests. Every target creates .venv when missing.
# CPU machines get the CPU build of torch pinned below; to use your own (CUDA) torch, install it
# into .venv first (see README): the set-up keeps any torch that is already there.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_CPU := torch==2.13.0
DATA ?= ../shared/data
DEMO_DIR ?= runs/demo

.PHONY: demo test lint bench-data bench reproduce gpu-check clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet $(TORCH_CPU)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# The main job: shard the WMT'14 sample (first time only), train `small` with 2 processes for
# DEMO_MINUTES, then score it on the first DEMO_SENTENCES of newstest2014.
DEMO_MINUTES ?= 4
DEMO_SENTENCES ?= 300
demo: $(VENV)/.installed
	$(PY) -m torch.distributed.run --nproc_per_node 2 -m launcher.main s2s --preset small \
	  --run-dir $(DEMO_DIR)/s2s-small --resume never max_minutes=$(DEMO_MINUTES)
	$(PY) -m launcher.main evaluate --checkpoint $(DEMO_DIR)/s2s-small --beam 2 --limit $(DEMO_SENTENCES) \
	  --src $(DATA)/wmt14-en-fr/newstest2014-sgm/newstest2014-fren-src.en.sgm \
	  --ref $(DATA)/wmt14-en-fr/newstest2014-sgm/newstest2014-fren-ref.fr.sgm

test: $(VENV)/.installed
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(PY) -m ruff check .

bench-data: $(VENV)/.installed
	$(PY) -m launcher.main bench data

# docs/PERFORMANCE.md: every benchmark in one run (about 25 minutes on 2 CPU cores)
bench: $(VENV)/.installed
	$(PY) -m launcher.main bench all

# docs/REPRODUCTION.md: the papers' ablations at small scale (about 90 minutes on 2 CPU cores with the
# defaults; e.g. REPRODUCE_ARGS="--minutes-per-run 2 --gan-minutes 6 --work-dir runs/reproduce-short" for
# a ~40-minute pass)
REPRODUCE_ARGS ?=
reproduce: $(VENV)/.installed
	$(PY) -m launcher.main reproduce $(REPRODUCE_ARGS)

# GPU acceptance (benchmarks/gpu_check.py): CUDA tests, preflight, benchmarks, fp16, ZeRO-2, the paper layout;
# about 8 minutes on one H100/H200, PASS/FAIL per check. Without a GPU it says so and exits 0. It runs with .venv's
# python when there is one, else python3 (a GPU image's own CUDA torch: nothing is installed).
GPU_PY ?= $(if $(wildcard $(PY)),$(PY),$(PYTHON))
gpu-check:
	$(GPU_PY) benchmarks/gpu_check.py --data-root $(DATA)

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
