# Quick start (see README.md):
#   make mini   install what the offline mini default needs and run egs2/blsp/run.sh
#   make test   install what the tests need and run them
#   make mini-long  the longer CPU preset (conf/mini/preset_cpu_long.yaml)
#   make mini-broad  broad text + the CTC warm start (conf/mini/preset_cpu_broad.yaml)
#   make demo   every stage on a generated corpus with tiny random models
#   make web-demo  the web page to talk to a trained model (EXP=egs2/blsp/exp/<tag>, PORT=7860)
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
NJ ?= 2
EXP ?= egs2/blsp/exp/train_blsp
PORT ?= 7860
# pytest-xdist workers of make test (one thread each; tests/conftest.py)
TEST_JOBS ?= 2

.PHONY: install install-test install-mini install-demo install-browser install-debian-text test mini mini-long mini-broad demo web-demo bench

install:
	$(PIP) install -q -e .

install-test: install install-browser install-debian-text
	$(PIP) install -q -e ".[test]"

# $(call apt_install,<test that they are there>,<Debian packages>,<what is lost without them>):
# apt-get install as root when the test fails; a warning (not an error) where that can't be done
define apt_install
	@if ! { $(1); } >/dev/null 2>&1; then \
		if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) \
				|| echo "warning: $(2) could not be installed; $(3)" >&2; \
		else \
			echo "warning: no $(2) (install these Debian packages as root); $(3)" >&2; \
		fi; \
	fi
endef

# Debian's headless Chromium + ChromeDriver for tests/test_demo_browser.py (skipped without them)
install-browser:
	$(call apt_install,command -v chromium && command -v chromedriver,chromium chromium-driver,the browser test will be skipped)

# Debian's fortunes (training sentences of broad vocabulary) and flite (more voices) for the mini corpus
install-debian-text:
	$(call apt_install,command -v flite && [ -d /usr/share/games/fortunes ],fortunes flite,run.sh --mini_num_fortune_train 0 --mini_flite_share 0 works without them)

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

mini-broad: install-mini
	cd egs2/blsp && ./run.sh --nj $(NJ) --preset cpu_broad

demo: install
	cd egs2/blsp && $(PYTHON) -m espnet_blsp.bin.make_demo_assets --out_dir demo && \
	./run.sh --stage 1 --stop_stage 6 --corpus kaldi --corpus_dir demo/corpus --train_set train \
		--valid_set dev --test_sets test --speech_encoder demo/whisper --llm demo/llm \
		--train_config conf/tuning/train_tiny_cnn.yaml --baselines "text untrained" --nj $(NJ)

bench: install-test
	$(PYTHON) benchmarks/run_cpu.py

web-demo: install-demo
	$(PYTHON) -m espnet_blsp.bin.demo --exp_dir $(EXP) --port $(PORT)
