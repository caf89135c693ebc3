"""A tiny "trained" exp dir built in code, in the layout stage 4 leaves, and a tiny dump dir
(for the tests of the API, chat, demo and analysis tools).

Usage::

    from espnet_blsp.testing.tiny_exp import make_tiny_dump, make_tiny_exp
    exp = make_tiny_exp("/tmp/exp/tiny", whisper_dir, llm_dir, adapter="cnn", prompt_template="blsp")
    model = espnet_blsp.load(exp)
    dump = make_tiny_dump("/tmp/dump/test", ["the sun is warm", ...])  # feats.scp, text, speech_shape

It writes what stage 5 reads: ``config.yaml`` (the four model sections, ``seed``, the data
paths), ``valid.loss.best.pth`` (the trainable weights, moved away from their seeded init by
seeded noise, so a model that failed to load them would answer differently; Partial LoRA's B
starts at zero and would otherwise do nothing), ``train.cmd``, ``run.sh.cmd`` and a
``RESULTS.md`` linking ``curves/learning_curve.png``. No training runs: building it takes a
second.
"""

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import yaml

TINY_ADAPTER_CONF = {
    "cnn": {"bottleneck_dim": 32},
    "cformer": {"num_pre_layers": 1, "num_post_layers": 1},
}


def tiny_config(speech_encoder: str, llm: str, adapter: str = "cnn", prompt_template: str = "blsp",
                lora: bool = False, precomputed_encoder: bool = False) -> dict:
    if adapter not in TINY_ADAPTER_CONF:
        raise ValueError(f"unknown adapter {adapter!r}; choose from {sorted(TINY_ADAPTER_CONF)}")
    model_conf = {"ce_weight": 1.0, "precomputed_encoder": precomputed_encoder}
    if adapter == "cformer":
        model_conf.update(kl_resp_weight=1.0, kl_input_weight=1.0, cif_weight=1.0, ce_weight=0.0)
    return {
        "seed": 0,
        "speech_encoder_conf": {"model_name_or_path": str(speech_encoder), "freeze": True, "dtype": "float32"},
        "llm_conf": {
            "model_name_or_path": str(llm), "dtype": "float32", "attn_implementation": "sdpa",
            "prompt_template": prompt_template,
            "lora_conf": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]} if lora else None,
        },
        "speech_adapter": adapter,
        "speech_adapter_conf": dict(TINY_ADAPTER_CONF[adapter]),
        "model_conf": model_conf,
        "train_data_path_and_name_and_type": [["dump/tiny_train/feats.scp", "speech", "kaldi_ark"],
                                              ["dump/tiny_train/text", "text", "text"]],
        "valid_data_path_and_name_and_type": [["dump/tiny_dev/feats.scp", "speech", "kaldi_ark"],
                                              ["dump/tiny_dev/text", "text", "text"]],
    }


def make_tiny_exp(out_dir, speech_encoder: str, llm: str, adapter: str = "cnn", prompt_template: str = "blsp",
                  lora: bool = False, precomputed_encoder: bool = False, seed: int = 0,
                  config: Optional[dict] = None, perturb: Optional[float] = None) -> Path:
    """Write the exp dir (see the module docstring) and return its path. ``perturb``: move
    every weight by ``perturb`` x N(0, 1) instead of 0.1 x its own std."""
    import torch

    from espnet_blsp.bin.blsp_inference import model_from_config

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = config or tiny_config(speech_encoder, llm, adapter, prompt_template, lora, precomputed_encoder)
    model = model_from_config(cfg)
    gen = torch.Generator().manual_seed(seed + 1)
    state = model.state_dict()
    for key, value in state.items():
        if value.is_floating_point():
            if perturb is not None:
                scale = perturb
            elif value.numel() > 1 and float(value.std()) > 0:
                scale = 0.1 * float(value.std())
            else:
                scale = 0.05
            state[key] = value + scale * torch.randn(value.shape, generator=gen).to(value.dtype)
    torch.save(state, out / "valid.loss.best.pth")
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    (out / "train.cmd").write_text(f"python -m espnet_blsp.bin.blsp_train --config tiny.yaml --output_dir {out}\n")
    (out / "run.sh.cmd").write_text("./run.sh --stage 4 --stop_stage 6 --train_config tiny.yaml\n")
    (out / "curves").mkdir(exist_ok=True)
    (out / "curves" / "learning_curve.png").write_bytes(b"\x89PNG\r\n\x1a\n tiny stand-in")
    (out / "RESULTS.md").write_text(
        f"# RESULTS: {out.name}\n\n## Results\n\n| system | ASR WER tiny_test |\n|---|---:|\n| {out.name} | 99.9 |\n\n"
        "![learning curve](curves/learning_curve.png)\n", encoding="utf-8")
    return out


def make_tiny_dump(dump_dir, texts: Sequence[str], n_mels: int = 80, seed: int = 0, min_frames: int = 60,
                   max_frames: int = 160) -> Path:
    """``feats.scp`` (random log-mel frames), ``text`` and ``speech_shape`` for ``u000``, ``u001``, ..."""
    import kaldiio

    dump_dir = Path(dump_dir)
    dump_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    keys = [f"u{i:03d}" for i in range(len(texts))]
    frames = {k: int(rng.integers(min_frames, max_frames)) for k in keys}
    with kaldiio.WriteHelper(f"ark,scp:{dump_dir}/feats.ark,{dump_dir}/feats.scp") as w:
        for k in keys:
            w(k, rng.standard_normal((frames[k], n_mels)).astype(np.float32))
    (dump_dir / "text").write_text("".join(f"{k} {t}\n" for k, t in zip(keys, texts)), encoding="utf-8")
    (dump_dir / "speech_shape").write_text("".join(f"{k} {frames[k]},{n_mels}\n" for k in keys))
    return dump_dir
