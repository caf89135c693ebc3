"""Shared fixtures: tiny random Whisper and LLM checkpoints written once per session.

``make test`` runs the suite in two pytest-xdist workers (``-n 2 --dist loadfile``), one
thread each: most of the time goes to starting processes (run.sh, blsp_train) and to small
tensors that one thread serves as well as two, so two workers nearly halve the wall time.
"""

import os
from pathlib import Path

import pytest
import torch

from espnet_blsp.testing.tiny import make_tiny_llm, make_tiny_whisper

if os.environ.get("PYTEST_XDIST_WORKER"):
    # one thread per worker, also for the processes the tests start (run.sh, blsp_train):
    # two workers of two threads each on two cores run several times slower
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = "1"
    torch.set_num_threads(1)
else:
    torch.set_num_threads(2)

# The longest files first (minutes each on 2 cores), so that the workers do not end on one
# of them alone; with --dist loadfile and --no-loadscope-reorder a file is one unit, handed
# out in this order. Only the schedule depends on it.
_LONGEST_FIRST = ("test_fault_injection.py", "test_recipe.py", "test_learning.py", "test_deepspeed.py",
                  "test_ddp.py", "test_chat_cli.py", "test_demo_browser.py", "test_api.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(Path(str(item.fspath)).name, len(rank)))  # stable: file order kept


@pytest.fixture(scope="session")
def tiny_whisper(tmp_path_factory) -> str:
    return make_tiny_whisper(str(tmp_path_factory.mktemp("whisper")))


@pytest.fixture(scope="session", params=["llama", "qwen2"])
def tiny_llm_any(request, tmp_path_factory) -> str:
    return make_tiny_llm(str(tmp_path_factory.mktemp(request.param)), arch=request.param)


@pytest.fixture(scope="session")
def tiny_llm(tmp_path_factory) -> str:
    return make_tiny_llm(str(tmp_path_factory.mktemp("llama")), arch="llama")


@pytest.fixture(scope="session")
def tiny_exp(tmp_path_factory, tiny_whisper, tiny_llm):
    """A tiny "trained" exp dir: CNN adapter, BLSP template, log-mel input (espnet_blsp.testing.tiny_exp)."""
    from espnet_blsp.testing.tiny_exp import make_tiny_exp

    return make_tiny_exp(tmp_path_factory.mktemp("exp") / "tiny_cnn", tiny_whisper, tiny_llm)


@pytest.fixture(scope="session")
def tiny_exp_chat(tmp_path_factory, tiny_whisper, tiny_llm):
    """A tiny exp dir with the other choices: CFormer, chat template, Partial LoRA, dumped encoder outputs."""
    from espnet_blsp.testing.tiny_exp import make_tiny_exp

    return make_tiny_exp(tmp_path_factory.mktemp("exp") / "tiny_cformer_chat", tiny_whisper, tiny_llm,
                         adapter="cformer", prompt_template="chat", lora=True, precomputed_encoder=True)
