"""Partial LoRA (BLSP-KD): a low-rank update applied at speech positions only.

LoRA: Hu et al., 2021, https://arxiv.org/abs/2106.09685. Text positions see the frozen
base weights bit for bit, so the teacher (text) pass is the unchanged LLM.
"""

import math
from contextlib import contextmanager
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn


class _MaskSlot:
    """The current speech mask, shared by all PartialLoRALinear layers of one model."""

    def __init__(self):
        self.mask: Optional[torch.Tensor] = None


class PartialLoRALinear(nn.Module):
    """``base(x) + mask * B(A(dropout(x))) * alpha / r``; exactly ``base(x)`` without speech."""

    def __init__(self, base: nn.Linear, slot: _MaskSlot, r: int, alpha: float, dropout: float):
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, device=base.weight.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.scaling = alpha / r
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.slot = slot

    def _apply(self, fn, recurse=True):
        # LoRA weights stay float32 masters when the base is cast (bf16 LLMs).
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
                f"speech mask {tuple(mask.shape)} does not match the input {tuple(x.shape[:-1])}; "
                "use speech_positions(model, None) for decoding steps"
            )
        h = self.dropout(x).float() @ self.lora_A.t() @ self.lora_B.t()  # (B, T, r) -> (B, T, out)
        return out + (h * (mask[..., None] * self.scaling)).to(out.dtype)


def inject_partial_lora(
    model: nn.Module,
    target_modules: Sequence[str],
    r: int = 16,
    alpha: float = 16,
    dropout: float = 0.05,
) -> List[str]:
    """Wrap every nn.Linear whose name ends with one of ``target_modules``."""
    slot = _MaskSlot()
    model._partial_lora_slot = slot
    names = [
        n for n, m in model.named_modules()
        if isinstance(m, nn.Linear) and any(n == t or n.endswith("." + t) for t in target_modules)
    ]
    if not names:
        linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][:8]
        raise ValueError(f"no Linear matches {list(target_modules)}; e.g. {linears}")
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, PartialLoRALinear(getattr(parent, child), slot, r, alpha, dropout))
    return names


@contextmanager
def speech_positions(model: nn.Module, mask: Optional[torch.Tensor]):
    """Activate LoRA at ``mask`` (B, T) positions; ``None`` or no True = LoRA off."""
    slot = getattr(model, "_partial_lora_slot", None)
    if slot is None:
        yield
        return
    previous = slot.mask
    slot.mask = mask if mask is not None and bool(mask.any()) else None
    try:
        yield
    finally:
        slot.mask = previous


def lora_state_dict(model: nn.Module) -> Dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if "lora_A" in k or "lora_B" in k}
