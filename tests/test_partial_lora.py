"""Partial LoRA: exact base output off speech, zero-init identity, gradients only via speech."""

import math

import pytest
import torch
from torch import nn

from espnet_blsp.llm.causal_lm import SpeechLLM
from espnet_blsp.llm.partial_lora import (
    PartialLoRALinear,
    _MaskSlot,
    inject_partial_lora,
    lora_state_dict,
    speech_positions,
)
from espnet_blsp.testing.tiny_llm import make_tiny_llm

LORA = dict(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj", "down_proj"])


@pytest.fixture(scope="module")
def llm_dir(tmp_path_factory):
    return make_tiny_llm(str(tmp_path_factory.mktemp("llama")), arch="llama")


def _nonzero_lora(llm, std=0.3):
    torch.manual_seed(1)
    for m in llm.model.modules():
        if isinstance(m, PartialLoRALinear):
            nn.init.normal_(m.lora_B, std=std)


def _batch(llm, middle_is_speech=True):
    t = llm.template
    prefix = [torch.tensor(t.prefix_ids("Please repeat the following words."))]
    middle = [torch.tensor(t.text_ids("the sun is warm in the garden"))]
    suffix = [torch.tensor(t.suffix_ids())]
    resp = [torch.tensor(t.text_ids("the sun is warm"))]
    return llm.build_inputs(prefix, middle, suffix, resp, middle_is_speech=middle_is_speech)


def test_layer_formula_by_hand():
    torch.manual_seed(0)
    base = nn.Linear(6, 5)
    slot = _MaskSlot()
    layer = PartialLoRALinear(base, slot, r=2, alpha=6, dropout=0.0)
    assert layer.scaling == 3.0 and layer.lora_A.shape == (2, 6) and layer.lora_B.shape == (5, 2)
    assert torch.count_nonzero(layer.lora_B) == 0 and not base.weight.requires_grad
    bound = 1 / math.sqrt(6)  # kaiming_uniform(a=sqrt(5)) on fan_in 6
    assert layer.lora_A.abs().max() <= bound
    nn.init.normal_(layer.lora_B)
    x = torch.randn(2, 3, 6)
    mask = torch.tensor([[False, True, True], [True, False, False]])
    assert torch.equal(layer(x), base(x))  # no mask set: exactly the base
    slot.mask = mask
    want = base(x) + mask[..., None] * (x @ layer.lora_A.t() @ layer.lora_B.t()) * 3.0
    assert torch.allclose(layer(x), want, atol=1e-6)
    assert torch.equal(layer(x)[~mask], base(x)[~mask])  # text rows bit-identical
    slot.mask = torch.ones(2, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="does not match the layer input"):
        layer(x)


def test_lora_masters_stay_float32_under_bf16():
    layer = PartialLoRALinear(nn.Linear(8, 8), _MaskSlot(), r=2, alpha=2, dropout=0.0).to(torch.bfloat16)
    assert layer.base.weight.dtype == torch.bfloat16 and layer.lora_A.dtype == layer.lora_B.dtype == torch.float32
    nn.init.normal_(layer.lora_B)
    layer.slot.mask = torch.ones(1, 3, dtype=torch.bool)
    y = layer(torch.randn(1, 3, 8, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert layer.lora_A.grad.dtype == torch.float32 and layer.lora_A.grad.abs().sum() > 0


def test_no_speech_positions_is_bit_identical_to_base(llm_dir):
    base = SpeechLLM(llm_dir, dtype="float32")
    lora = SpeechLLM(llm_dir, dtype="float32", lora_conf=LORA)
    _nonzero_lora(lora)
    text = _batch(lora, middle_is_speech=False)
    assert not text.speech_mask.any()
    assert torch.equal(lora.hidden_states(text), base.hidden_states(text))
    # also through the full HF forward with an explicit all-False mask
    with speech_positions(lora.model, torch.zeros_like(text.speech_mask)):
        a = lora.model(inputs_embeds=text.inputs_embeds, attention_mask=text.attention_mask).logits
    b = base.model(inputs_embeds=text.inputs_embeds, attention_mask=text.attention_mask).logits
    assert torch.equal(a, b)
    # and with speech, the speech positions (and everything after them) do change
    speech = _batch(lora)
    first = int(speech.speech_mask[0].nonzero()[0])
    h_l, h_b = lora.hidden_states(speech), base.hidden_states(speech)
    assert torch.equal(h_l[0, :first], h_b[0, :first])  # causal: positions before speech untouched
    assert (h_l[0, first:] - h_b[0, first:]).abs().amax(-1).min() > 1e-4


def test_zero_init_b_equals_model_without_lora(llm_dir):
    base = SpeechLLM(llm_dir, dtype="float32")
    lora = SpeechLLM(llm_dir, dtype="float32", lora_conf=LORA)
    batch = _batch(lora)
    assert batch.speech_mask.any()
    assert torch.equal(lora.hidden_states(batch), base.hidden_states(batch))


def test_gradients_only_through_speech_positions(llm_dir):
    lora = SpeechLLM(llm_dir, dtype="float32", lora_conf=LORA)
    _nonzero_lora(lora)
    batch = _batch(lora)
    h = lora.hidden_states(batch)  # (1, T, H)
    first = int(batch.speech_mask[0].nonzero()[0])
    params = [p for n, p in lora.named_parameters() if p.requires_grad]
    assert params and all(".lora_" in n for n, p in lora.named_parameters() if p.requires_grad)
    before = torch.autograd.grad(h[0, :first].pow(2).sum(), params, retain_graph=True, allow_unused=True)
    assert all(g is None or torch.count_nonzero(g) == 0 for g in before)
    after = torch.autograd.grad(h[0, first:].pow(2).sum(), params, allow_unused=True)
    assert all(g is not None and torch.count_nonzero(g) > 0 for g in after)


def test_gradient_checkpointing_keeps_the_speech_mask(llm_dir):
    grads = []
    for ckpt in (False, True):
        # the prefix KV cache (off with checkpointing) takes the prefix from its ids, so the
        # prefix rows of inputs_embeds get no gradient there: compare full forwards
        llm = SpeechLLM(llm_dir, dtype="float32", lora_conf=LORA, gradient_checkpointing=ckpt,
                        prefix_cache=False).train()
        _nonzero_lora(llm)
        batch = _batch(llm)
        emb = batch.inputs_embeds.detach().requires_grad_(True)
        batch.inputs_embeds = emb
        llm.hidden_states(batch).pow(2).sum().backward()
        grads.append([emb.grad] + [p.grad for n, p in llm.named_parameters() if p.requires_grad])
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)


def test_train_mode_keeps_the_frozen_llm_in_eval(llm_dir):
    llm = SpeechLLM(llm_dir, dtype="float32", lora_conf=dict(LORA, dropout=0.1)).train()
    lora_layers = [m for m in llm.model.modules() if isinstance(m, PartialLoRALinear)]
    assert all(m.training and m.dropout.training for m in lora_layers)
    assert not any(m.training for n, m in llm.model.named_modules() if n.endswith("self_attn") or n.endswith("mlp"))
    llm.eval()
    assert not any(m.training for m in llm.modules())


def test_injection_errors_and_state_dict(llm_dir):
    llm = SpeechLLM(llm_dir, dtype="float32")
    with pytest.raises(ValueError, match=r"no Linear matches target_modules \['query_key_value'\].*q_proj"):
        inject_partial_lora(llm.model, ["query_key_value"])
    with pytest.raises(ValueError, match="no Linear matches"):
        inject_partial_lora(llm.model, ["proj"])  # whole name components only
    with pytest.raises(ValueError, match="no Linear matches"):
        inject_partial_lora(llm.model, ["lm_head"])  # the output embedding is never wrapped
    names = inject_partial_lora(llm.model, ["self_attn.q_proj", "o_proj"], r=2)
    assert len(names) == 2 * 2 and all(n.endswith(("q_proj", "o_proj")) for n in names)
    sd = lora_state_dict(llm.model)
    assert sorted(sd) == sorted(f"{n}.lora_{x}" for n in names for x in "AB")
    with pytest.raises(ValueError, match="speech mask"):
        with speech_positions(llm.model, torch.ones(1, 3, dtype=torch.bool)):
            llm.model(torch.randint(0, 100, (1, 5)))
    with pytest.raises(ValueError, match="bool"):
        with speech_positions(llm.model, torch.ones(1, 5)):
            pass
