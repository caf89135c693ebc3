"""SpeechLLM prompt assembly, batched hidden states and batched greedy/beam decoding.

Parametrised over a tiny Llama (with BOS) and a tiny Qwen2 (no BOS), float32.
"""

import pytest
import torch
from torch import nn

from espnet_blsp.llm.causal_lm import SpeechLLM
from espnet_blsp.llm.decoding import beam_search, greedy
from espnet_blsp.llm.partial_lora import PartialLoRALinear
from espnet_blsp.testing.tiny_llm import make_tiny_llm

LORA = dict(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj", "up_proj"])
TEXTS = ["the weather is warm today and the river is long", "rain", "music in the garden"]


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def llm(request, tmp_path_factory):
    """A tiny LLM with non-zero Partial LoRA, so speech and text paths differ."""
    path = make_tiny_llm(str(tmp_path_factory.mktemp(request.param)), arch=request.param)
    m = SpeechLLM(path, dtype="float32", lora_conf=LORA)
    torch.manual_seed(0)
    for layer in m.model.modules():
        if isinstance(layer, PartialLoRALinear):
            nn.init.normal_(layer.lora_B, std=0.2)
    with torch.no_grad():  # a sharper head, so greedy choices are far from ties
        m.lm_head_weight.mul_(4.0)
    return m.eval()


def _prompts(llm, texts, speech: bool):
    t = llm.template
    prefix = [torch.tensor(t.prefix_ids("Continue the following text.")) for _ in texts]
    suffix = [torch.tensor(t.suffix_ids()) for _ in texts]
    ids = [torch.tensor(t.text_ids(x)) for x in texts]
    if not speech:
        return prefix, ids, suffix
    g = torch.Generator().manual_seed(1)  # "adapter outputs": embeddings of the words plus noise
    middle = [llm.embed(i).detach() + 0.02 * torch.randn(len(i), llm.hidden_size, generator=g) for i in ids]
    return prefix, middle, suffix


@torch.no_grad()
def _naive_greedy(llm, prefix, middle, suffix, speech, steps, repetition_penalty=1.0):
    """No cache: the full training-path forward over prompt + tokens so far, every step."""
    out = []
    for _ in range(steps):
        b = llm.build_inputs([prefix], [middle], [suffix], [torch.tensor(out, dtype=torch.long)],
                             add_eos=False, middle_is_speech=speech)
        logits = (llm.hidden_states(b)[0, int(b.lengths[0]) - 1] @ llm.lm_head_weight.t()).float()
        if out and repetition_penalty != 1.0:
            seen = torch.tensor(sorted(set(out)))
            v = logits[seen]
            logits[seen] = torch.where(v > 0, v / repetition_penalty, v * repetition_penalty)
        nxt = int(logits.argmax())
        if nxt == llm.template.eos_id:
            break
        out.append(nxt)
    return out


def test_targets_and_masks_by_hand(llm):
    eos = llm.template.eos_id
    prefix = [torch.tensor([11, 12, 13]), torch.tensor([11, 12])]
    middle = [torch.tensor([21, 22]), torch.randn(3, llm.hidden_size)]
    suffix = [torch.tensor([31]), torch.tensor([31, 32])]
    response = [torch.tensor([41, 42]), torch.tensor([], dtype=torch.long)]
    b = llm.build_inputs(prefix, middle, suffix, response)
    # sample 0: 3 prefix + 2 middle + 1 suffix + 2 response + EOS = 9; sample 1: 2 + 3 + 2 = 7
    assert b.lengths.tolist() == [9, 7] and b.inputs_embeds.shape == (2, 9, llm.hidden_size)
    assert b.attention_mask.tolist() == [[1] * 9, [1] * 7 + [0, 0]]
    assert b.position_ids.tolist() == [list(range(9)), list(range(7)) + [0, 0]]
    # position 5 (the suffix token) predicts 41, 6 predicts 42, 7 (token 42) predicts EOS, 8 (EOS) nothing
    assert b.targets.tolist() == [[-100] * 5 + [41, 42, eos, -100], [-100] * 9]  # empty response: no targets
    assert b.speech_mask.tolist() == [[0, 0, 0, 1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 1, 0, 0, 0, 0]]
    # input KL: the middle positions P .. P+n-1: sample 0 3 .. 3+2-1 = 3, 4; sample 1 2 .. 2+3-1 = 2, 3, 4
    assert b.input_mask.tolist() == [[0, 0, 0, 1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 1, 0, 0, 0, 0]]
    assert torch.equal(b.inputs_embeds[0, :3], llm.embed(prefix[0]))
    assert torch.equal(b.inputs_embeds[1, 2:5], middle[1]) and not b.inputs_embeds[1, 7:].any()
    text = llm.build_inputs(prefix, middle, suffix, None, middle_is_speech=False)
    assert not text.speech_mask.any() and (text.targets == -100).all() and text.lengths.tolist() == [6, 7]
    no_eos = llm.build_inputs(prefix[:1], middle[:1], suffix[:1], response[:1], add_eos=False)
    assert no_eos.targets[0].tolist() == [-100] * 5 + [41, 42, -100][: no_eos.targets.shape[1] - 5]
    with pytest.raises(ValueError, match="middle must be"):
        llm.build_inputs(prefix[:1], [torch.randn(2, 7)], suffix[:1])
    with pytest.raises(ValueError, match="one entry per sample"):
        llm.build_inputs(prefix, middle[:1], suffix)


def test_gradients_reach_middle_embeddings(llm):
    prefix, middle, suffix = _prompts(llm, TEXTS[:2], speech=True)
    middle = [m.clone().requires_grad_(True) for m in middle]
    b = llm.build_inputs(prefix, middle, suffix, [torch.tensor([5, 6])] * 2)
    h = llm.hidden_states(b)
    h[b.targets != -100].pow(2).sum().backward()
    assert all(m.grad is not None and m.grad.abs().amax(-1).min() > 0 for m in middle)


def test_batched_hidden_states_equal_single(llm):
    for speech in (True, False):
        prefix, middle, suffix = _prompts(llm, TEXTS, speech)
        resp = [torch.tensor(llm.template.text_ids(x)) for x in ["and we go out", "no", "is quiet"]]
        batch = llm.build_inputs(prefix, middle, suffix, resp, middle_is_speech=speech)
        h = llm.hidden_states(batch)
        for i in range(len(TEXTS)):
            one = llm.build_inputs(prefix[i : i + 1], middle[i : i + 1], suffix[i : i + 1], resp[i : i + 1],
                                   middle_is_speech=speech)
            L = int(one.lengths[0])
            assert torch.equal(batch.targets[i, :L], one.targets[0]) and (batch.targets[i, L:] == -100).all()
            assert torch.allclose(h[i, :L], llm.hidden_states(one)[0], atol=1e-5)


@pytest.mark.parametrize("speech", [True, False])
def test_batched_greedy_equals_single_and_naive(llm, speech):
    prefix, middle, suffix = _prompts(llm, TEXTS, speech)
    steps = 8
    batched = llm.generate(prefix, middle, suffix, middle_is_speech=speech, max_new_tokens=steps)
    assert len(batched) == 3 and all(len(x) <= steps for x in batched)
    for i in range(3):
        single = llm.generate(prefix[i : i + 1], middle[i : i + 1], suffix[i : i + 1],
                              middle_is_speech=speech, max_new_tokens=steps)
        assert single[0] == batched[i]
        assert _naive_greedy(llm, prefix[i], middle[i], suffix[i], speech, steps) == batched[i]
    # the beam search code path itself with one beam is greedy decoding
    batch = llm.build_inputs(prefix, middle, suffix, None, middle_is_speech=speech)
    assert beam_search(llm, batch, steps, num_beams=1) == batched
    assert beam_search(llm, batch, steps, 1, repetition_penalty=1.5) == greedy(llm, batch, steps, 1.5)
    assert llm.generate(prefix, middle, suffix, max_new_tokens=0) == [[], [], []]


def test_greedy_stops_at_eos(llm):
    prefix, middle, suffix = _prompts(llm, TEXTS, speech=True)
    first = llm.generate(prefix, middle, suffix, max_new_tokens=6)
    w = llm.lm_head_weight
    eos, tok = llm.template.eos_id, first[0][1]
    saved = w[eos].clone()
    try:
        with torch.no_grad():  # EOS now scores 1.5x the second token of sample 0 wherever that one wins
            w[eos] = 1.5 * w[tok]
        batched = llm.generate(prefix, middle, suffix, max_new_tokens=6)
        assert len(batched[0]) <= 1 and all(eos not in x for x in batched)
        assert beam_search(llm, llm.build_inputs(prefix, middle, suffix, None), 6, num_beams=1) == batched
        for i in range(3):
            one = llm.generate(prefix[i : i + 1], middle[i : i + 1], suffix[i : i + 1], max_new_tokens=6)
            assert one[0] == batched[i]
            assert _naive_greedy(llm, prefix[i], middle[i], suffix[i], True, 6) == batched[i]
    finally:
        with torch.no_grad():
            w[eos] = saved


def test_repetition_penalty_matches_naive(llm):
    prefix, middle, suffix = _prompts(llm, TEXTS, speech=True)
    out = llm.generate(prefix, middle, suffix, max_new_tokens=8, repetition_penalty=1.5)
    for i in range(3):
        assert out[i] == _naive_greedy(llm, prefix[i], middle[i], suffix[i], True, 8, repetition_penalty=1.5)


def test_beam_search_batched_equals_single(llm):
    prefix, middle, suffix = _prompts(llm, TEXTS, speech=True)
    for lp in (1.0, 0.0):
        beams = llm.generate(prefix, middle, suffix, max_new_tokens=6, num_beams=3, length_penalty=lp)
        assert len(beams) == 3 and all(len(x) <= 6 and llm.template.eos_id not in x for x in beams)
        for i in range(3):
            one = llm.generate(prefix[i : i + 1], middle[i : i + 1], suffix[i : i + 1], max_new_tokens=6,
                               num_beams=3, length_penalty=lp)
            assert one[0] == beams[i]


@torch.no_grad()
def _normalised_score(llm, ids, tokens, max_new_tokens, length_penalty):
    """sum log p(tokens [+ EOS]) / (generated length incl. EOS) ** length_penalty, no cache."""
    ended = len(tokens) < max_new_tokens  # a shorter hypothesis was ended by EOS
    b = llm.build_inputs([ids[:0]], [ids], [ids[:0]], [torch.tensor(tokens, dtype=torch.long)], add_eos=ended)
    m = b.targets[0] != -100
    logp = torch.log_softmax((llm.hidden_states(b)[0][m] @ llm.lm_head_weight.t()).float(), -1)
    return float(logp.gather(1, b.targets[0][m][:, None]).sum()) / int(m.sum()) ** length_penalty


def test_beam_search_matches_hf_generate(llm):
    """Text prompts: our beam search gives transformers' beam search result (EOS made likely)."""
    t, w = llm.template, llm.lm_head_weight
    saved, n_short = w[t.eos_id].clone(), 0
    try:
        for text in TEXTS:
            ids = torch.tensor(t.prefix_ids("Continue the following text.") + t.text_ids(text) + t.suffix_ids())
            g = llm.generate([ids[:0]], [ids], [ids[:0]], middle_is_speech=False, max_new_tokens=3)[0]
            with torch.no_grad():  # EOS competes with the greedy tokens
                w[t.eos_id] = 0.95 * w[g[1]] + 0.05 * w[g[0]]
            for K, lp in [(2, 1.0), (3, 0.0), (3, 1.0), (4, 2.0)]:
                hf = llm.model.generate(
                    ids[None], attention_mask=torch.ones_like(ids[None]), max_new_tokens=6, num_beams=K,
                    do_sample=False, length_penalty=lp, early_stopping=False, eos_token_id=t.eos_id,
                    pad_token_id=t.eos_id,
                )[0, len(ids):].tolist()
                hf = [x for x in hf if x != t.eos_id]
                ours = llm.generate([ids[:0]], [ids], [ids[:0]], middle_is_speech=False, max_new_tokens=6,
                                    num_beams=K, length_penalty=lp)[0]
                n_short += len(ours) < 6
                if ours != hf:  # only a tie may be broken differently: equal normalised scores
                    assert _normalised_score(llm, ids, ours, 6, lp) == pytest.approx(
                        _normalised_score(llm, ids, hf, 6, lp), abs=1e-5)
            with torch.no_grad():
                w[t.eos_id] = saved
    finally:
        with torch.no_grad():
            w[t.eos_id] = saved
    assert n_short > 0  # some hypotheses ended with EOS: the finishing logic was exercised


def test_bf16_model_with_losses_and_bad_paths(llm, tmp_path):
    from espnet_blsp.losses import response_ce

    path = llm.model.name_or_path
    m = SpeechLLM(path, dtype="bfloat16", lora_conf=LORA).train()
    assert m.dtype == torch.bfloat16 and m.lm_head_weight.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in m.parameters() if p.requires_grad)
    prefix, middle, suffix = _prompts(m, TEXTS[:2], speech=True)
    b = m.build_inputs(prefix, [x.float().requires_grad_(True) for x in middle], suffix, [torch.tensor([7, 8])] * 2)
    h = m.hidden_states(b)  # (B, T, H) bf16
    mask = b.targets != -100
    ce, _ = response_ce(h[mask], m.lm_head_weight, b.targets[mask])
    ce.backward()
    assert h.dtype == torch.bfloat16 and torch.isfinite(ce)
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in m.parameters() if p.requires_grad)
    assert len(m.eval().generate(prefix, middle, suffix, max_new_tokens=3)) == 2
    with pytest.raises(FileNotFoundError, match="nowhere"):
        SpeechLLM(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="no-such-org/no-such-llm"):
        SpeechLLM("no-such-org/no-such-llm")


