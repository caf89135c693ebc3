"""A tiny "trained" experiment dir and dump dir, built in code (no training run), for the
tests of the analysis tools.

Usage::

    exp = make_tiny_exp(tmp / "exp/tiny", whisper_dir, llm_dir)   # config.yaml + valid.loss.best.pth
    dump = make_tiny_dump(tmp / "dump/test", ["the sun is warm", ...])  # feats.scp, text, speech_shape

The experiment's config.yaml has the four sections ``blsp_inference.build_model`` reads
(tiny CNN adapter, float32 LLM, the ``blsp`` template); its checkpoint holds the adapter's
seeded random init moved by ``perturb`` x N(0, 1), so that "trained" and "untrained" differ.
"""

from pathlib import Path
from typing import Sequence

import numpy as np
import yaml


def make_tiny_exp(exp_dir, whisper: str, llm: str, perturb: float = 0.5, seed: int = 0,
                  prompt_template: str = "blsp") -> Path:
    import torch

    from espnet_blsp.bin.blsp_inference import build_model

    exp_dir = Path(exp_dir)
    exp_dir.mkdir(parents=True, exist_ok=True)
    cfg = {
        "seed": seed,
        "speech_encoder_conf": {"model_name_or_path": str(whisper), "freeze": True, "dtype": "float32"},
        "speech_adapter": "cnn",
        "speech_adapter_conf": {"bottleneck_dim": 16},
        "llm_conf": {"model_name_or_path": str(llm), "dtype": "float32", "attn_implementation": "sdpa",
                     "prompt_template": prompt_template},
        "model_conf": {"ce_weight": 1.0},
        "use_responses": True,
        "rp_ratio": "0",
    }
    (exp_dir / "config.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    model = build_model(exp_dir, torch.device("cpu"), None, load=False)
    g = torch.Generator().manual_seed(seed + 1)
    state = {k: v + perturb * torch.randn(v.shape, generator=g) if v.is_floating_point() else v
             for k, v in model.state_dict().items()}
    torch.save(state, exp_dir / "valid.loss.best.pth")
    return exp_dir


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
