"""CTranslate2 Whisper ``model.bin`` -> transformers WhisperForConditionalGeneration.

The binary layout (little-endian): u32 version; string spec name; u32 revision; u32
variable count; per variable: string name, u8 rank, u32 x rank dims, u8 dtype
(0 f32, 1 i8, 2 i16, 3 i32, 4 f16, 5 bf16), u32 byte count, raw bytes; then u32 alias
count and (alias, target) string pairs. A string is a u16 length (with the trailing
NUL) followed by its bytes.
"""

import json
import os
import re
import struct
from pathlib import Path
from typing import Dict, Tuple

import numpy as np

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
_CODES = {np.dtype(v): k for k, v in _DTYPES.items()}


def _read_str(f) -> str:
    (n,) = struct.unpack("<H", f.read(2))
    return f.read(n)[:-1].decode("utf-8")


def _write_str(f, s: str) -> None:
    b = s.encode("utf-8") + b"\0"
    f.write(struct.pack("<H", len(b)))
    f.write(b)


def read_ct2_model_bin(path) -> Tuple[str, Dict[str, np.ndarray], Dict[str, str]]:
    """-> (spec name, {variable: array}, {alias: target})."""
    with open(path, "rb") as f:
        (version,) = struct.unpack("<I", f.read(4))
        spec = _read_str(f)
        (_revision, count) = struct.unpack("<II", f.read(8))
        variables = {}
        for _ in range(count):
            name = _read_str(f)
            (rank,) = struct.unpack("<B", f.read(1))
            dims = struct.unpack(f"<{rank}I", f.read(4 * rank)) if rank else ()
            (code, nbytes) = struct.unpack("<BI", f.read(5))
            raw = f.read(nbytes)
            if code == 5:  # bf16 -> f32
                arr = (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
            elif code in _DTYPES:
                arr = np.frombuffer(raw, dtype=_DTYPES[code])
            else:
                raise ValueError(f"{path}: variable {name} has unknown dtype code {code}")
            variables[name] = arr.reshape(dims)
        aliases = {}
        rest = f.read(4)
        if len(rest) == 4:
            (n_alias,) = struct.unpack("<I", rest)
            for _ in range(n_alias):
                alias = _read_str(f)
                aliases[alias] = _read_str(f)
    return spec, variables, aliases


def write_ct2_model_bin(path, spec: str, variables: Dict[str, np.ndarray], aliases: Dict[str, str] = None) -> None:
    """Write the same layout (used by the round-trip test)."""
    with open(path, "wb") as f:
        f.write(struct.pack("<I", 6))
        _write_str(f, spec)
        f.write(struct.pack("<II", 1, len(variables)))
        for name, arr in variables.items():
            arr = np.ascontiguousarray(arr)
            _write_str(f, name)
            f.write(struct.pack("<B", arr.ndim))
            f.write(struct.pack(f"<{arr.ndim}I", *arr.shape))
            f.write(struct.pack("<BI", _CODES[arr.dtype], arr.nbytes))
            f.write(arr.tobytes())
        aliases = aliases or {}
        f.write(struct.pack("<I", len(aliases)))
        for a, t in aliases.items():
            _write_str(f, a)
            _write_str(f, t)


def _get(variables, aliases, name):
    name = aliases.get(name, name)
    if name not in variables:
        raise KeyError(f"CTranslate2 model has no variable {name}")
    return variables[name].astype(np.float32)


def ct2_to_hf_state_dict(variables, aliases, num_enc: int, num_dec: int) -> Dict[str, np.ndarray]:
    """Map CTranslate2 Whisper variables to HF WhisperForConditionalGeneration names."""
    g = lambda n: _get(variables, aliases, n)  # noqa: E731
    sd = {}

    def ln(dst, src):
        sd[f"{dst}.weight"], sd[f"{dst}.bias"] = g(f"{src}/gamma"), g(f"{src}/beta")

    def lin(dst, src, bias=True):
        sd[f"{dst}.weight"] = g(f"{src}/weight")
        if bias:
            sd[f"{dst}.bias"] = g(f"{src}/bias")

    def qkv(dst, src):
        w, b = np.split(g(f"{src}/weight"), 3), np.split(g(f"{src}/bias"), 3)
        for i, p in enumerate(("q_proj", "k_proj", "v_proj")):
            sd[f"{dst}.{p}.weight"] = w[i]
            if p != "k_proj":  # HF Whisper has no k bias; CTranslate2 stores zeros there
                sd[f"{dst}.{p}.bias"] = b[i]

    def ffn(dst, src):
        ln(f"{dst}.final_layer_norm", f"{src}/ffn/layer_norm")
        lin(f"{dst}.fc1", f"{src}/ffn/linear_0")
        lin(f"{dst}.fc2", f"{src}/ffn/linear_1")

    e, d = "model.encoder", "model.decoder"
    lin(f"{e}.conv1", "encoder/conv1")
    lin(f"{e}.conv2", "encoder/conv2")
    sd[f"{e}.embed_positions.weight"] = g("encoder/position_encodings/encodings")
    for i in range(num_enc):
        s, t = f"encoder/layer_{i}", f"{e}.layers.{i}"
        ln(f"{t}.self_attn_layer_norm", f"{s}/self_attention/layer_norm")
        qkv(f"{t}.self_attn", f"{s}/self_attention/linear_0")
        lin(f"{t}.self_attn.out_proj", f"{s}/self_attention/linear_1")
        ffn(t, s)
    ln(f"{e}.layer_norm", "encoder/layer_norm")
    sd[f"{d}.embed_tokens.weight"] = g("decoder/embeddings/weight")
    sd[f"{d}.embed_positions.weight"] = g("decoder/position_encodings/encodings")
    for i in range(num_dec):
        s, t = f"decoder/layer_{i}", f"{d}.layers.{i}"
        ln(f"{t}.self_attn_layer_norm", f"{s}/self_attention/layer_norm")
        qkv(f"{t}.self_attn", f"{s}/self_attention/linear_0")
        lin(f"{t}.self_attn.out_proj", f"{s}/self_attention/linear_1")
        ln(f"{t}.encoder_attn_layer_norm", f"{s}/attention/layer_norm")
        lin(f"{t}.encoder_attn.q_proj", f"{s}/attention/linear_0")
        kw, vw = np.split(g(f"{s}/attention/linear_1/weight"), 2)
        kb, vb = np.split(g(f"{s}/attention/linear_1/bias"), 2)
        sd[f"{t}.encoder_attn.k_proj.weight"], sd[f"{t}.encoder_attn.v_proj.weight"] = kw, vw
        sd[f"{t}.encoder_attn.v_proj.bias"] = vb
        lin(f"{t}.encoder_attn.out_proj", f"{s}/attention/linear_2")
        ffn(t, s)
    ln(f"{d}.layer_norm", "decoder/layer_norm")
    return sd


def convert_ct2_whisper(ct2_dir, out_dir, model_bin=None, **config_overrides) -> str:
    """Convert a faster-whisper (CTranslate2) dir to a transformers checkpoint in ``out_dir``.

    ``config_overrides`` go to WhisperConfig (token ids of a non-standard vocabulary).
    """
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    ct2_dir, out_dir = Path(ct2_dir), Path(out_dir)
    spec, variables, aliases = read_ct2_model_bin(model_bin or ct2_dir / "model.bin")
    layers = lambda side: len({m.group(1) for k in variables if (m := re.match(side + r"/layer_(\d+)/", k))})  # noqa: E731
    num_enc, num_dec = layers("encoder"), layers("decoder")
    d_model = variables["encoder/conv1/weight"].shape[0]
    n_mels = variables["encoder/conv1/weight"].shape[1]
    vocab = _get(variables, aliases, "decoder/embeddings/weight").shape[0]
    ffn = variables["encoder/layer_0/ffn/linear_0/weight"].shape[0]
    heads = max(d_model // 64, 1)
    ct2_cfg = json.loads((ct2_dir / "config.json").read_text()) if (ct2_dir / "config.json").exists() else {}
    kwargs = dict(
        vocab_size=vocab, num_mel_bins=n_mels, d_model=d_model, encoder_layers=num_enc, decoder_layers=num_dec,
        encoder_attention_heads=heads, decoder_attention_heads=heads, encoder_ffn_dim=ffn, decoder_ffn_dim=ffn,
        max_source_positions=variables["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=_get(variables, aliases, "decoder/position_encodings/encodings").shape[0],
        suppress_tokens=ct2_cfg.get("suppress_ids", []), begin_suppress_tokens=ct2_cfg.get("suppress_ids_begin", [220, 50256]),
    )
    kwargs.update(config_overrides)
    cfg = WhisperConfig(**kwargs)
    model = WhisperForConditionalGeneration(cfg)
    sd = {k: torch.from_numpy(np.array(v)) for k, v in ct2_to_hf_state_dict(variables, aliases, num_enc, num_dec).items()}
    sd["proj_out.weight"] = sd["model.decoder.embed_tokens.weight"]
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [m for m in missing if "k_proj.bias" not in m]
    if missing or unexpected:
        raise RuntimeError(f"conversion mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    return str(out_dir)
