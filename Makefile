# The two commands a user needs: `make demo` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCHREC_CPU_DEPS := fbgemm-gpu-cpu==1.9.0 tensordict torchmetrics==1.0.3 pyre-extensions

.PHONY: demo test lint setup torchrec gpu-check

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e ".[all,dev]"
	# TorchRec is optional; its default fbgemm-gpu needs an NVIDIA driver, so take the CPU build.
	($(PY) -m pip install -q --no-deps torchrec==1.9.2 && \
	 $(PY) -m pip install -q $(TORCHREC_CPU_DEPS)) || echo "TorchRec not installed: its tests will skip"
	touch $(STAMP)

demo: $(STAMP)
	OMP_NUM_THREADS=2 $(PY) examples/core_example.py
	# Ranking: DNN and PPNet on the synthetic default, next to its Bayes-optimal AUC.
	OMP_NUM_THREADS=2 $(PY) -m recsys_lhuc demo
	# ASR: a SAT-LHUC model on the synthetic corpus (fine-tuned from the committed SI model),
	# then unsupervised LHUC adaptation of its held-out speakers: the WER table.
	OMP_NUM_THREADS=2 $(PY) recipes/Synthetic/ASR/CTC/train.py \
	    recipes/Synthetic/ASR/CTC/hparams/demo.yaml --mode sat_lhuc
	OMP_NUM_THREADS=2 $(PY) recipes/Synthetic/ASR/CTC/adapt.py \
	    recipes/Synthetic/ASR/CTC/hparams/adapt_demo.yaml \
	    --si_checkpoint recipes/Synthetic/ASR/CTC/pretrained/si.pt

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: lint
	OMP_NUM_THREADS=2 $(VENV)/bin/pytest -q

# On a GPU machine: the ASR port's device tests, training, decoding and adaptation timing
# (results/asr/synthetic/gpu_check.json); installs what that machine lacks, no .venv needed.
gpu-check:
	bash benchmarks/gpu_check.sh
