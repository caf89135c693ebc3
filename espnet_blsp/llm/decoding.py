"""Batched decoding with a KV cache: greedy and beam search (our own loop, not HF ``generate``).

Usage::

    batch = llm.build_inputs(prefix, middle, suffix, None)
    hyps = decode(llm, batch, max_new_tokens=64, num_beams=1)   # List[List[int]], no EOS

How it works:
1. The right-padded prompts are re-packed LEFT-padded, so every row emits its next token at
   the same step; position ids are ``cumsum(attention_mask) - 1``, so they count real tokens
   only and a row decoded in a batch equals the row decoded alone.
2. One prefill forward over the prompts, with Partial LoRA active at the speech positions.
3. Step-wise decoding of one token per row with a ``DynamicCache``; LoRA is off (generated
   tokens are text). Only the last position's hidden state goes through the lm_head.
4. Rows (greedy) or utterances (beam search) that are finished are dropped from the batch and
   the cache, so a long hypothesis does not make the others pay for its steps.

Greedy stops a row at EOS or after ``max_new_tokens``; ``greedy_steps`` is the same loop as a
generator of the tokens of each step (for streaming). Beam search keeps ``num_beams`` beams per
utterance in the batch dimension (the cache is reordered every step); a hypothesis ending in
EOS is scored ``sum log p / L ** length_penalty`` with L = generated tokens including the EOS;
an utterance is done when it holds ``num_beams`` finished hypotheses and none of its live beams
can beat the worst of them (HF's ``early_stopping=False`` rule), or at ``max_new_tokens``,
where its live beams join the finished pool. ``num_beams=1`` gives the greedy result.
``repetition_penalty`` (CTRL; HF semantics: a seen token's logit is divided by the penalty if
positive, multiplied if negative) counts the generated tokens only, not the prompt, so a
speech prompt and its transcript are treated alike.
"""

import functools
import inspect
from typing import Iterator, List, Optional, Tuple

import torch

from espnet_blsp.llm.partial_lora import speech_positions


def _left_pad(batch) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded (B, T, ...) -> left-padded embeds (B, T, H), attention (B, T), speech (B, T)."""
    B, T, _ = batch.inputs_embeds.shape
    dev = batch.inputs_embeds.device
    ar = torch.arange(T, device=dev)
    shift = (T - batch.lengths)[:, None]  # (B, 1) number of left pads
    src = (ar[None] - shift).clamp_min(0)  # (B, T) source column in the right-padded batch
    real = ar[None] >= shift  # (B, T)
    emb = batch.inputs_embeds.gather(1, src[..., None].expand(-1, -1, batch.inputs_embeds.shape[-1]))
    emb = emb * real[..., None].to(emb.dtype)
    speech = batch.speech_mask.gather(1, src) & real
    return emb, real.long(), speech


@functools.lru_cache(maxsize=None)
def cache_kwarg(decoder_type: type) -> str:
    """transformers >= 5.24 names the KV-cache argument ``cache`` (``past_key_values`` before)."""
    return "cache" if "cache" in inspect.signature(decoder_type.forward).parameters else "past_key_values"


def _forward(llm, embeds, attn, pos, cache, speech=None) -> torch.Tensor:
    """One decoder call that extends ``cache``; returns the last position's hidden state (N, H)."""
    decoder = llm.decoder()
    with speech_positions(llm.model, speech):
        out = decoder(
            inputs_embeds=embeds, attention_mask=attn, position_ids=pos, use_cache=True,
            **{cache_kwarg(type(decoder)): cache},
        )
    return out.last_hidden_state[:, -1]


def _next_logits(llm, h: torch.Tensor, seen: Optional[torch.Tensor], repetition_penalty: float) -> torch.Tensor:
    """Float32 next-token logits (N, V) from the last hidden states (N, H), penalty applied."""
    logits = llm.model.get_output_embeddings()(h).float()
    if repetition_penalty != 1.0:
        penalised = torch.where(logits > 0, logits / repetition_penalty, logits * repetition_penalty)
        logits = torch.where(seen, penalised, logits)
    return logits


