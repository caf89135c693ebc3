"""GGUF causal LM (e.g. SmolLM2-135M-Instruct, Q4_1) -> transformers checkpoint.

Usage::

    from espnet_blsp.assets.gguf_llm import convert_gguf_llm
    convert_gguf_llm("SmolLM2-135M-Instruct.Q4_1.gguf", "assets/smollm2-135m-instruct")
    # then, offline:
    AutoModelForCausalLM.from_pretrained("assets/smollm2-135m-instruct")
    AutoTokenizer.from_pretrained("assets/smollm2-135m-instruct")   # chat template included

transformers' GGUF loader (needs the ``gguf`` package) dequantises the weights, but the
model it returns can't be saved as is, so its state dict is copied into a fresh model of
the same config and that one is saved (safetensors, ``dtype``), with the tokenizer and a
generation config. Written to ``<out_dir>.tmp`` and renamed at the end.
"""

import logging
import os
import shutil
from pathlib import Path

_DTYPES = ("bfloat16", "float16", "float32")


def convert_gguf_llm(gguf_path, out_dir, dtype: str = "bfloat16") -> str:
    """Dequantise ``gguf_path`` into a transformers checkpoint in ``out_dir``; returns ``out_dir``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose from {_DTYPES}")
    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    if not gguf_path.is_file():
        raise FileNotFoundError(f"no GGUF file at {gguf_path}")
    try:
        import gguf  # noqa: F401  (transformers' GGUF loader needs it)
    except ImportError:
        raise ImportError("converting a GGUF model needs the gguf package: pip install gguf") from None

    # 1. dequantise (float32) and read the tokenizer, chat template included
    loaded = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    # 2. a fresh model of the same config holds the weights in a savable form
    # (without the GGUF quantization_config, which would send from_pretrained back to the GGUF loader)
    skip = ("quantization_config", "_model_name_or_path", "_name_or_path")
    config = AutoConfig.for_model(**{k: v for k, v in loaded.config.to_dict().items() if k not in skip})
    config.dtype = dtype
    with torch.device("meta"):
        fresh = AutoModelForCausalLM.from_config(config)
    state = loaded.state_dict()
    missing, unexpected = fresh.load_state_dict(state, strict=False, assign=True)
    missing = [k for k in missing if not (config.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise ValueError(f"{gguf_path}: GGUF weights do not fit {type(fresh).__name__}: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    fresh.tie_weights()
    fresh.to(getattr(torch, dtype)).eval()
    fresh.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
    )
    # 3. save atomically
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    fresh.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    n = sum(p.numel() for p in fresh.parameters())
    logging.info(f"{gguf_path} -> {out_dir}: {type(fresh).__name__}, {n / 1e6:.1f}M parameters, {dtype}, "
                 f"chat template {'kept' if tokenizer.chat_template else 'absent'}")
    return str(out_dir)
