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
	$(PY) -m pip install --quiet -e '.[dev,tensorboard]'
	touch $@

# The main job, sized to end within 10 minutes on 2 CPU cores with a model that translates: shard the
# WMT'14 sample (the first time only: 12 s measured), train the `demo` preset (launcher/presets/
# s2s-demo.toml: 1 layer, 6k-word vocabularies, chosen by measurement) with 2 processes for
# DEMO_MINUTES, then score it with beam 2 on the first DEMO_SENTENCES of newstest2014 beside copying
# the source unchanged, and show 3 of its translations beside their references. Measured on 2 cores
# (AMD EPYC) that another job was loading too: 6 min 41 s in all (shards already made), BLEU 5.65
# where copying the source scores 2.68.
# torchrun prints a banner when OMP_NUM_THREADS is unset; the job sets its own threads anyway
# (train.threads, default: the cores / the processes), so setting the variable only silences it.
DEMO_MINUTES ?= 6
DEMO_SENTENCES ?= 300
demo: $(VENV)/.installed
	OMP_NUM_THREADS=1 $(PY) -m torch.distributed.run --nproc_per_node 2 -m launcher.main s2s --preset demo \
	  --run-dir $(DEMO_DIR)/s2s-demo --resume never max_minutes=$(DEMO_MINUTES)
	$(PY) -m launcher.main evaluate --checkpoint $(DEMO_DIR)/s2s-demo --beam 2 --limit $(DEMO_SENTENCES) \
	  --examples 3 --src $(DATA)/wmt14-en-fr/newstest2014-sgm/newstest2014-fren-src.en.sgm \
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

# docs/REPRODUCTION.md: the papers' ablations at small scale (under 2 hours on 2 CPU cores with the
# defaults; REPRODUCE_ARGS="--scale quick --work-dir runs/reproduce-quick" for the ~40-minute study)
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