def _prefill(llm, batch):
    from transformers import DynamicCache

    emb, attn, speech = _left_pad(batch)
    pos = (attn.cumsum(-1) - 1).clamp_min(0)  # (B, T) real tokens count 0..L_b-1
    cache = DynamicCache(config=llm.model.config)
    h = _forward(llm, emb, attn, pos, cache, speech)  # (B, H)
    return h, cache, attn, batch.lengths.clone()  # next position = L_b


def decode(
    llm,
    batch,
    max_new_tokens: int = 64,
    num_beams: int = 1,
    length_penalty: float = 1.0,
    repetition_penalty: float = 1.0,
) -> List[List[int]]:
    """Greedy (``num_beams == 1``) or beam search over a right-padded PromptBatch (no targets
    needed). Returns per sample the new token ids without EOS."""
    if num_beams < 1:
        raise ValueError(f"num_beams must be >= 1, got {num_beams}")
    if max_new_tokens < 0 or repetition_penalty <= 0:
        raise ValueError(
            f"bad decoding options: max_new_tokens={max_new_tokens} (>= 0), "
            f"repetition_penalty={repetition_penalty} (> 0)"
        )
    if max_new_tokens == 0:
        return [[] for _ in range(batch.lengths.shape[0])]
    with torch.no_grad():
        if num_beams == 1:
            return greedy(llm, batch, max_new_tokens, repetition_penalty)
        return beam_search(llm, batch, max_new_tokens, num_beams, length_penalty, repetition_penalty)


def greedy(llm, batch, max_new_tokens: int, repetition_penalty: float = 1.0) -> List[List[int]]:
    """Batched greedy decoding; see the module docstring."""
    out: List[List[int]] = [[] for _ in range(batch.lengths.shape[0])]
    for step in greedy_steps(llm, batch, max_new_tokens, repetition_penalty):
        for b, tok in step:
            out[b].append(tok)
    return out


@torch.no_grad()
def greedy_steps(
    llm, batch, max_new_tokens: int, repetition_penalty: float = 1.0
) -> Iterator[List[Tuple[int, int]]]:
    """Batched greedy decoding, one step at a time: yields the ``(sample, token)`` pairs
    emitted at each step (EOS excluded; a finished sample no longer appears). ``greedy``
    collects them; a streaming caller shows each token as it comes."""
    eos = llm.template.eos_id
    if max_new_tokens <= 0:
        return
    h, cache, attn, pos = _prefill(llm, batch)
    B = h.shape[0]
    active = torch.arange(B, device=h.device)  # original row of each batch row
    # (B, V) tokens emitted so far; only needed (and only allocated) for a repetition penalty
    seen = torch.zeros(B, llm.vocab_size, dtype=torch.bool, device=h.device) if repetition_penalty != 1.0 else None
    for step in range(max_new_tokens):
        nxt = _next_logits(llm, h, seen, repetition_penalty).argmax(-1)  # (A,)
        yield [(b, tok) for b, tok in zip(active.tolist(), nxt.tolist()) if tok != eos]
        keep = nxt != eos
        if step == max_new_tokens - 1 or not bool(keep.any()):
            break
        if not bool(keep.all()):  # drop finished rows from the batch and the cache
            idx = keep.nonzero()[:, 0]
            cache.reorder_cache(idx)
            active, nxt, attn, pos = active[idx], nxt[idx], attn[idx], pos[idx]
            seen = seen[idx] if seen is not None else None
        if seen is not None:
            seen[torch.arange(len(nxt), device=nxt.device), nxt] = True
        attn = torch.cat([attn, attn.new_ones(len(nxt), 1)], dim=1)
        h = _forward(llm, llm.embed(nxt[:, None]), attn, pos[:, None], cache)
        pos = pos + 1