def test_cli_repetition_penalty_reaches_the_decoder(llm):
    """--repetition_penalty of bin/blsp_inference (and of the CLIs that share its decode
    config) is parsed and used: decode_text's output is llm.generate's with that penalty."""
    from espnet_blsp.bin import asr_probe, blsp_inference, learning_curve

    for mod in (blsp_inference, learning_curve, asr_probe):
        opts = {a.dest: a for a in mod.get_parser()._actions}
        assert opts["repetition_penalty"].default == 1.0 and opts["repetition_penalty"].type is float
    args = blsp_inference.get_parser().parse_args(
        ["--data_dir", "d", "--out_dir", "o", "--batch_size", "3", "--max_new_tokens", "8",
         "--repetition_penalty", "1.5"])
    prefix, ids, suffix = _prompts(llm, TEXTS, speech=False)
    keys = [f"u{i}" for i in range(3)]

    class Collect(dict):
        def write(self, items):
            self.update(items)

    got = Collect()
    blsp_inference.decode_text(llm, keys, dict(zip(keys, TEXTS)), dict(zip(keys, prefix)), args, got, "cpu")
    want = llm.generate(prefix, ids, suffix, middle_is_speech=False, max_new_tokens=8, repetition_penalty=1.5)
    plain = llm.generate(prefix, ids, suffix, middle_is_speech=False, max_new_tokens=8)
    assert want != plain  # the penalty changes this tiny model's output, so the check can fail
    assert got == {k: llm.tokenizer.decode(h, skip_special_tokens=True) for k, h in zip(keys, want)}


def test_decode_dir_refuses_other_options_on_resume(tmp_path, caplog):
    from espnet_blsp.bin.blsp_inference import check_decode_opts, decode_opts, get_parser

    a = get_parser().parse_args(["--data_dir", "d", "--out_dir", "o", "--repetition_penalty", "1.2"])
    b = get_parser().parse_args(["--data_dir", "d", "--out_dir", "o", "--batch_size", "1"])
    check_decode_opts(tmp_path, decode_opts(a), resuming=False)  # a new dir: recorded
    check_decode_opts(tmp_path, decode_opts(a), resuming=True)  # same options: fine
    with pytest.raises(SystemExit, match=r"repetition_penalty: 1.2 then, 1.0 now"):
        check_decode_opts(tmp_path, decode_opts(b), resuming=True)
    (tmp_path / "decode_opts.json").unlink()  # a dir of an older version: resumed with a warning
    check_decode_opts(tmp_path, decode_opts(b), resuming=True)
    assert "no decode_opts.json" in caplog.text
    assert decode_opts(b) == decode_opts(get_parser().parse_args(["--data_dir", "d", "--out_dir", "o"]))  # batch size is not one
