"""Batched decoding with a KV cache: greedy and beam search.

Prompts arrive right-padded (PromptBatch) and are re-packed LEFT-padded so every row
generates at the same step; position ids count real tokens only, so a batched
hypothesis equals the one decoded alone. Partial LoRA is active in the prefill at the
speech positions and off for generated (text) tokens.
"""

from typing import List, Tuple

import torch

from espnet_blsp.llm.partial_lora import speech_positions


def _left_pad(batch) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    B, T, _ = batch.inputs_embeds.shape
    emb = torch.zeros_like(batch.inputs_embeds)
    attn = torch.zeros_like(batch.attention_mask)
    speech = torch.zeros_like(batch.speech_mask)
    for b in range(B):
        L = int(batch.lengths[b])
        emb[b, T - L :] = batch.inputs_embeds[b, :L]
        attn[b, T - L :] = 1
        speech[b, T - L :] = batch.speech_mask[b, :L]
    return emb, attn, speech


def _logits(llm, hidden: torch.Tensor) -> torch.Tensor:
    return (hidden.float() @ llm.lm_head_weight.float().t())  # (B, V)


def _prefill(llm, emb, attn, speech):
    from transformers import DynamicCache

    cache = DynamicCache()
    pos = (attn.cumsum(-1) - 1).clamp_min(0)
    with speech_positions(llm.model, speech):
        out = llm.model.get_decoder()(
            inputs_embeds=emb, attention_mask=attn, position_ids=pos,
            past_key_values=cache, use_cache=True,
        )
    return out.last_hidden_state[:, -1], out.past_key_values, pos[:, -1]


def _step(llm, tokens, attn, pos, cache):
    with speech_positions(llm.model, None):
        out = llm.model.get_decoder()(
            inputs_embeds=llm.embed(tokens[:, None]), attention_mask=attn,
            position_ids=pos[:, None], past_key_values=cache, use_cache=True,
        )
    return out.last_hidden_state[:, -1], out.past_key_values


def greedy(llm, batch, max_new_tokens: int, repetition_penalty: float = 1.0) -> List[List[int]]:
    emb, attn, speech = _left_pad(batch)
    B = emb.shape[0]
    eos = llm.template.eos_id
    h, cache, pos = _prefill(llm, emb, attn, speech)
    out = [[] for _ in range(B)]
    done = torch.zeros(B, dtype=torch.bool, device=emb.device)
    for _ in range(max_new_tokens):
        logits = _logits(llm, h)
        if repetition_penalty != 1.0:
            for b in range(B):
                if out[b]:
                    seen = torch.tensor(sorted(set(out[b])), device=logits.device)
                    v = logits[b, seen]
                    logits[b, seen] = torch.where(v > 0, v / repetition_penalty, v * repetition_penalty)
        nxt = logits.argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, eos), nxt)
        for b in range(B):
            if not done[b] and int(nxt[b]) != eos:
                out[b].append(int(nxt[b]))
        done |= nxt == eos
        if bool(done.all()):
            break
        attn = torch.cat([attn, torch.ones_like(attn[:, :1])], dim=1)
        pos = pos + 1
        h, cache = _step(llm, nxt, attn, pos, cache)
    return out


def beam_search(llm, batch, max_new_tokens: int, num_beams: int, length_penalty: float = 1.0) -> List[List[int]]:
    """Beam search; beams live in the batch dimension and the cache is reordered."""
    emb, attn, speech = _left_pad(batch)
    B, K = emb.shape[0], num_beams
    eos = llm.template.eos_id
    rep = lambda t: t.repeat_interleave(K, dim=0)  # noqa: E731
    h, cache, pos = _prefill(llm, rep(emb), rep(attn), rep(speech))
    attn = rep(attn)
    scores = torch.zeros(B, K, device=emb.device)
    scores[:, 1:] = float("-inf")  # start from one live beam per utterance
    seqs = [[[] for _ in range(K)] for _ in range(B)]
    finished: List[List[Tuple[float, List[int]]]] = [[] for _ in range(B)]
    for step in range(max_new_tokens):
        logp = torch.log_softmax(_logits(llm, h), -1).view(B, K, -1)  # (B, K, V)
        V = logp.shape[-1]
        cand = (scores[:, :, None] + logp).view(B, -1)  # (B, K*V)
        top, idx = cand.topk(2 * K, dim=-1)
        new_scores = torch.full((B, K), float("-inf"), device=emb.device)
        new_tokens = torch.full((B, K), eos, dtype=torch.long, device=emb.device)
        src = torch.zeros(B, K, dtype=torch.long, device=emb.device)
        new_seqs = [[[] for _ in range(K)] for _ in range(B)]
        for b in range(B):
            k = 0
            for s, i in zip(top[b].tolist(), idx[b].tolist()):
                beam, tok = divmod(i, V)
                if s == float("-inf"):
                    break
                if tok == eos:
                    hyp = seqs[b][beam]
                    finished[b].append((s / max(len(hyp) + 1, 1) ** length_penalty, hyp))
                    continue
                new_scores[b, k], new_tokens[b, k], src[b, k] = s, tok, beam
                new_seqs[b][k] = seqs[b][beam] + [tok]
                k += 1
                if k == K:
                    break
        # stop an utterance once its best finished hypothesis beats every live beam
        best_live = new_scores.max(-1).values
        if all(
            len(finished[b]) >= K
            or (finished[b] and max(f[0] for f in finished[b]) >= best_live[b] / max(step + 2, 1) ** length_penalty)
            or best_live[b] == float("-inf")
            for b in range(B)
        ):
            break
        scores, seqs = new_scores, new_seqs
        order = (src + torch.arange(B, device=emb.device)[:, None] * K).view(-1)
        cache.reorder_cache(order)
        attn = torch.cat([attn, torch.ones_like(attn[:, :1])], dim=1)
        pos = pos + 1
        h, cache = _step(llm, new_tokens.view(-1), attn, pos, cache)
    results = []
    for b in range(B):
        pool = finished[b] or [
            (float(scores[b, k]) / max(len(seqs[b][k]), 1) ** length_penalty, seqs[b][k]) for k in range(K)
        ]
        results.append(max(pool, key=lambda x: x[0])[1])
    return results
