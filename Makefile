# hamgan: two commands for a newcomer.
#   make train   set up everything, train HamGAN on Fashion-MNIST 32x32 (CPU, minutes), then FID + sample grid
#   make test    set up everything, run the test suite (the command CI runs)
# Set-up is idempotent: a Python venv in .venv, the Fashion-MNIST files and the FID Inception weights.

PYTHON   ?= python3
VENV     ?= .venv
PY       := $(VENV)/bin/python
RUN      ?= runs/fmnist32_hamgan
STEPS    ?= 2000
FID_N    ?= 1000
REF      ?= runs/fmnist32_test_$(FID_N).npz
TORCH_HOME ?= $(HOME)/.cache/torch
FID_WEIGHTS := $(TORCH_HOME)/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth
SHARED_WEIGHTS := ../shared/fid-weights/pt_inception-2015-12-05-6726825d.pth
FMNIST_DEB := /usr/share/datasets/fashion-mnist
export TORCH_HOME

.PHONY: setup data weights train test bench study parity clean

setup: $(VENV)/.installed data weights

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

# Fashion-MNIST from Debian's package when we are root on Debian; otherwise torchvision downloads it on first use.
data:
	@if [ ! -d $(FMNIST_DEB) ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null; fi

# FID weights: a local copy when this checkout sits beside ../shared; otherwise pytorch-fid downloads them.
weights:
	@if [ ! -f $(FID_WEIGHTS) ] && [ -f $(SHARED_WEIGHTS) ]; then \
		mkdir -p $(dir $(FID_WEIGHTS)) && cp $(SHARED_WEIGHTS) $(FID_WEIGHTS); fi

train: setup
	$(PY) -m hamgan.train configs/fmnist32_hamgan.yaml --out $(RUN) --steps $(STEPS)
	@test -f $(REF) || $(PY) -m hamgan.evaluate stats configs/fmnist32_hamgan.yaml data.split=test --n $(FID_N) --out $(REF)
	$(PY) -m hamgan.evaluate fid $(RUN)/ckpt-$$(printf %09d $(STEPS)).pt $(REF) --n $(FID_N) --json | tee $(RUN)/fid.json
	$(PY) -m hamgan.sample $(RUN)/ckpt-$$(printf %09d $(STEPS)).pt --out $(RUN)/samples.png --n 10
	@echo "sample grid: $(RUN)/samples.png  FID: $(RUN)/fid.json  metrics: $(RUN)/metrics.jsonl"

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) scripts/bench_context.py
	$(PY) scripts/bench_train.py
	$(PY) scripts/bench_fid.py

# The issue-5 study (results/fmnist32): 3 models x 3 seeds, FID at 4 points; resumable, ~1.8 h on 2 cores.
study: setup
	$(PY) scripts/reproduce_fmnist.py --models hamgan,sagan,none --seeds 0,1,2 --steps 2000 --n 1000 \
		--ref-n 10000 --checkpoints results/fmnist32/checkpoints

# hamgan's SAGAN against TF-GAN's self_attention_estimator (scripts/check_tfgan_parity.py): TensorFlow lives in a venv
# of its own (TF_VENV, created on first use: minutes), never in hamgan's.
TF_VENV ?= $(HOME)/.cache/hamgan/tf215-venv
parity: setup
	$(PY) scripts/check_tfgan_parity.py --venv $(TF_VENV)

clean:
	rm -rf runs .pytest_cache
