"""CTranslate2 Whisper converter: write a small model.bin in the same layout, convert back."""

import numpy as np
import torch
from transformers import WhisperConfig, WhisperForConditionalGeneration

from espnet_blsp.assets.ct2_whisper import convert_ct2_whisper, read_ct2_model_bin, write_ct2_model_bin
from espnet_blsp.testing.tiny import TINY_WHISPER_CONFIG


def to_ct2(sd, n_enc, n_dec):
    """HF names -> CTranslate2 variables (fused q,k,v with a zero k bias)."""
    v = {}
    n = lambda t: t.numpy().astype(np.float16)  # noqa: E731  (faster-whisper ships float16)

    def ln(dst, src):
        v[f"{dst}/gamma"], v[f"{dst}/beta"] = n(sd[f"{src}.weight"]), n(sd[f"{src}.bias"])

    def lin(dst, src, bias=True):
        v[f"{dst}/weight"] = n(sd[f"{src}.weight"])
        if bias:
            v[f"{dst}/bias"] = n(sd[f"{src}.bias"])

    def attn_self(dst, src):
        v[f"{dst}/linear_0/weight"] = n(torch.cat([sd[f"{src}.{p}_proj.weight"] for p in "qkv"]))
        zero = torch.zeros_like(sd[f"{src}.q_proj.bias"])
        v[f"{dst}/linear_0/bias"] = n(torch.cat([sd[f"{src}.q_proj.bias"], zero, sd[f"{src}.v_proj.bias"]]))
        lin(f"{dst}/linear_1", f"{src}.out_proj")

    def ffn(dst, src):
        ln(f"{dst}/ffn/layer_norm", f"{src}.final_layer_norm")
        lin(f"{dst}/ffn/linear_0", f"{src}.fc1")
        lin(f"{dst}/ffn/linear_1", f"{src}.fc2")

    e, d = "model.encoder", "model.decoder"
    lin("encoder/conv1", f"{e}.conv1")
    lin("encoder/conv2", f"{e}.conv2")
    v["encoder/position_encodings/encodings"] = n(sd[f"{e}.embed_positions.weight"])
    for i in range(n_enc):
        ln(f"encoder/layer_{i}/self_attention/layer_norm", f"{e}.layers.{i}.self_attn_layer_norm")
        attn_self(f"encoder/layer_{i}/self_attention", f"{e}.layers.{i}.self_attn")
        ffn(f"encoder/layer_{i}", f"{e}.layers.{i}")
    ln("encoder/layer_norm", f"{e}.layer_norm")
    v["decoder/embeddings/weight"] = n(sd[f"{d}.embed_tokens.weight"])
    v["decoder/position_encodings/encodings"] = n(sd[f"{d}.embed_positions.weight"])
    for i in range(n_dec):
        s = f"{d}.layers.{i}"
        ln(f"decoder/layer_{i}/self_attention/layer_norm", f"{s}.self_attn_layer_norm")
        attn_self(f"decoder/layer_{i}/self_attention", f"{s}.self_attn")
        ln(f"decoder/layer_{i}/attention/layer_norm", f"{s}.encoder_attn_layer_norm")
        lin(f"decoder/layer_{i}/attention/linear_0", f"{s}.encoder_attn.q_proj")
        v[f"decoder/layer_{i}/attention/linear_1/weight"] = n(torch.cat([sd[f"{s}.encoder_attn.k_proj.weight"], sd[f"{s}.encoder_attn.v_proj.weight"]]))
        v[f"decoder/layer_{i}/attention/linear_1/bias"] = n(torch.cat([torch.zeros_like(sd[f"{s}.encoder_attn.v_proj.bias"]), sd[f"{s}.encoder_attn.v_proj.bias"]]))
        lin(f"decoder/layer_{i}/attention/linear_2", f"{s}.encoder_attn.out_proj")
        ffn(f"decoder/layer_{i}", f"{s}")
    ln("decoder/layer_norm", f"{d}.layer_norm")
    return v


def test_round_trip(tmp_path):
    torch.manual_seed(0)
    cfg = {**TINY_WHISPER_CONFIG, "encoder_attention_heads": 1, "decoder_attention_heads": 1}
    ref = WhisperForConditionalGeneration(WhisperConfig(**cfg)).eval()
    sd = {k: v.detach().half().float() for k, v in ref.state_dict().items()}  # float16 like the asset
    ref.load_state_dict(sd)
    variables = to_ct2(sd, 2, 2)
    ct2 = tmp_path / "ct2"
    ct2.mkdir()
    write_ct2_model_bin(ct2 / "model.bin", "WhisperSpec", variables, {"decoder/projection/weight": "decoder/embeddings/weight"})
    spec, back, aliases = read_ct2_model_bin(ct2 / "model.bin")
    assert spec == "WhisperSpec" and aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    assert all(np.array_equal(back[k], variables[k]) for k in variables)
    out = convert_ct2_whisper(
        ct2, tmp_path / "hf", pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
        begin_suppress_tokens=[],
    )
    conv = WhisperForConditionalGeneration.from_pretrained(out).eval()
    for k, v in sd.items():
        assert torch.equal(conv.state_dict()[k], v), k
    x = torch.randn(1, 80, 3000)
    ids = torch.tensor([[1, 5, 7]])
    with torch.no_grad():
        assert torch.allclose(conv(x, decoder_input_ids=ids).logits, ref(x, decoder_input_ids=ids).logits, atol=1e-5)
