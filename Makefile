# One entry point for set-up, the demo and the tests. Every target creates .venv when missing.
# CPU machines get the CPU build of torch pinned below; to use your own (CUDA) torch, install it
# into .venv first (see README): the set-up keeps any torch that is already there.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_CPU := torch==2.13.0
DATA ?= ../shared/data
DEMO_DIR ?= runs/demo

.PHONY: demo test lint bench-data clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet $(TORCH_CPU)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(PY) -m launcher.main shard-text --overwrite --out $(DEMO_DIR)/wmt14-train \
	  --src $(DATA)/wmt14-en-fr/train-newstest2008-2011-plain/*.en $(DATA)/wmt14-en-fr/train-europarl-v7-head3000/*.en \
	        $(DATA)/wmt14-en-fr/train-giga-fren-head30000/original-split/train.en \
	  --tgt $(DATA)/wmt14-en-fr/train-newstest2008-2011-plain/*.fr $(DATA)/wmt14-en-fr/train-europarl-v7-head3000/*.fr \
	        $(DATA)/wmt14-en-fr/train-giga-fren-head30000/original-split/train.fr
	$(PY) -m launcher.main shard-text --overwrite --out $(DEMO_DIR)/newstest2014 --vocab-from $(DEMO_DIR)/wmt14-train \
	  --max-len 1000 --max-len-ratio 1000 \
	  --src $(DATA)/wmt14-en-fr/newstest2014-sgm/newstest2014-fren-src.en.sgm \
	  --tgt $(DATA)/wmt14-en-fr/newstest2014-sgm/newstest2014-fren-ref.fr.sgm
	$(PY) -m launcher.main shard-images --overwrite --out $(DEMO_DIR)/mnist-train \
	  --input $(DATA)/mnist/train-images-idx3-ubyte.gz
	@echo "demo shards are in $(DEMO_DIR)/"

test: $(VENV)/.installed
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(PY) -m ruff check .

bench-data: $(VENV)/.installed
	$(PY) -m launcher.main bench data

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
