"""The frozen causal LM with prompt assembly, hidden states and batched decoding."""

import os
from dataclasses import dataclass
from typing import List, Optional

import torch
from torch import nn

from espnet_blsp.llm.partial_lora import inject_partial_lora, speech_positions
from espnet_blsp.llm.prompt import PromptTemplate

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class PromptBatch:
    """A right-padded batch of prompts.

    inputs_embeds (B, T, H); attention_mask (B, T) long; position_ids (B, T) long;
    speech_mask (B, T) bool: middle positions when the middle is speech;
    targets (B, T) long: the token predicted FROM position t (response tokens and EOS),
    -100 elsewhere; input_mask (B, T) bool: positions predicting middle token i = 1..n
    (last prefix position .. second-to-last middle position); lengths (B,).
    """

    inputs_embeds: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    speech_mask: torch.Tensor
    targets: torch.Tensor
    input_mask: torch.Tensor
    lengths: torch.Tensor


class SpeechLLM(nn.Module):
    """Any ``AutoModelForCausalLM`` (Llama, Qwen2, SmolLM2, ...), frozen, with optional Partial LoRA.

    Args:
        model_name_or_path: local checkpoint dir (or hub id).
        dtype: float32 | bfloat16 | float16 for the frozen weights.
        attn_implementation: sdpa | eager | flash_attention_2.
        prompt_template: blsp | chat.
        lora_conf: dict(r, alpha, dropout, target_modules) for Partial LoRA, or None.
        gradient_checkpointing: recompute layer activations in backward.
    """

    def __init__(
        self,
        model_name_or_path: str,
        dtype: str = "bfloat16",
        attn_implementation: str = "sdpa",
        prompt_template: str = "blsp",
        lora_conf: Optional[dict] = None,
        gradient_checkpointing: bool = False,
    ):
        super().__init__()
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if dtype not in _DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; choose from {sorted(_DTYPES)}")
        path = os.path.expanduser(model_name_or_path)
        if path.startswith((".", "/")) and not os.path.isdir(path):
            raise FileNotFoundError(f"LLM checkpoint not found: {model_name_or_path}")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModelForCausalLM.from_pretrained(
                path, dtype=_DTYPES[dtype], attn_implementation=attn_implementation
            )
        except OSError as e:
            raise FileNotFoundError(f"cannot load an LLM from {model_name_or_path}: {e}") from None
        for p in self.model.parameters():
            p.requires_grad_(False)
        if lora_conf:
            inject_partial_lora(self.model, **lora_conf)
        if gradient_checkpointing:
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.model.eval()
        self.template = PromptTemplate(self.tokenizer, prompt_template)
        self.hidden_size = self.model.config.hidden_size
        self.vocab_size = self.model.config.vocab_size

    @property
    def dtype(self) -> torch.dtype:
        return self.model.get_input_embeddings().weight.dtype

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    @property
    def lm_head_weight(self) -> torch.Tensor:
        return self.model.get_output_embeddings().weight  # (V, H)

    def train(self, mode: bool = True):
        # the frozen LLM never uses dropout; LoRA dropout follows ``mode``
        super().train(mode)
        self.model.eval()
        for m in self.model.modules():
            if hasattr(m, "lora_A"):
                m.train(mode)
        return self

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.get_input_embeddings()(ids)

    def build_inputs(
        self,
        prefix: List[torch.Tensor],
        middle: List[torch.Tensor],
        suffix: List[torch.Tensor],
        response: Optional[List[torch.Tensor]] = None,
        add_eos: bool = True,
        middle_is_speech: bool = True,
    ) -> PromptBatch:
        """prefix + middle (ids (n,) or embeddings (n, H)) + suffix + response + EOS, right-padded."""
        B = len(prefix)
        dev, H = self.device, self.hidden_size
        eos = torch.tensor([self.template.eos_id], device=dev)
        pieces, spans = [], []
        for b in range(B):
            resp = response[b].to(dev) if response is not None and response[b].numel() > 0 else None
            resp_ids = torch.cat([resp, eos]) if resp is not None and add_eos else resp
            mid = middle[b]
            mid_emb = self.embed(mid.to(dev)) if mid.dim() == 1 else mid.to(dev, self.dtype)
            ids_after = suffix[b].to(dev) if resp_ids is None else torch.cat([suffix[b].to(dev), resp_ids])
            emb = torch.cat([self.embed(prefix[b].to(dev)), mid_emb, self.embed(ids_after)])  # (L_b, H)
            pieces.append(emb)
            spans.append((len(prefix[b]), len(mid_emb), len(suffix[b]), resp_ids))
        lengths = torch.tensor([p.shape[0] for p in pieces], device=dev)
        T = int(lengths.max())
        embeds = pieces[0].new_zeros(B, T, H)
        attn = torch.zeros(B, T, dtype=torch.long, device=dev)
        speech = torch.zeros(B, T, dtype=torch.bool, device=dev)
        inp = torch.zeros(B, T, dtype=torch.bool, device=dev)
        targets = torch.full((B, T), -100, dtype=torch.long, device=dev)
        for b, (emb, (p, n, s, resp_ids)) in enumerate(zip(pieces, spans)):
            L = emb.shape[0]
            embeds[b, :L] = emb
            attn[b, :L] = 1
            if middle_is_speech:
                speech[b, p : p + n] = True
            if n > 0:
                inp[b, p - 1 : p + n - 1] = True
            if resp_ids is not None:
                start = p + n + s  # first response position
                targets[b, start - 1 : start - 1 + len(resp_ids)] = resp_ids
        pos = torch.arange(T, device=dev)[None].expand(B, T) * attn
        return PromptBatch(embeds, attn, pos, speech, targets, inp, lengths)

    def hidden_states(self, batch: PromptBatch) -> torch.Tensor:
        """Final (post-norm) hidden states (B, T, H); no lm_head is computed."""
        with speech_positions(self.model, batch.speech_mask):
            out = self.model.get_decoder()(
                inputs_embeds=batch.inputs_embeds,
                attention_mask=batch.attention_mask,
                position_ids=batch.position_ids,
                use_cache=False,
            )
        return out.last_hidden_state

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
        """Batched greedy or beam decoding with a KV cache; returns new ids without EOS."""
        from espnet_blsp.llm.decoding import beam_search, greedy

        batch = self.build_inputs(prefix, middle, suffix, None, middle_is_speech=middle_is_speech)
        if num_beams > 1:
            return beam_search(self, batch, max_new_tokens, num_beams, length_penalty)
        return greedy(self, batch, max_new_tokens, repetition_penalty)
