# The two commands a user needs: `make demo` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo
TORCHREC_CPU_DEPS := fbgemm-gpu-cpu==1.9.0 tensordict torchmetrics==1.0.3 pyre-extensions

.PHONY: demo test lint setup setup-demo torchrec gpu-check

# Everything, for the test suite: all extras, dev tools and TorchRec.
setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e ".[all,dev]"
	# TorchRec is optional; its default fbgemm-gpu needs an NVIDIA driver, so take the CPU build.
	($(PY) -m pip install -q --no-deps torchrec==1.9.2 && \
	 $(PY) -m pip install -q $(TORCHREC_CPU_DEPS)) || echo "TorchRec not installed: its tests will skip"
	touch $(STAMP) $(DEMO_STAMP)

# Only what the demo runs: the core, the SpeechBrain port and the ranking port. No pretrained
# Whisper/Moonshine weights, ONNX Runtime, CTranslate2 or TorchRec.
setup-demo: $(DEMO_STAMP)

$(DEMO_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e ".[asr,recsys]"
	touch $(DEMO_STAMP)

# Core example, ranking (DNN vs PPNet) and unsupervised LHUC adaptation of the committed ASR
# models, each ending in a table, then the time of each step (examples/demo.py says more).
demo: $(DEMO_STAMP)
	OMP_NUM_THREADS=2 $(PY) examples/demo.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: lint
	OMP_NUM_THREADS=2 $(VENV)/bin/pytest -q

# On a GPU machine: the ASR port's device tests, training, decoding and adaptation timing
# (results/asr/synthetic/gpu_check.json); installs what that machine lacks, no .venv needed.
gpu-check:
	bash benchmarks/gpu_check.sh
