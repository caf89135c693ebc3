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
