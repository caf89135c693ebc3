# Quick start (see README.md):
#   make mini   install what the offline mini default needs and run egs2/blsp/run.sh
#   make test   install what the tests need and run them
#   make mini-long  the longer CPU preset (conf/mini/preset_cpu_long.yaml)
#   make demo   every stage on a generated corpus with tiny random models
#   make web-demo  the web page to talk to a trained model (EXP=egs2/blsp/exp/<tag>, PORT=7860)
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
NJ ?= 2
EXP ?= egs2/blsp/exp/train_blsp
PORT ?= 7860

.PHONY: install install-test install-mini install-demo test mini mini-long demo web-demo bench

install:
	$(PIP) install -q -e .

install-test: install
	$(PIP) install -q -e ".[test]"

install-mini: install
	$(PIP) install -q -e ".[mini]"

install-demo: install
	$(PIP) install -q -e ".[demo]"

test: install-test
	$(PYTHON) -m pytest -q tests

mini: install-mini
	cd egs2/blsp && ./run.sh --nj $(NJ)

mini-long: install-mini
	cd egs2/blsp && ./run.sh --nj $(NJ) --preset cpu_long

demo: install
	cd egs2/blsp && $(PYTHON) -m espnet_blsp.bin.make_demo_assets --out_dir demo && \
	./run.sh --stage 1 --stop_stage 6 --corpus kaldi --corpus_dir demo/corpus --train_set train \
		--valid_set dev --test_sets test --speech_encoder demo/whisper --llm demo/llm \
		--train_config conf/tuning/train_tiny_cnn.yaml --baselines "text untrained" --nj $(NJ)

bench: install-test
	$(PYTHON) benchmarks/run_cpu.py

web-demo: install-demo
	$(PYTHON) -m espnet_blsp.bin.demo --exp_dir $(EXP) --port $(PORT)
