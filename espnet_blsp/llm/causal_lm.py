"""The frozen causal LM: prompt assembly, final hidden states and batched decoding.

Usage::

    llm = SpeechLLM("exp/llm/Qwen2-7B-Instruct", dtype="bfloat16", prompt_template="chat",
                    lora_conf=dict(r=16, alpha=16, dropout=0.05, target_modules=["q_proj", "v_proj"]))
    t = llm.template
    batch = llm.build_inputs(prefix, middle, suffix, response)    # lists of per-utterance tensors
    h = llm.hidden_states(batch)                                   # (B, T, H), no lm_head
    hyps = llm.generate(prefix, middle, suffix, max_new_tokens=64) # List[List[int]]

Prompt layout of sample b (right-padded to T in a batch)::

    position  0 .. P-1   P .. P+n-1   P+n .. P+n+S-1   P+n+S .. P+n+S+R-1   P+n+S+R
    content   prefix     middle       suffix           response             EOS
              (ids)      (speech emb  (ids)            (ids)
                          or text ids)

    targets[t]    = the token at t+1 for t = P+n+S-1 .. P+n+S+R-1 (y_1 .. y_R, EOS), else -100
    input_mask[t] = True for t = P .. P+n-1 (the n middle positions: the input KL compares the
                    output at transcript token x_i with the output at speech vector s_i; each
                    predicts the token after it, as in the official BLSP-KD code)
    speech_mask   = True at P .. P+n-1 when the middle is speech (Partial LoRA is active there)
"""

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from espnet_blsp.llm.partial_lora import (
    PartialLoRALinear,
    checkpoint_context_fn,
    inject_partial_lora,
    speech_positions,
)
from espnet_blsp.llm.prompt import PromptTemplate
from espnet_blsp.utils.dtype import torch_dtype

IGNORE_ID = -100


@dataclass
class PromptBatch:
    """A right-padded batch of prompts (see the module docstring for the layout).

    inputs_embeds (B, T, H) in the LLM dtype; attention_mask (B, T) long; position_ids (B, T)
    long, 0..L_b-1 per sample (0 at padding); speech_mask (B, T) bool; targets (B, T) long,
    already shifted: targets[b, t] is the token predicted FROM position t, -100 elsewhere;
    input_mask (B, T) bool, True at the n middle positions (the input-KL rows); lengths (B,) long.
    """

    inputs_embeds: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    speech_mask: torch.Tensor
    targets: torch.Tensor
    input_mask: torch.Tensor
    lengths: torch.Tensor
    prefix_ids: Optional[List[Tuple[int, ...]]] = None  # per sample, for the prefix KV cache


