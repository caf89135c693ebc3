"""Shared fixtures: tiny random Whisper and LLM checkpoints written once per session."""

import pytest
import torch

from espnet_blsp.testing.tiny import make_tiny_llm, make_tiny_whisper

torch.set_num_threads(2)


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
