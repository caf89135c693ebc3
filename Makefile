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
# pytest-xdist workers of make test (one thread each; tests/conftest.py)
TEST_JOBS ?= 2

.PHONY: install install-test install-mini install-demo install-browser install-debian-text test mini mini-long demo web-demo bench

install:
	$(PIP) install -q -e .

install-test: install install-browser install-debian-text
	$(PIP) install -q -e ".[test]"

# Debian's headless Chromium + ChromeDriver for tests/test_demo_browser.py (skipped without them)
install-browser:
	@if ! { command -v chromium && command -v chromedriver; } >/dev/null 2>&1; then \
		if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver \
				|| echo "warning: chromium could not be installed; the browser test will be skipped" >&2; \
		else \
			echo "warning: no chromium/chromedriver (install Debian's chromium chromium-driver as root); the browser test will be skipped" >&2; \
		fi; \
	fi

# Debian's fortunes (training sentences of broad vocabulary) and flite (more voices) for the mini corpus
install-debian-text:
	@if ! { command -v flite && [ -d /usr/share/games/fortunes ]; } >/dev/null 2>&1; then \
		if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fortunes flite \
				|| echo "warning: fortunes/flite could not be installed; run.sh --mini_num_fortune_train 0 --mini_flite_share 0 works without them" >&2; \
		else \
			echo "warning: no fortunes/flite (install Debian's fortunes flite as root); run.sh --mini_num_fortune_train 0 --mini_flite_share 0 works without them" >&2; \
		fi; \
	fi

install-mini: install install-debian-text
	$(PIP) install -q -e ".[mini]"

install-demo: install
	$(PIP) install -q -e ".[demo]"

test: install-test
	$(PYTHON) -m pytest -q -n $(TEST_JOBS) --dist loadfile --no-loadscope-reorder tests

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
