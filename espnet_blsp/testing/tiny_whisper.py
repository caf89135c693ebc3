"""A tiny random Whisper checkpoint built in code, for tests and CI (no downloads).

Usage::

    from espnet_blsp.testing.tiny_whisper import make_tiny_whisper
    path = make_tiny_whisper("/tmp/tiny_whisper")   # config.json + model.safetensors
    enc = WhisperSpeechEncoder(path)
"""

import os
from typing import Dict

TINY_WHISPER_CONFIG: Dict = dict(
    d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
    decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, num_mel_bins=80,
    vocab_size=128, max_source_positions=1500, max_target_positions=64,
    pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
)


def make_tiny_whisper(out_dir: str, seed: int = 0) -> str:
    """Save a random ``WhisperForConditionalGeneration`` with TINY_WHISPER_CONFIG to ``out_dir``
    (safetensors + config.json) and return ``out_dir``."""
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(WhisperConfig(**TINY_WHISPER_CONFIG))
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)  # safetensors + config.json
    return out_dir
