"""Partial LoRA (BLSP-KD): a low-rank update of the frozen LLM applied at speech positions only.

Usage::

    names = inject_partial_lora(llm, ["q_proj", "v_proj"], r=16, alpha=16, dropout=0.05)
    with speech_positions(llm, speech_mask):      # (B, T) bool, True at speech positions
        h = llm(inputs_embeds=x).logits           # LoRA active exactly there
    with speech_positions(llm, None):             # teacher / text tokens / decoding steps
        ...                                       # bit-identical to the frozen LLM

LoRA: Hu et al., 2021, https://arxiv.org/abs/2106.09685. ``W x + mask * B A dropout(x) * alpha/r``
with A ~ kaiming_uniform(a=sqrt(5)) and B = 0, so the model starts as the frozen LLM. Text
positions (and whole text sequences) see the base weights bit for bit, which is what makes the
same network the BLSP-KD teacher when the mask is None.

The mask lives in one slot shared by all wrapped layers of a model and is set by
:func:`speech_positions`. Under activation checkpointing the recompute runs in backward, outside
that context; :func:`checkpoint_context_fn` gives ``torch.utils.checkpoint`` the mask that was
current at forward time (``SpeechLLM`` wires it up).
"""

import math
from contextlib import contextmanager, nullcontext
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn


class _MaskSlot:
    """The current speech mask (B, T) bool, shared by all PartialLoRALinear layers of a model."""

    def __init__(self):
        self.mask: Optional[torch.Tensor] = None


class PartialLoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a LoRA update gated by the current speech mask.

    Shapes: x (B, T, in) -> (B, T, out); mask (B, T) bool.
    Output: ``base(x) + mask[..., None] * B(A(dropout(x))) * alpha / r``; exactly ``base(x)``
    (no addition at all) when the mask is None. ``lora_A`` (r, in) and ``lora_B`` (out, r) are
    float32 master weights even when the base is bf16; they are cast to the input's dtype on the
    fly, so the update is computed in the LLM's dtype with float32 gradients for the optimizer.
    """

    def __init__(self, base: nn.Linear, slot: _MaskSlot, r: int = 16, alpha: float = 16, dropout: float = 0.05):
        super().__init__()
        if r <= 0:
            raise ValueError(f"LoRA rank must be positive, got r={r}")
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        dev = base.weight.device
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, device=dev, dtype=torch.float32))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, device=dev, dtype=torch.float32))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.r, self.alpha = r, alpha
        self.scaling = alpha / r
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.slot = slot

    def _apply(self, fn, recurse=True):
        # ``model.to(torch.bfloat16)`` casts the base; the LoRA masters stay float32.
        super()._apply(fn, recurse)
        for name in ("lora_A", "lora_B"):
            p = getattr(self, name)
            if p.dtype != torch.float32:
                p.data = p.data.float()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        mask = self.slot.mask
        if mask is None:
            return out
        if mask.shape != x.shape[:-1]:
            raise ValueError(
                f"Partial LoRA: speech mask of shape {tuple(mask.shape)} does not match the layer input "
                f"{tuple(x.shape[:-1])}; decoding steps after the prefill must run under "
                "speech_positions(model, None)"
            )
        a, b = self.lora_A.to(x.dtype), self.lora_B.to(x.dtype)
        delta = self.dropout(x) @ a.t() @ b.t()  # (B, T, in) -> (B, T, r) -> (B, T, out)
        return out + delta * (mask[..., None].to(x.dtype) * self.scaling)

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha}"


def inject_partial_lora(
    model: nn.Module,
    target_modules: Sequence[str],
    r: int = 16,
    alpha: float = 16,
    dropout: float = 0.05,
) -> List[str]:
    """Wrap every ``nn.Linear`` whose dotted name ends with one of ``target_modules``.

    A target matches whole name components: ``q_proj`` matches ``layers.0.self_attn.q_proj``
    and ``self_attn.q_proj`` does too, but ``proj`` matches neither. The output embedding
    (lm_head) is never wrapped. Returns the wrapped names; raises ValueError when none match.
    """
    if isinstance(target_modules, str):
        target_modules = [target_modules]
    out_emb = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear) and m is not out_emb]
    names = [n for n, _ in linears if any(n == t or n.endswith("." + t) for t in target_modules)]
    if not names:
        examples = sorted({n.rsplit(".", 1)[-1] for n, _ in linears})[:12]
        raise ValueError(
            f"Partial LoRA: no Linear matches target_modules {list(target_modules)} in "
            f"{type(model).__name__}; its nn.Linear layers end with e.g. {examples}"
        )
    slot = _slot_of(model) or _MaskSlot()
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, PartialLoRALinear(getattr(parent, child), slot, r, alpha, dropout))
    return names


def _lora_layers(model: nn.Module) -> List[PartialLoRALinear]:
    return [m for m in model.modules() if isinstance(m, PartialLoRALinear)]


def _slot_of(model: nn.Module) -> Optional[_MaskSlot]:
    layers = _lora_layers(model)
    return layers[0].slot if layers else None


@contextmanager
def speech_positions(model: nn.Module, mask: Optional[torch.Tensor]):
    """Set the speech mask (B, T) bool of all Partial LoRA layers of ``model`` for the block.

    ``None`` (or a mask with no True) turns LoRA off: the frozen LLM bit for bit. A model
    without Partial LoRA layers is left alone. The previous mask is restored on exit.
    """
    slots = {id(m.slot): m.slot for m in _lora_layers(model)}.values()
    if mask is not None:
        if mask.dtype != torch.bool or mask.dim() != 2:
            raise ValueError(f"speech mask must be (B, T) bool, got {tuple(mask.shape)} {mask.dtype}")
        if not bool(mask.any()):
            mask = None
    previous = [(s, s.mask) for s in slots]
    for s in slots:
        s.mask = mask
    try:
        yield
    finally:
        for s, m in previous:
            s.mask = m


def checkpoint_context_fn(model: nn.Module) -> Callable[[], Tuple]:
    """``context_fn`` for non-reentrant ``torch.utils.checkpoint``: the recompute in backward
    sees the speech mask that was current when the checkpointed forward ran."""

    def context_fn():
        captured = [(s, s.mask) for s in {id(m.slot): m.slot for m in _lora_layers(model)}.values()]

        @contextmanager
        def recompute():
            previous = [(s, s.mask) for s, _ in captured]
            for s, m in captured:
                s.mask = m
            try:
                yield
            finally:
                for s, m in previous:
                    s.mask = m

        return nullcontext(), recompute()

    return context_fn


def lora_state_dict(model: nn.Module) -> Dict[str, torch.Tensor]:
    """Only the LoRA weights (``*.lora_A``, ``*.lora_B``) of ``model.state_dict()``."""
    return {k: v for k, v in model.state_dict().items() if k.endswith((".lora_A", ".lora_B"))}
