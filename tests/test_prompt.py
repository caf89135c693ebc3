"""PromptTemplate (blsp / chat) and the tiny LLM + tokenizer built in code."""

import time

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from espnet_blsp.llm.prompt import INSTRUCTIONS, PromptTemplate
from espnet_blsp.testing.tiny_llm import make_tiny_llm, make_tiny_tokenizer


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def arch_dir(request, tmp_path_factory):
    return request.param, make_tiny_llm(str(tmp_path_factory.mktemp(request.param)), arch=request.param)


def test_tiny_llm_loads_with_auto_classes(arch_dir):
    arch, path = arch_dir
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    cfg = model.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads) == (64, 2, 4, 2)
    assert cfg.intermediate_size == 128
    assert type(model).__name__ == {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}[arch]
    assert 300 <= len(tok) <= 1000 and model.get_output_embeddings().weight.shape[0] == len(tok)
    assert (tok.bos_token is not None) == (arch == "llama")
    assert tok.eos_token_id is not None and tok.pad_token_id is not None
    text = "The old man reads a book in the garden."
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text and len(ids) < len(text) // 2  # BPE merged real words
    with torch.no_grad():
        assert model(torch.tensor([ids])).logits.shape == (1, len(ids), len(tok))


def test_tiny_tokenizer_is_fast_and_unknown_arch_raises(tmp_path):
    make_tiny_tokenizer("llama")  # the trained JSON is cached in-process
    t0 = time.perf_counter()
    make_tiny_llm(str(tmp_path / "again"), arch="qwen2")
    assert time.perf_counter() - t0 < 2.0
    with pytest.raises(ValueError, match="unknown tiny LLM arch"):
        make_tiny_llm(str(tmp_path / "x"), arch="gpt2")


def test_blsp_template(arch_dir):
    arch, path = arch_dir
    tok = AutoTokenizer.from_pretrained(path)
    t = PromptTemplate(tok, "blsp")
    instr = INSTRUCTIONS["asr"]
    prefix, suffix = t.prefix_ids(instr), t.suffix_ids()
    if arch == "llama":
        assert prefix[0] == tok.bos_token_id and tok.decode(prefix[1:]) == "###[Human]:" + instr
    else:  # Qwen2 has no BOS
        assert tok.decode(prefix) == "###[Human]:" + instr
    assert tok.decode(suffix) == "\n\n\n###[Assistant]:"
    assert tok.bos_token_id is None or tok.bos_token_id not in suffix
    assert t.eos_id == tok.eos_token_id
    words = t.text_ids("the sun is warm")
    assert tok.decode(words) == "the sun is warm"
    specials = {tok.bos_token_id, tok.eos_token_id, tok.pad_token_id}
    assert not specials & set(words)
    assert t.prefix_ids(instr) == prefix  # cached copy is not aliased
    prefix.append(0)
    assert t.prefix_ids(instr) != prefix


def test_chat_template(arch_dir):
    arch, path = arch_dir
    tok = AutoTokenizer.from_pretrained(path)
    t = PromptTemplate(tok, "chat")
    prefix, suffix = t.prefix_ids("Hi there."), t.suffix_ids()
    # the pieces around the middle reproduce the tokenizer's own chat template
    rendered = tok.apply_chat_template(
        [{"role": "user", "content": "Hi there.the sun"}], tokenize=False, add_generation_prompt=True
    )
    assert tok.decode(prefix + t.text_ids("the sun") + suffix) == rendered
    if arch == "llama":
        assert tok.decode(prefix) == "<s>user\nHi there." and tok.decode(suffix) == "</s>\n<s>assistant\n"
        assert t.eos_id == tok.eos_token_id
    else:  # a Qwen2 reply ends with <|im_end|>, not with the tokenizer's EOS <|endoftext|>
        assert tok.decode(prefix) == "<|im_start|>user\nHi there."
        assert tok.decode(suffix) == "<|im_end|>\n<|im_start|>assistant\n"
        assert t.eos_id == tok.convert_tokens_to_ids("<|im_end|>") != tok.eos_token_id


def test_registry_and_errors(arch_dir):
    tok = AutoTokenizer.from_pretrained(arch_dir[1])
    with pytest.raises(ValueError, match="unknown prompt template 'alpaca'"):
        PromptTemplate(tok, "alpaca")
    tok.chat_template = None
    with pytest.raises(ValueError, match="chat_template"):
        PromptTemplate(tok, "chat")


def test_instructions_of_the_paper():
    assert INSTRUCTIONS["continuation"] == (
        "Continue the following text in a coherent and engaging style with less than 40 words."
    )
    assert INSTRUCTIONS["asr"] == INSTRUCTIONS["repetition"] == "Please repeat the following words."
    assert INSTRUCTIONS["st"].format(target="German") == "Please translate the following English text into German text."
    snips = INSTRUCTIONS["snips"].split("[")[1].rstrip("].").split(", ")
    fsc = INSTRUCTIONS["fsc"].split("[")[1].rstrip("].").split(", ")
    assert len(snips) == 6 and snips[0] == "DecreaseBrightness" and len(fsc) == 18 and fsc[-1] == "bring juice"
    assert INSTRUCTIONS["slue"].endswith("as either positive, negative, or neutral.")