def beam_search(
    llm,
    batch,
    max_new_tokens: int,
    num_beams: int,
    length_penalty: float = 1.0,
    repetition_penalty: float = 1.0,
) -> List[List[int]]:
    """Batched beam search; beams live in the batch dimension (row = utterance * K + beam)."""
    eos, K = llm.template.eos_id, num_beams
    h, cache, attn, pos = _prefill(llm, batch)  # prefill each prompt once, then copy K times
    B, dev = h.shape[0], h.device
    cache.batch_repeat_interleave(K)
    h, attn, pos = h.repeat_interleave(K, 0), attn.repeat_interleave(K, 0), pos.repeat_interleave(K, 0)
    scores = torch.zeros(B, K, device=dev)  # sum of log-probs of each live beam
    scores[:, 1:] = float("-inf")  # one live beam per utterance at the start
    hist = torch.zeros(B * K, 0, dtype=torch.long, device=dev)  # (rows, step) generated tokens
    seen = torch.zeros(B * K, llm.vocab_size, dtype=torch.bool, device=dev)
    alive = list(range(B))  # utterance of each group of K rows
    finished: List[List[Tuple[float, List[int]]]] = [[] for _ in range(B)]  # best K, sorted

    def add(b: int, score: float, tokens: List[int]) -> None:
        finished[b].append((score, tokens))
        finished[b].sort(key=lambda x: -x[0])
        del finished[b][K:]

    for step in range(max_new_tokens):
        cur_len = step + 1
        logp = torch.log_softmax(_next_logits(llm, h, seen, repetition_penalty), -1)  # (A*K, V)
        V = logp.shape[-1]
        A = len(alive)  # utterances still running
        cand = (scores.view(-1, 1) + logp).view(A, K * V)  # (A*K, V) -> (A, K*V)
        top, idx = cand.topk(min(2 * K, K * V), dim=-1)  # (A, 2K)
        top_l, beam_l, tok_l = top.tolist(), (idx // V).tolist(), (idx % V).tolist()
        hist_l = hist.tolist()
        inf = float("-inf")
        new_scores, new_src, new_tok = [[inf] * K for _ in alive], [[0] * K for _ in alive], [[eos] * K for _ in alive]
        keep_utts = []
        for i, b in enumerate(alive):
            n_live = 0
            for rank, (s, beam, tok) in enumerate(zip(top_l[i], beam_l[i], tok_l[i])):
                if s == inf or n_live == K:
                    break
                if tok == eos:
                    if rank < K:  # an EOS ranked below the K best is not a candidate
                        add(b, s / cur_len**length_penalty, hist_l[i * K + beam])
                    continue
                new_scores[i][n_live], new_src[i][n_live], new_tok[i][n_live] = s, beam, tok
                n_live += 1
            best_live = new_scores[i][0] / cur_len**length_penalty  # -inf when no beam is live
            done = n_live == 0 or (len(finished[b]) == K and finished[b][-1][0] >= best_live)
            if not done:
                keep_utts.append(i)
        if step == max_new_tokens - 1 or not keep_utts:
            # out of steps: the live beams of the utterances still running join the pool
            for i in keep_utts:
                for s, beam, tok in zip(new_scores[i], new_src[i], new_tok[i]):
                    if s != inf:
                        add(alive[i], s / cur_len**length_penalty, hist_l[i * K + beam] + [tok])
            break
        scores = torch.tensor([new_scores[i] for i in keep_utts], device=dev)  # (A', K)
        src = torch.tensor([new_src[i] for i in keep_utts], device=dev)  # (A', K)
        toks = torch.tensor([new_tok[i] for i in keep_utts], device=dev).view(-1)  # (A'*K,)
        keep = torch.tensor(keep_utts, device=dev)
        order = (src + keep[:, None] * K).view(-1)  # rows to continue, (A'*K,)
        cache.reorder_cache(order)
        hist = torch.cat([hist[order], toks[:, None]], dim=1)
        seen = seen[order]
        seen[torch.arange(len(toks), device=dev), toks] = True
        attn, pos = attn[order], pos[order]
        alive = [alive[i] for i in keep_utts]
        attn = torch.cat([attn, attn.new_ones(len(toks), 1)], dim=1)
        h = _forward(llm, llm.embed(toks[:, None]), attn, pos[:, None], cache)
        pos = pos + 1
    return [finished[b][0][1] if finished[b] else [] for b in range(B)]
