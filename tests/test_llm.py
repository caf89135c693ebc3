import pytest
import torch

from espnet_blsp.llm.causal_lm import SpeechLLM
from espnet_blsp.llm.partial_lora import inject_partial_lora, speech_positions
from espnet_blsp.llm.prompt import PromptTemplate

LORA = dict(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj", "down_proj"])


def _ids(llm, text):
    return torch.tensor(llm.template.text_ids(text))


def _prompt(llm, texts, responses=None):
    t = llm.template
    prefix = [torch.tensor(t.prefix_ids("Continue the text.")) for _ in texts]
    suffix = [torch.tensor(t.suffix_ids()) for _ in texts]
    middle = [_ids(llm, x) for x in texts]
    resp = [_ids(llm, r) for r in responses] if responses else None
    return prefix, middle, suffix, resp


def test_template_and_targets_by_hand(tiny_llm):
    llm = SpeechLLM(tiny_llm, dtype="float32")
    t = llm.template
    p, s = t.prefix_ids("Hi"), t.suffix_ids()
    assert p[0] == llm.tokenizer.bos_token_id and llm.tokenizer.bos_token_id not in s
    assert llm.tokenizer.decode(s) == "\n\n\n###[Assistant]:"
    prefix, middle, suffix, resp = _prompt(llm, ["the sun"], ["rain"])
    b = llm.build_inputs(prefix, middle, suffix, resp)
    P, N, S, R = len(prefix[0]), len(middle[0]), len(suffix[0]), len(resp[0])
    assert int(b.lengths[0]) == P + N + S + R + 1
    tgt = b.targets[0]
    # the last suffix position predicts the first response token; EOS is the last target
    assert tgt[P + N + S - 1] == resp[0][0] and tgt[P + N + S + R - 1] == t.eos_id
    assert (tgt != -100).sum() == R + 1
    # input KL rows: the N middle positions P .. P+N-1 (the output at x_i vs the output at s_i)
    assert b.input_mask[0].nonzero().flatten().tolist() == list(range(P, P + N))
    assert b.speech_mask[0].nonzero().flatten().tolist() == list(range(P, P + N))


def test_batched_hidden_states_equal_single(tiny_llm_any):
    llm = SpeechLLM(tiny_llm_any, dtype="float32", lora_conf=LORA)
    for m in llm.model.modules():  # non-zero LoRA so the speech path differs from text
        if hasattr(m, "lora_B"):
            torch.nn.init.normal_(m.lora_B, std=0.1)
    texts, resps = ["the weather is warm today", "rain"], ["and we go out", "no"]
    batch = llm.build_inputs(*_prompt(llm, texts, resps))
    h = llm.hidden_states(batch)
    for i in range(2):
        single = llm.build_inputs(*_prompt(llm, [texts[i]], [resps[i]]))
        hs = llm.hidden_states(single)
        L = int(single.lengths[0])
        assert torch.allclose(h[i, :L], hs[0, :L], atol=1e-5)
        assert torch.equal(batch.targets[i, :L], single.targets[0, :L])


def test_batched_greedy_equals_single_and_naive(tiny_llm_any):
    llm = SpeechLLM(tiny_llm_any, dtype="float32")
    texts = ["the weather is warm today and", "rain", "music in the garden"]
    prefix, middle, suffix, _ = _prompt(llm, texts)
    batched = llm.generate(prefix, middle, suffix, max_new_tokens=8)
    for i in range(3):
        single = llm.generate(prefix[i : i + 1], middle[i : i + 1], suffix[i : i + 1], max_new_tokens=8)
        assert single[0] == batched[i]
        ids = torch.cat([prefix[i], middle[i], suffix[i]])[None]
        naive = []
        for _ in range(8):  # no cache, full recompute
            nxt = int(llm.model(ids).logits[0, -1].argmax())
            if nxt == llm.template.eos_id:
                break
            naive.append(nxt)
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
        assert naive == batched[i]
    assert llm.generate(prefix, middle, suffix, max_new_tokens=8, num_beams=1) == batched
    beams = llm.generate(prefix, middle, suffix, max_new_tokens=8, num_beams=3)
    assert len(beams) == 3 and all(len(b) <= 8 for b in beams)


def test_partial_lora_properties(tiny_llm):
    base = SpeechLLM(tiny_llm, dtype="float32")
    lora = SpeechLLM(tiny_llm, dtype="float32", lora_conf=LORA)
    batch = lora.build_inputs(*_prompt(lora, ["the sun is out"], ["good"]))
    # B = 0 at init: the whole model equals the model without LoRA
    assert torch.allclose(lora.hidden_states(batch), base.hidden_states(batch), atol=1e-6)
    for m in lora.model.modules():
        if hasattr(m, "lora_B"):
            torch.nn.init.normal_(m.lora_B, std=0.5)
    # no speech positions: bit-identical to the base LLM
    text_only = lora.build_inputs(*_prompt(lora, ["the sun is out"], ["good"]), middle_is_speech=False)
    assert torch.equal(lora.hidden_states(text_only), base.hidden_states(text_only))
    # gradients reach LoRA only through speech positions
    h = lora.hidden_states(batch)
    first_speech = int(batch.speech_mask[0].nonzero()[0])
    params = [p for n, p in lora.named_parameters() if "lora_" in n]
    g_before = torch.autograd.grad(h[0, :first_speech].sum(), params, retain_graph=True, allow_unused=True)
    assert all(g is None or g.abs().sum() == 0 for g in g_before)
    g_after = torch.autograd.grad(h[0, first_speech:].sum(), params, allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in g_after)


def test_lora_injection_errors(tiny_llm):
    llm = SpeechLLM(tiny_llm, dtype="float32")
    with pytest.raises(ValueError, match="no Linear matches"):
        inject_partial_lora(llm.model, ["query_key_value"])
    lora = SpeechLLM(tiny_llm, dtype="float32", lora_conf=LORA)
    x = torch.randint(0, 100, (1, 5))
    with pytest.raises(ValueError, match="speech mask"):
        with speech_positions(lora.model, torch.ones(1, 3, dtype=torch.bool)):
            lora.model(x)


def test_chat_template_and_errors(tiny_llm, tmp_path):
    llm = SpeechLLM(tiny_llm, dtype="float32", prompt_template="chat")
    text = llm.tokenizer.decode(llm.template.prefix_ids("Hi") + llm.template.suffix_ids())
    assert text == "<s>user\nHi</s>\n<s>assistant\n"
    with pytest.raises(ValueError, match="unknown prompt template"):
        PromptTemplate(llm.tokenizer, "alpaca")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        SpeechLLM(str(tmp_path / "nowhere"))


@pytest.mark.parametrize("lora", [False, True])
def test_prefix_cache_equals_full_forward(tiny_llm_any, lora):
    """Cached prefixes (two instructions mixed in one batch) give the full forward's hidden
    states and the same gradients at the speech embeddings; Partial LoRA stays on the speech."""
    cached = SpeechLLM(tiny_llm_any, dtype="float32", lora_conf=LORA if lora else None)
    full = SpeechLLM(tiny_llm_any, dtype="float32", lora_conf=LORA if lora else None, prefix_cache=False)
    torch.manual_seed(0)
    if lora:
        for m in cached.model.modules():
            if hasattr(m, "lora_B"):
                torch.nn.init.normal_(m.lora_B, std=0.1)
        full.load_state_dict(cached.state_dict())
    t = cached.template
    prefix = [torch.tensor(t.prefix_ids(i)) for i in ("Continue the text.", "Repeat it, please, word by word.", "Continue the text.")]
    suffix = [torch.tensor(t.suffix_ids())] * 3
    resp = [_ids(cached, r) for r in ("and we go out", "no", "the end of it all")]
    assert len(prefix[0]) != len(prefix[1])  # left padding of the cache is exercised
    mid = [torch.randn(n, cached.hidden_size, requires_grad=True) for n in (5, 2, 7)]
    outs, grads = [], []
    for llm in (cached, full):
        batch = llm.build_inputs(prefix, mid, suffix, resp)
        h = llm.hidden_states(batch)
        valid = batch.attention_mask.bool()
        (h[valid] * torch.linspace(-1, 1, h.shape[-1])).sum().backward()
        outs.append(h * valid[..., None])
        grads.append([m.grad.clone() for m in mid])
        for m in mid:
            m.grad = None
    assert cached._prefix_kv and not full._prefix_kv  # the cache was used (one entry per instruction)
    assert len(cached._prefix_kv) == 2
    assert torch.allclose(outs[0], outs[1], atol=1e-5)
    for g_c, g_f in zip(*grads):
        assert g_c.abs().sum() > 0 and torch.allclose(g_c, g_f, atol=1e-5)
