"""CTranslate2 Whisper converter: write a tiny random Whisper in the model.bin layout, convert
it back with espnet_blsp.assets.ct2_whisper, and compare weights, logits and generate()."""

import json

import numpy as np
import pytest
import torch
from transformers import WhisperConfig, WhisperForConditionalGeneration, WhisperProcessor

from espnet_blsp.assets.ct2_whisper import convert_ct2_whisper, read_ct2_model_bin, write_ct2_model_bin
from espnet_blsp.testing.tiny_whisper import TINY_WHISPER_CONFIG

SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|de|>", "<|translate|>", "<|transcribe|>",
            "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]


def tiny_tokenizer_json(path) -> dict:
    """A byte-level BPE with Whisper's special tokens at the end of the vocabulary -> {token: id}."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["the cat sat on the mat", "hello world", "ten of clubs"] * 10, trainer)
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in SPECIALS])
    tok.save(str(path))
    return tok.get_vocab(with_added_tokens=True)


def to_ct2(sd, n_enc, n_dec):
    """HF names -> CTranslate2 variables (float16, fused q,k,v and k,v with a zero k bias);
    written independently of the converter, as the inverse mapping."""
    v = {}
    h = lambda t: t.numpy().astype(np.float16)  # noqa: E731  (faster-whisper ships float16)

    def ln(dst, src):
        v[f"{dst}/gamma"], v[f"{dst}/beta"] = h(sd[f"{src}.weight"]), h(sd[f"{src}.bias"])

    def lin(dst, src):
        v[f"{dst}/weight"], v[f"{dst}/bias"] = h(sd[f"{src}.weight"]), h(sd[f"{src}.bias"])

    def fused(dst, src, projs):
        v[f"{dst}/weight"] = h(torch.cat([sd[f"{src}.{p}_proj.weight"] for p in projs]))
        zero = torch.zeros_like(sd[f"{src}.v_proj.bias"])
        v[f"{dst}/bias"] = h(torch.cat([zero if p == "k" else sd[f"{src}.{p}_proj.bias"] for p in projs]))

    def block(dst, src, cross):
        ln(f"{dst}/self_attention/layer_norm", f"{src}.self_attn_layer_norm")
        fused(f"{dst}/self_attention/linear_0", f"{src}.self_attn", "qkv")
        lin(f"{dst}/self_attention/linear_1", f"{src}.self_attn.out_proj")
        if cross:
            ln(f"{dst}/attention/layer_norm", f"{src}.encoder_attn_layer_norm")
            lin(f"{dst}/attention/linear_0", f"{src}.encoder_attn.q_proj")
            fused(f"{dst}/attention/linear_1", f"{src}.encoder_attn", "kv")
            lin(f"{dst}/attention/linear_2", f"{src}.encoder_attn.out_proj")
        ln(f"{dst}/ffn/layer_norm", f"{src}.final_layer_norm")
        lin(f"{dst}/ffn/linear_0", f"{src}.fc1")
        lin(f"{dst}/ffn/linear_1", f"{src}.fc2")

    e, d = "model.encoder", "model.decoder"
    lin("encoder/conv1", f"{e}.conv1")
    lin("encoder/conv2", f"{e}.conv2")
    v["encoder/position_encodings/encodings"] = h(sd[f"{e}.embed_positions.weight"])
    for i in range(n_enc):
        block(f"encoder/layer_{i}", f"{e}.layers.{i}", cross=False)
    ln("encoder/layer_norm", f"{e}.layer_norm")
    v["decoder/embeddings/weight"] = h(sd[f"{d}.embed_tokens.weight"])
    v["decoder/position_encodings/encodings"] = h(sd[f"{d}.embed_positions.weight"])
    for i in range(n_dec):
        block(f"decoder/layer_{i}", f"{d}.layers.{i}", cross=True)
    ln("decoder/layer_norm", f"{d}.layer_norm")
    # scalar metadata as CTranslate2 stores it
    v["encoder/num_heads"] = np.array(TINY_WHISPER_CONFIG["encoder_attention_heads"], dtype=np.int16)
    v["decoder/num_heads"] = np.array(TINY_WHISPER_CONFIG["decoder_attention_heads"], dtype=np.int16)
    v["decoder/pre_norm"] = np.array(1, dtype=np.int8)
    return v


ALIASES = {"decoder/projection/weight": "decoder/embeddings/weight"}


@pytest.fixture(scope="module")
def ct2_case(tmp_path_factory):
    """(reference HF model, its float16-rounded state dict, CTranslate2 dir, CT2 variables, vocab)."""
    tmp = tmp_path_factory.mktemp("ct2")
    ct2 = tmp / "ct2"
    ct2.mkdir()
    vocab = tiny_tokenizer_json(ct2 / "tokenizer.json")
    eot, sot = vocab["<|endoftext|>"], vocab["<|startoftranscript|>"]
    (ct2 / "config.json").write_text(json.dumps({
        "lang_ids": [vocab["<|en|>"], vocab["<|de|>"]], "suppress_ids": [vocab["<|startoflm|>"]],
        "suppress_ids_begin": [eot], "alignment_heads": [[1, 0]],
    }))
    torch.manual_seed(0)
    cfg = {**TINY_WHISPER_CONFIG, "vocab_size": len(vocab), "pad_token_id": eot, "bos_token_id": eot,
           "eos_token_id": eot, "decoder_start_token_id": sot}
    ref = WhisperForConditionalGeneration(WhisperConfig(**cfg)).eval()
    sd = {k: v.detach().half().float() for k, v in ref.state_dict().items()}  # float16 like the asset
    for k in sd:
        if k.endswith("k_proj.bias"):  # HF has none; if a version adds one, it must be zero to round-trip
            sd[k].zero_()
    ref.load_state_dict(sd)
    variables = to_ct2(sd, cfg["encoder_layers"], cfg["decoder_layers"])
    write_ct2_model_bin(ct2 / "model.bin", "WhisperSpec", variables, ALIASES)
    return ref, sd, ct2, variables, vocab


def test_reader_reads_back_what_the_writer_wrote(ct2_case):
    _, _, ct2, variables, _ = ct2_case
    spec, back, aliases = read_ct2_model_bin(ct2 / "model.bin")
    assert spec == "WhisperSpec" and aliases == ALIASES
    assert list(back) == list(variables)
    for k, v in variables.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape and np.array_equal(back[k], v), k
    # layout by hand: u32 version 6, then u16 length 12 ("WhisperSpec" + NUL)
    raw = (ct2 / "model.bin").read_bytes()
    assert raw[:4] == (6).to_bytes(4, "little") and raw[4:6] == (12).to_bytes(2, "little")
    assert raw[6:18] == b"WhisperSpec\0"


def test_round_trip_weights_logits_generate(ct2_case, tmp_path):
    ref, sd, ct2, _, vocab = ct2_case
    out = convert_ct2_whisper(ct2, tmp_path / "hf")
    conv = WhisperForConditionalGeneration.from_pretrained(out).eval()
    assert conv.dtype == torch.float32
    conv_sd = conv.state_dict()
    for k, v in sd.items():
        assert torch.equal(conv_sd[k], v), k
    x = torch.randn(1, 80, 3000)
    ids = torch.tensor([[vocab["<|startoftranscript|>"], 5, 7]])
    with torch.no_grad():
        assert torch.equal(conv(x, decoder_input_ids=ids).logits, ref(x, decoder_input_ids=ids).logits)

    gen = conv.generation_config
    assert gen.lang_to_id == {"<|en|>": vocab["<|en|>"], "<|de|>": vocab["<|de|>"]} and gen.is_multilingual
    assert gen.task_to_id == {"transcribe": vocab["<|transcribe|>"], "translate": vocab["<|translate|>"]}
    assert gen.no_timestamps_token_id == vocab["<|notimestamps|>"]
    seen = []  # decoder input ids of each generation step
    hook = conv.model.decoder.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append(kwargs["input_ids"][0].tolist()), with_kwargs=True
    )
    with torch.no_grad():
        hyp = conv.generate(x, language="en", task="transcribe", max_new_tokens=3)
    hook.remove()
    prompt = [vocab[t] for t in ("<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>")]
    assert seen[0] == prompt and len(seen) == 3 and hyp.shape[-1] <= len(prompt) + 3

    processor = WhisperProcessor.from_pretrained(out)
    enc = processor.tokenizer("the cat sat", add_special_tokens=False).input_ids
    assert processor.tokenizer.decode(enc) == "the cat sat"
    assert processor.tokenizer.decode(prompt + enc + [vocab["<|endoftext|>"]], skip_special_tokens=True) == "the cat sat"
    assert processor.feature_extractor.feature_size == 80


def test_truncated_file_names_file_and_variable(ct2_case, tmp_path):
    _, _, ct2, _, _ = ct2_case
    cut = tmp_path / "model.bin"
    cut.write_bytes((ct2 / "model.bin").read_bytes()[:5000])
    with pytest.raises(ValueError, match=r"model.bin is truncated: the data of encoder/"):
        read_ct2_model_bin(cut)


def test_nonzero_k_bias_slot_is_refused(ct2_case, tmp_path):
    _, _, ct2, variables, _ = ct2_case
    bad = dict(variables)
    b = bad["encoder/layer_0/self_attention/linear_0/bias"].copy()
    d = b.shape[0] // 3
    b[d : 2 * d] = 1.0  # a real k bias (or a different fused order)
    bad["encoder/layer_0/self_attention/linear_0/bias"] = b
    src = tmp_path / "ct2"
    src.mkdir()
    for f in ("config.json", "tokenizer.json"):
        (src / f).write_bytes((ct2 / f).read_bytes())
    write_ct2_model_bin(src / "model.bin", "WhisperSpec", bad, ALIASES)
    with pytest.raises(ValueError, match="non-zero k slot"):
        convert_ct2_whisper(src, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