class SpeechLLM(nn.Module):
    """Any ``AutoModelForCausalLM`` (Llama, Qwen2, SmolLM2, ...), frozen, with optional Partial LoRA.

    Args:
        model_name_or_path: local checkpoint dir with the model and its tokenizer (a hub id is
            only looked up in the local HF cache; nothing is downloaded).
        dtype: float32 | bfloat16 | float16 for the frozen weights, or auto (bfloat16 where the
            hardware runs it natively, else float32; espnet_blsp.utils.dtype).
        attn_implementation: sdpa | eager | flash_attention_2 (as transformers names them).
        prompt_template: blsp | chat (:class:`PromptTemplate`).
        lora_conf: dict(r, alpha, dropout, target_modules) for Partial LoRA, or None.
        gradient_checkpointing: recompute each decoder layer in backward (LoRA-mask aware).
        prefix_cache: run each distinct prompt prefix (template header + instruction) once,
            keep its keys/values and final hidden states, and run the decoder on the rest of
            each prompt only. The prefix depends on no trainable weight (it holds no speech,
            so Partial LoRA is off there), so this changes nothing but the cost: with a chat
            template the prefix is ~40 % of a mini training prompt. Off with
            ``gradient_checkpointing``.
    """

    def __init__(
        self,
        model_name_or_path: str,
        dtype: str = "bfloat16",
        attn_implementation: str = "sdpa",
        prompt_template: str = "blsp",
        lora_conf: Optional[dict] = None,
        gradient_checkpointing: bool = False,
        prefix_cache: bool = True,
    ):
        super().__init__()
        from transformers import AutoModelForCausalLM, AutoTokenizer

        dtype = torch_dtype(dtype, what="LLM dtype")  # auto: bfloat16 where it is native (CUDA if available, else this CPU)
        path = os.path.expanduser(str(model_name_or_path))
        local = os.path.isdir(path)
        if not local and (os.path.isabs(path) or path.startswith(".") or os.path.exists(path)):
            raise FileNotFoundError(f"LLM checkpoint directory not found: {model_name_or_path}")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self.model = AutoModelForCausalLM.from_pretrained(
                path, dtype=dtype, attn_implementation=attn_implementation, local_files_only=True
            )
        except (OSError, ValueError) as e:
            if local and not isinstance(e, OSError):
                raise
            where = "directory" if local else "(not a directory, and not in the local HF cache)"
            raise FileNotFoundError(
                f"cannot load an LLM and its tokenizer from {model_name_or_path} {where}: {e}"
            ) from None
        for p in self.model.parameters():
            p.requires_grad_(False)
        if lora_conf:
            inject_partial_lora(self.model, **lora_conf)
        if gradient_checkpointing:
            kwargs = {
                "use_reentrant": False,  # context_fn: the recompute sees the forward's speech mask
                "context_fn": checkpoint_context_fn(self.model),
            }
            if hasattr(self.model, "activation_checkpointing_enable"):  # newer transformers (5.24)
                self.model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
            else:  # the older name, deprecated since
                self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        self.prefix_cache = prefix_cache and not gradient_checkpointing
        self._prefix_kv: Dict[tuple, tuple] = {}  # (ids, device, dtype) -> (per-layer (K, V), hidden)
        self.template = PromptTemplate(self.tokenizer, prompt_template)
        self.hidden_size: int = self.model.config.get_text_config().hidden_size
        self.vocab_size: int = self.lm_head_weight.shape[0]
        self.train(False)

    # ------------------------------------------------------------------ properties
    @property
    def dtype(self) -> torch.dtype:
        return self.model.get_input_embeddings().weight.dtype

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    @property
    def lm_head_weight(self) -> torch.Tensor:
        """The frozen output projection (V, H)."""
        return self.model.get_output_embeddings().weight

    def decoder(self) -> nn.Module:
        """The inner transformer (embeddings -> layers -> final norm), without the lm_head."""
        return self.model.get_decoder()

    def train(self, mode: bool = True) -> "SpeechLLM":
        """The frozen LLM's own dropout stays off; LoRA dropout follows ``mode``; decoder layers
        follow ``mode`` only so that activation checkpointing (active in training) works."""
        from transformers.modeling_layers import GradientCheckpointingLayer

        super().train(mode)
        self.model.eval()
        if mode:
            for m in self.model.modules():
                if isinstance(m, GradientCheckpointingLayer):
                    m.training = True  # this module only; its attention/MLP stay in eval
                elif isinstance(m, PartialLoRALinear):
                    m.train(True)
        return self

    # ------------------------------------------------------------------ inputs
    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Input embeddings: (..., L) long -> (..., L, H) in the LLM dtype."""
        return self.model.get_input_embeddings()(ids.to(self.device))

    def _middle_embeds(self, middle: torch.Tensor, b: int) -> torch.Tensor:
        if middle.dim() == 1:  # (n,) token ids
            return self.embed(middle.long())
        if middle.dim() != 2 or middle.shape[-1] != self.hidden_size:
            raise ValueError(
                f"sample {b}: middle must be (n,) token ids or (n, {self.hidden_size}) embeddings, "
                f"got {tuple(middle.shape)}"
            )
        return middle.to(self.device, self.dtype)  # (n, H); autograd flows through the cast

    def build_inputs(
        self,
        prefix: List[torch.Tensor],
        middle: List[torch.Tensor],
        suffix: List[torch.Tensor],
        response: Optional[List[torch.Tensor]] = None,
        add_eos: bool = True,
        middle_is_speech: bool = True,
        speech_spans: Optional[List[List[Tuple[int, int]]]] = None,
    ) -> PromptBatch:
        """prefix + middle + suffix + response (+ EOS) per sample, right-padded.

        Args:
            prefix, suffix: B tensors of ids, (P_b,) and (S_b,).
            middle: B tensors, (n_b,) ids (embedded here) or (n_b, H) embeddings (e.g. adapter
                output; cast to the LLM dtype; gradients flow back into them).
            response: B tensors of ids (R_b,), or None. A sample with an empty response (or
                response None) gets no EOS and no targets.
            add_eos: append EOS after a non-empty response (and make it the last target).
            middle_is_speech: mark the middle in ``speech_mask`` (Partial LoRA on there).
            speech_spans: per sample, the [start, end) ranges of the middle that are speech;
                None: all of it. A multi-turn prompt whose middle holds text between its clips
                (``SpeechChat``) marks only the clips.
        """
        B = len(prefix)
        if not (len(middle) == len(suffix) == B and (response is None or len(response) == B)):
            raise ValueError(
                f"build_inputs: prefix/middle/suffix/response must have one entry per sample, got "
                f"{B}/{len(middle)}/{len(suffix)}/{None if response is None else len(response)}"
            )
        if B == 0:
            raise ValueError("build_inputs: empty batch")
        dev = self.device
        eos = torch.tensor([self.template.eos_id], device=dev)
        rows, spans, prefix_keys = [], [], []
        for b in range(B):
            p_ids, s_ids = prefix[b].to(dev).long(), suffix[b].to(dev).long()
            if self.prefix_cache:  # the cache's key; .tolist() syncs a GPU, so only when used
                prefix_keys.append(tuple(p_ids.tolist()))
            r_ids = response[b].to(dev).long() if response is not None else p_ids[:0]
            if r_ids.numel() > 0 and add_eos:
                r_ids = torch.cat([r_ids, eos])  # (R_b + 1,)
            mid = self._middle_embeds(middle[b], b)  # (n_b, H)
            text_after = torch.cat([s_ids, r_ids])
            rows.append(torch.cat([self.embed(p_ids), mid, self.embed(text_after)]))  # (L_b, H)
            spans.append((len(p_ids), mid.shape[0], len(s_ids), r_ids))
        lengths = torch.tensor([r.shape[0] for r in rows], device=dev)
        embeds = nn.utils.rnn.pad_sequence(rows, batch_first=True)  # (B, T, H), zeros after L_b
        T = embeds.shape[1]
        ar = torch.arange(T, device=dev)
        attn = (ar[None] < lengths[:, None]).long()  # (B, T)
        pos = ar[None] * attn  # (B, T): 0..L_b-1, 0 at padding
        speech = torch.zeros(B, T, dtype=torch.bool, device=dev)
        inp = torch.zeros(B, T, dtype=torch.bool, device=dev)
        targets = torch.full((B, T), IGNORE_ID, dtype=torch.long, device=dev)
        for b, (P, n, S, r_ids) in enumerate(spans):
            if middle_is_speech:
                for start, end in speech_spans[b] if speech_spans is not None else [(0, n)]:
                    speech[b, P + start : P + end] = True
            # input KL rows: the middle itself, P .. P+n-1 (the output at s_i / x_i)
            inp[b, P : P + n] = True
            if r_ids.numel() > 0:
                first = P + n + S  # position of the first response token
                if first == 0:
                    raise ValueError(f"sample {b}: a response needs a non-empty prompt before it")
                targets[b, first - 1 : first - 1 + len(r_ids)] = r_ids
        return PromptBatch(embeds, attn, pos, speech, targets, inp, lengths, prefix_keys or None)

    # ------------------------------------------------------------------ forward
    def hidden_states(self, batch: PromptBatch) -> torch.Tensor:
        """Final (post-norm) hidden states (B, T, H) of the decoder; the lm_head is not applied.

        Partial LoRA is active exactly at ``batch.speech_mask`` (off when it has no True, e.g. the
        KD teacher pass on the transcript, which the caller runs under ``torch.no_grad``).
        """
        if self.prefix_cache and batch.prefix_ids is not None and any(batch.prefix_ids):
            return self._hidden_states_after_prefix(batch)
        return self._decoder_forward(batch).last_hidden_state

    def _decoder_forward(self, batch: PromptBatch, output_hidden_states: bool = False):
        """One full forward of the decoder (no KV cache), Partial LoRA active at ``batch.speech_mask``."""
        with speech_positions(self.model, batch.speech_mask):
            return self.decoder()(
                inputs_embeds=batch.inputs_embeds,
                attention_mask=batch.attention_mask,
                position_ids=batch.position_ids,
                use_cache=False,
                output_hidden_states=output_hidden_states,
            )

    @property
    def num_layers(self) -> int:
        """Decoder layers L; :meth:`layer_states` returns L + 1 states (0 = input embeddings)."""
        return self.model.config.get_text_config().num_hidden_layers

    def layer_states(self, batch: PromptBatch) -> Tuple[torch.Tensor, ...]:
        """The hidden states of every layer: L + 1 tensors (B, T, H).

        Index 0 is the input embeddings (the adapter outputs at speech positions), index l the
        output of decoder layer l, and index L the final, post-norm state (equal to
        :meth:`hidden_states`). One full forward, no prefix cache (the analysis tools need the
        prefix rows of every layer); Partial LoRA is active at ``batch.speech_mask``.
        """
        states = tuple(self._decoder_forward(batch, output_hidden_states=True).hidden_states)
        if len(states) != self.num_layers + 1:
            raise RuntimeError(f"the decoder returned {len(states)} hidden states for {self.num_layers} layers "
                               f"(expected {self.num_layers + 1}: embeddings + one per layer)")
        return states

    @torch.no_grad()
    def _prefix_states(self, ids: Tuple[int, ...]):
        """Keys/values per layer ((1, h, P, d) each) and final hidden states (P, H) of a prefix."""
        from transformers import DynamicCache

        from espnet_blsp.llm.decoding import cache_kwarg

        key = (ids, self.device, self.dtype)
        hit = self._prefix_kv.get(key)
        if hit is None:
            decoder = self.decoder()
            cache = DynamicCache(config=self.model.config)
            P = len(ids)
            with speech_positions(self.model, None):
                out = decoder(
                    inputs_embeds=self.embed(torch.tensor([ids], device=self.device)),
                    attention_mask=torch.ones(1, P, dtype=torch.long, device=self.device),
                    position_ids=torch.arange(P, device=self.device)[None],
                    use_cache=True,
                    **{cache_kwarg(type(decoder)): cache},
                )
            kv = [(layer.keys, layer.values) for layer in cache.layers]
            hit = (kv, out.last_hidden_state[0])
            if len(self._prefix_kv) >= 64:  # instructions are few; bound it anyway
                self._prefix_kv.clear()
            self._prefix_kv[key] = hit
        return hit

    def _hidden_states_after_prefix(self, batch: PromptBatch) -> torch.Tensor:
        """``hidden_states`` with each prefix taken from the cache (see ``prefix_cache``).

        Sample b (length L_b, prefix P_b) runs its positions P_b .. L_b-1 at position ids
        P_b.. over the cached keys/values of its prefix, left-padded to P_max in the batch;
        the prefix rows of the output are the cached hidden states. Equal to the full
        forward up to round-off (tested).
        """
        from transformers import DynamicCache

        from espnet_blsp.llm.decoding import cache_kwarg

        emb_all = batch.inputs_embeds
        B, T, H = emb_all.shape
        dev = emb_all.device
        P = torch.tensor([len(k) for k in batch.prefix_ids], device=dev)  # (B,)
        R = batch.lengths - P  # (B,) positions after the prefix
        P_max, T_r = int(P.max()), int(R.max())
        ar = torch.arange(T_r, device=dev)
        real = ar[None] < R[:, None]  # (B, T_r)
        src = (P[:, None] + ar[None]).clamp_max(T - 1)  # (B, T_r) column in the full batch
        emb = emb_all.gather(1, src[..., None].expand(-1, -1, H)) * real[..., None].to(emb_all.dtype)
        speech = batch.speech_mask.gather(1, src) & real
        pos = (P[:, None] + ar[None]) * real  # (B, T_r)

        # past keys/values (B, h, P_max, d) per layer, left-padded; prefix hidden states
        groups: Dict[Tuple[int, ...], List[int]] = {}
        for b, k in enumerate(batch.prefix_ids):
            groups.setdefault(k, []).append(b)
        past = None
        h_prefix = emb_all.new_zeros(B, T, H)
        for ids, rows in groups.items():
            n = len(ids)
            if n == 0:  # no prefix: nothing cached, all its keys are its own
                continue
            kv, h_p = self._prefix_states(ids)
            if past is None:
                past = [
                    (k.new_zeros(B, k.shape[1], P_max, k.shape[3]), v.new_zeros(B, v.shape[1], P_max, v.shape[3]))
                    for k, v in kv
                ]
            idx = torch.tensor(rows, device=dev)
            for (K, V), (k, v) in zip(past, kv):
                K[idx, :, P_max - n :] = k
                V[idx, :, P_max - n :] = v
            h_prefix[idx, :n] = h_p.to(h_prefix.dtype)
        cache = DynamicCache(config=self.model.config)
        for layer, (K, V) in enumerate(past):
            cache.update(K, V, layer)
        ar_p = torch.arange(P_max, device=dev)
        attn = torch.cat([(ar_p[None] >= P_max - P[:, None]), real], dim=1).long()  # (B, P_max + T_r)
        decoder = self.decoder()
        with speech_positions(self.model, speech):
            out = decoder(
                inputs_embeds=emb, attention_mask=attn, position_ids=pos, use_cache=True,
                **{cache_kwarg(type(decoder)): cache},
            )
        h_rest = out.last_hidden_state  # (B, T_r, H)
        # back into the full layout: rest position j of sample b goes to column P_b + j;
        # padding goes to a spare column T, dropped afterwards
        dst = torch.where(real, P[:, None] + ar[None], torch.full_like(src, T))
        full = h_rest.new_zeros(B, T + 1, H).scatter(1, dst[..., None].expand(-1, -1, H), h_rest)[:, :T]
        in_prefix = (torch.arange(T, device=dev)[None] < P[:, None])[..., None]
        return torch.where(in_prefix, h_prefix.to(full.dtype), full)

    @torch.no_grad()
    def generate(
        self,
        prefix: List[torch.Tensor],
        middle: List[torch.Tensor],
        suffix: List[torch.Tensor],
        middle_is_speech: bool = True,
        max_new_tokens: int = 64,
        num_beams: int = 1,
        length_penalty: float = 1.0,
        repetition_penalty: float = 1.0,
    ) -> List[List[int]]:
        """Batched greedy (num_beams 1) or beam decoding with a KV cache.

        Returns the new token ids of each sample, without the EOS; see
        :mod:`espnet_blsp.llm.decoding`. Each hypothesis equals the one decoded alone.
        """
        from espnet_blsp.llm.decoding import decode

        batch = self.build_inputs(prefix, middle, suffix, None, middle_is_speech=middle_is_speech)
        return decode(
            self, batch, max_new_tokens=max_new_tokens, num_beams=num_beams,
            length_penalty=length_penalty, repetition_penalty=repetition_penalty,
        )
